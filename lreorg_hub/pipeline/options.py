"""The options of one protection call, in one type for every surface (CLI, app, datasets,
evaluation, Python API), validated once by :meth:`ProtectOptions.validate` with the same
one-sentence messages everywhere.

Each value has one rule, written once: ε, the rank window, the seed and the number of samples
in ``lreorg_hub.method.checks``, the keywords in ``lreorg_hub.method.keywords``; here they are
only combined (which options apply to which method) and resolved (defaults filled in).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Sequence

from ..method import keywords as kw
from ..method.checks import (SEED_MAX as MAX_SEED, check_epsilon, check_integer,
                             check_rank_window, check_samples, check_seed)
from ..method.mechanisms import MECHANISMS
from .registry import MAX_FACES, MAX_SAMPLES, METHODS, MethodInfo

__all__ = ["ProtectOptions", "Limits", "check_method", "check_faces", "check_output_size",
           "MAX_SAMPLES", "MAX_SEED", "MAX_FACES", "STRENGTH_LIMITS", "SMALL_FACE_RULES",
           "PROTECT_FIELDS"]

#: What happens to a face that is found but too small to regenerate (smaller than the
#: pipeline's ``min_face_size``): blurred (the default), masked, or kept as it is.
SMALL_FACE_RULES = ("blur", "mask", "keep")

_IDENTITY_ONLY = ("epsilon", "rank_window", "mechanism")  # meaningless without identity


def _strength_limits() -> dict[str, tuple[float, float]]:
    from ..image.baselines import BASELINES

    return {name: (float(next(f.default for f in fields(cls) if f.name == "strength")),
                   float(cls.max_strength)) for name, cls in BASELINES.items()}


STRENGTH_LIMITS: dict[str, tuple[float, float]] = _strength_limits()  # name → (default, max)

_STRENGTH_MEANING = {"blur": "σ as a fraction of the face size",
                     "pixelate": "block side as a fraction of the face size",
                     "mask": "opacity"}


def check_method(method: str) -> MethodInfo:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return METHODS[method]


def check_faces(faces) -> tuple[int, ...] | None:
    """Face indices (left-to-right detection order): None for all, else distinct ints >= 0."""
    if faces is None:
        return None
    if isinstance(faces, (str, bytes)) or not isinstance(faces, Sequence):
        raise ValueError(f"faces must be a list of face indices, got {faces!r}")
    if not faces:
        raise ValueError("no face selected: give at least one face index")
    if len(faces) > MAX_FACES:
        raise ValueError(f"at most {MAX_FACES} face indices can be selected, got {len(faces)}")
    chosen = []
    for i in faces:
        j = check_integer(i, "a face index")
        if j < 0:
            raise ValueError(f"face indices count from 0 (left to right), got {i!r}")
        if j not in chosen:
            chosen.append(j)
    return tuple(chosen)


def check_output_size(output_size, generator_size: int | None = None) -> int | None:
    """A generator resolution to stop at: a power of two in [4, generator size]."""
    if output_size is None:
        return None
    size = check_integer(output_size, "output size")
    if size < 4 or size & (size - 1):
        raise ValueError(f"output size must be a power of two >= 4 (e.g. 256), got "
                         f"{output_size!r}")
    if generator_size is not None and size > generator_size:
        raise ValueError(f"output size {size} is larger than the generator's {generator_size} "
                         f"px: use a power of two in [4, {generator_size}]")
    return size


@dataclass(frozen=True)
class Limits:
    """A surface's caps on top of the library's own rules (e.g. the public app serves at most
    8 samples and ε ≤ 10; the library's own cap is ``MAX_SAMPLES``)."""

    max_samples: int = MAX_SAMPLES
    max_epsilon: float = math.inf


@dataclass(frozen=True)
class ProtectOptions:
    """A user's choices for one protection call; None = not given (the default applies).

    method: one of ``METHODS`` (None: the pipeline's default method).
    anonymize / recover: keywords (a list or a comma-separated string; "" or [] = none).
    epsilon: privacy budget ε >= 0 per draw (∞ allowed, no DP guarantee then).
    rank_window: GIA window (a, b), 1 <= a <= b <= m.  mechanism: "window" or "strict".
    seed: 0..2⁶⁴−1 (None: OS entropy, never recorded).  samples: 1..MAX_SAMPLES draws.
    strength: image baseline strength, method-specific range.  style_rows: style-mix [r0, r1).
    aligned: the input is an aligned face crop (no detection, no paste-back).
    faces: indices of the detected faces to process (left to right, from 0); None: all.
    small_faces: faces found but too small to regenerate: "blur" (default), "mask" or "keep".
    """

    method: str | None = None
    anonymize: tuple[str, ...] | str | None = None
    recover: tuple[str, ...] | str | None = None
    epsilon: float | None = None
    rank_window: tuple[int, int] | None = None
    mechanism: str | None = None
    seed: int | None = None
    samples: int | None = None
    strength: float | None = None
    style_rows: tuple[int, int] | None = None
    aligned: bool = False
    faces: tuple[int, ...] | None = None
    small_faces: str | None = None

    def given(self) -> list[str]:
        """The protection options that were set (an empty keyword list counts as not set;
        method, aligned, faces and small_faces are not protection options)."""
        out = []
        for name in PROTECT_FIELDS:
            value = getattr(self, name)
            if value is None or (name in ("anonymize", "recover") and
                                 _is_keyword_list(value) and not kw.parse_list(value)):
                continue
            out.append(name)
        return out

    def for_method(self, method: str) -> "ProtectOptions":
        """A copy for ``method`` without the options that do not apply to it (to run one set
        of choices through several methods side by side)."""
        info = check_method(method)
        keep = {n: getattr(self, n) for n in info.options}
        if method == "style-mix":
            keep["anonymize"] = None  # identity only
        anonymize = keep.get("anonymize")
        if anonymize is not None and _is_keyword_list(anonymize) and \
                kw.IDENTITY not in kw.parse_list(anonymize):
            for n in _IDENTITY_ONLY:
                keep.pop(n, None)
        cleared = {n: None for n in PROTECT_FIELDS if n not in keep}
        return replace(self, method=method, **cleared, **keep)

    def validate(self, *, default_method: str | None = None,
                 keywords: Sequence[str] | None = None, num_groups: int | None = None,
                 num_rows: int | None = None,
                 default_recover: Sequence[str] = kw.DEFAULT_RECOVER,
                 limits: Limits = Limits()) -> "ProtectOptions":
        """Check every option and return them resolved (the method chosen, keyword tuples in
        run order, numbers as float / int, the defaults filled in where they do not depend on
        loaded weights). Raises ValueError with one sentence.

        keywords / num_groups / num_rows: what the loaded weights serve (None: checked
        against the registry only, e.g. by the CLI before anything is loaded).
        limits: the calling surface's caps.
        """
        method = self.method if self.method is not None else default_method
        if method is None:
            raise ValueError("choose a method: no bundle or style-mix groups are loaded, so "
                             "only the image baselines (blur, pixelate, mask) can run")
        info = check_method(method)
        extra = [n for n in self.given() if n not in info.options]
        if extra:
            raise ValueError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not "
                             f"apply to method {method!r}; it takes: "
                             f"{', '.join(info.options) or 'no options'}")
        out: dict = {"method": method}
        if info.kind == "latent":
            out.update(self._keywords(method, keywords, default_recover))
            if kw.IDENTITY not in out["anonymize"]:
                pointless = [n for n in _IDENTITY_ONLY if getattr(self, n) is not None]
                if pointless:
                    verb = "applies" if len(pointless) == 1 else "apply"
                    raise ValueError(f"{', '.join(pointless)} {verb} only when identity is "
                                     f"anonymized (anonymize: {', '.join(out['anonymize'])})")
        if self.epsilon is not None:
            out["epsilon"] = check_epsilon(self.epsilon, limits.max_epsilon)
            if method == "laplace" and out["epsilon"] == 0:
                raise ValueError("the Laplace mechanism needs epsilon > 0 (ε = 0 is infinite "
                                 "noise)")
        if self.rank_window is not None:
            out["rank_window"] = check_rank_window(self.rank_window, num_groups)
        if "mechanism" in info.options and (method == "style-mix" or
                                            kw.IDENTITY in out.get("anonymize", ())):
            mechanism = "window" if self.mechanism is None else self.mechanism
            if mechanism not in MECHANISMS:
                raise ValueError(f"mechanism must be 'window' or 'strict', got {mechanism!r}"
                                 f" (the baselines are methods: "
                                 f"{', '.join(m for m in METHODS if m != 'lreorg')})")
            out["mechanism"] = mechanism
        if self.seed is not None:
            check_seed(self.seed)
            out["seed"] = self.seed  # as given: a SecretSeed stays secret
        if "samples" in info.options:
            out["samples"] = 1 if self.samples is None else \
                check_samples(self.samples, min(limits.max_samples, MAX_SAMPLES))
        if info.kind == "image":
            out["strength"] = _check_strength(method, self.strength)
        if self.style_rows is not None:
            from ..method.stylemix import check_style_rows

            out["style_rows"] = check_style_rows(self.style_rows, num_rows)
        if not isinstance(self.aligned, bool):
            raise ValueError(f"aligned must be True or False, got {self.aligned!r}")
        if self.aligned and info.kind == "image":
            raise ValueError(f"method {method!r} works on whole photos, not on aligned crops "
                             f"(drop aligned / --aligned)")
        if self.aligned and self.faces is not None:
            raise ValueError("faces cannot be chosen for an aligned crop: it is one face")
        small = "blur" if self.small_faces is None else self.small_faces
        if small not in SMALL_FACE_RULES:
            raise ValueError(f"small_faces must be one of {', '.join(SMALL_FACE_RULES)}, got "
                             f"{self.small_faces!r}")
        return ProtectOptions(**out, aligned=self.aligned, faces=check_faces(self.faces),
                              small_faces=small)

    def _keywords(self, method, valid, default_recover) -> dict:
        valid_names = list(kw.KEYWORDS) if valid is None else list(valid)
        anonymize = kw.DEFAULT_ANONYMIZE if self.anonymize is None else self.anonymize
        if method == "style-mix":
            recover = ()
        elif self.recover is None:  # the default recovers what is neither missing nor chosen
            chosen = kw.parse_list(anonymize) if _is_keyword_list(anonymize) else []
            recover = [k for k in default_recover if k in valid_names and k not in chosen]
        else:
            recover = self.recover
        if not _is_keyword_list(anonymize) or not _is_keyword_list(recover):
            raise ValueError("anonymize and recover must be keyword names (a list or a "
                             "comma-separated string)")
        k1, k2 = kw.validate_selection(anonymize, recover, valid_names)
        if not k1:
            raise ValueError(f"nothing to anonymize: give at least one keyword to anonymize "
                             f"(valid keywords: {', '.join(valid_names)})")
        if method != "lreorg" and kw.IDENTITY not in k1:
            raise ValueError(f"method {method!r} anonymizes identity: anonymize must include "
                             f"identity")
        if method == "style-mix" and k1 != (kw.IDENTITY,):
            raise ValueError(f"style-mix anonymizes identity only (it has no CDFNet to "
                             f"separate other keywords), got anonymize: {', '.join(k1)}")
        return {"anonymize": k1, "recover": k2 if method != "style-mix" else None}


#: The options that change what is done to a face (what ``MethodInfo.options`` lists).
PROTECT_FIELDS = ("anonymize", "recover", "epsilon", "rank_window", "mechanism", "seed",
                  "samples", "strength", "style_rows")


def _is_keyword_list(value) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _check_strength(method: str, value) -> float:
    default, upper = STRENGTH_LIMITS[method]
    strength = default if value is None else value
    if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or \
            not math.isfinite(strength) or not 0 < strength <= upper:
        raise ValueError(f"strength for {method} must be a number in (0, {upper:g}] "
                         f"({_STRENGTH_MEANING[method]}), got {value!r}")
    return float(strength)
