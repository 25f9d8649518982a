"""The options of one protection call, validated once (range, type, combination), with the
same one-sentence messages for the CLI, the app, the datasets and the Python API."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields
from typing import Sequence

from ..method import keywords as kw
from ..privacy import SEED_MAX as MAX_SEED  # one source: what a torch.Generator accepts
from .registry import MAX_FACES, MAX_SAMPLES, METHODS, MethodInfo

__all__ = ["ProtectOptions", "check_method", "check_faces", "check_output_size",
           "MAX_SAMPLES", "MAX_SEED", "MAX_FACES", "STRENGTH_LIMITS"]


_IDENTITY_ONLY = ("epsilon", "rank_window", "mechanism")  # meaningless without identity


def _strength_limits() -> dict[str, tuple[float, float]]:
    from ..image.baselines import BASELINES

    return {name: (float(next(f.default for f in fields(cls) if f.name == "strength")),
                   float(cls.max_strength)) for name, cls in BASELINES.items()}


STRENGTH_LIMITS: dict[str, tuple[float, float]] = _strength_limits()  # name → (default, max)


def check_method(method: str) -> MethodInfo:
    if not isinstance(method, str) or method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    return METHODS[method]


def _integer(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or int(value) != value:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def _pair(value, what: str) -> tuple[int, int]:
    if isinstance(value, (str, bytes)):
        raise ValueError(f"{what} must be a pair of integers (a, b), got {value!r}")
    try:
        a, b = value
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a pair of integers (a, b), got {value!r}") from None
    return _integer(a, f"{what} bounds"), _integer(b, f"{what} bounds")


def check_faces(faces) -> list[int] | None:
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
        j = _integer(i, "a face index")
        if j < 0:
            raise ValueError(f"face indices count from 0 (left to right), got {i!r}")
        if j not in chosen:
            chosen.append(j)
    return chosen


def check_output_size(output_size, generator_size: int | None = None) -> int | None:
    """A generator resolution to stop at: a power of two in [4, generator size]."""
    if output_size is None:
        return None
    size = _integer(output_size, "output size")
    if size < 4 or size & (size - 1):
        raise ValueError(f"output size must be a power of two >= 4 (e.g. 256), got "
                         f"{output_size!r}")
    if generator_size is not None and size > generator_size:
        raise ValueError(f"output size {size} is larger than the generator's {generator_size} "
                         f"px: use a power of two in [4, {generator_size}]")
    return size


@dataclass(frozen=True)
class ProtectOptions:
    """A user's options for one call; None = not given (the method's default applies).

    anonymize / recover: keywords (list or comma-separated string; "" or [] = none).
    epsilon: privacy budget ε >= 0 per draw (∞ allowed, no DP guarantee then).
    rank_window: GIA window (a, b), 1 <= a <= b <= m.  mechanism: "window" or "strict".
    seed: 0..2⁶⁴−1 (None: OS entropy, never recorded).  samples: 1..MAX_SAMPLES draws.
    strength: image baseline strength, method-specific range.  style_rows: style-mix [r0, r1).
    """

    anonymize: tuple[str, ...] | str | None = None
    recover: tuple[str, ...] | str | None = None
    epsilon: float | None = None
    rank_window: tuple[int, int] | None = None
    mechanism: str | None = None
    seed: int | None = None
    samples: int | None = None
    strength: float | None = None
    style_rows: tuple[int, int] | None = None

    def given(self) -> list[str]:
        """The options that were set (an empty keyword list counts as not set)."""
        out = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None or (f.name in ("anonymize", "recover") and
                                 _is_keyword_list(value) and not kw.parse_list(value)):
                continue
            out.append(f.name)
        return out

    def for_method(self, method: str) -> "ProtectOptions":
        """A copy without the options that do not apply to ``method`` (to run one set of
        choices through several methods side by side)."""
        info = check_method(method)
        keep = {n: getattr(self, n) for n in info.options}
        if method == "style-mix":
            keep["anonymize"] = None  # identity only
        anonymize = keep.get("anonymize")
        if anonymize is not None and _is_keyword_list(anonymize) and \
                kw.IDENTITY not in kw.parse_list(anonymize):
            for n in _IDENTITY_ONLY:
                keep.pop(n, None)
        return ProtectOptions(**keep)

    def validate(self, method: str, *, keywords: Sequence[str] | None = None,
                 num_groups: int | None = None, num_rows: int | None = None,
                 default_recover: Sequence[str] = kw.DEFAULT_RECOVER) -> "ProtectOptions":
        """Check every option for ``method`` and return them resolved (keyword tuples in run
        order, numbers as float / int, the method's defaults filled in where they do not
        depend on loaded weights). Raises ValueError with one sentence.

        keywords / num_groups / num_rows: what the loaded weights serve (None: checked
        against the registry only, e.g. by the CLI before anything is loaded).
        """
        info = check_method(method)
        extra = [n for n in self.given() if n not in info.options]
        if extra:
            raise ValueError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not "
                             f"apply to method {method!r}; it takes: "
                             f"{', '.join(info.options) or 'no options'}")
        out = {}
        if info.kind == "latent":
            out.update(self._keywords(method, keywords, default_recover))
            identity = kw.IDENTITY in out["anonymize"]
            if not identity:
                pointless = [n for n in _IDENTITY_ONLY if getattr(self, n) is not None]
                if pointless:
                    verb = "applies" if len(pointless) == 1 else "apply"
                    raise ValueError(f"{', '.join(pointless)} {verb} only when identity is "
                                     f"anonymized (anonymize: {', '.join(out['anonymize'])})")
        if self.epsilon is not None:
            out["epsilon"] = _check_epsilon(self.epsilon, method)
        if self.rank_window is not None:
            a, b = _pair(self.rank_window, "rank_window")
            if a > b:
                raise ValueError(f"rank_window (a={a}, b={b}) is empty: a must be <= b")
            if a < 1 or (num_groups is not None and b > num_groups):
                upper = num_groups if num_groups is not None else "m"
                raise ValueError(f"rank_window (a={a}, b={b}) must lie within 1..{upper} "
                                 f"(the number of identity groups)")
            out["rank_window"] = (a, b)
        if "mechanism" in info.options and (method == "style-mix" or
                                            kw.IDENTITY in out.get("anonymize", ())):
            from ..method.mechanisms import MECHANISMS

            mechanism = "window" if self.mechanism is None else self.mechanism
            if mechanism not in MECHANISMS:
                raise ValueError(f"mechanism must be 'window' or 'strict', got {mechanism!r}"
                                 f" (the baselines are methods: "
                                 f"{', '.join(m for m in METHODS if m != 'lreorg')})")
            out["mechanism"] = mechanism
        if self.seed is not None:
            seed = _integer(self.seed, "seed")
            if not 0 <= seed <= MAX_SEED:
                raise ValueError(f"seed must be in 0..{MAX_SEED} (2**64 - 1), got {self.seed!r}")
            out["seed"] = seed
        if "samples" in info.options:
            samples = 1 if self.samples is None else _integer(self.samples, "samples")
            if not 1 <= samples <= MAX_SAMPLES:
                raise ValueError(f"samples must be in 1..{MAX_SAMPLES} (each sample is one more "
                                 f"draw: k samples spend k·ε), got {self.samples!r}")
            out["samples"] = samples
        if info.kind == "image":
            default, upper = STRENGTH_LIMITS[method]
            strength = default if self.strength is None else self.strength
            if isinstance(strength, bool) or not isinstance(strength, numbers.Real) or \
                    not math.isfinite(strength):
                raise ValueError(f"strength must be a finite number, got {self.strength!r}")
            if not 0 < strength <= upper:
                raise ValueError(f"strength for {method} must be in (0, {upper:g}] "
                                 f"({_STRENGTH_MEANING[method]}), got {self.strength!r}")
            out["strength"] = float(strength)
        if self.style_rows is not None:
            from ..method.stylemix import check_style_rows

            out["style_rows"] = check_style_rows(_pair(self.style_rows, "style rows"),
                                                 num_rows)
        return ProtectOptions(**out)

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


def _is_keyword_list(value) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)


def _check_epsilon(value, method: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"epsilon must be a number >= 0, got {value!r}")
    eps = float(value)
    if math.isnan(eps) or eps < 0:
        raise ValueError(f"epsilon must be >= 0 (the privacy budget), got {value!r}")
    if method == "laplace" and eps == 0:
        raise ValueError("the Laplace mechanism needs epsilon > 0 (ε = 0 is infinite noise)")
    return eps


_STRENGTH_MEANING = {"blur": "σ as a fraction of the face size",
                     "pixelate": "block side as a fraction of the face size",
                     "mask": "opacity"}
