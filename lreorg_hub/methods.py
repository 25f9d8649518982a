"""One interface for every way of protecting a face.

``METHODS`` names each method and what it needs; ``ProtectOptions.validate`` checks a user's
options for a method once, up front (range, type, combination), so the CLI, the app and the
pipeline refuse bad input with the same one-sentence message before any photo is loaded.

The runners give every method the same small interface, so the pipeline only detects, aligns,
encodes, generates and pastes around them:

- latent methods (``LatentMethod``): W+ codes (N, L, D) → ``LatentOutput`` (anonymized and
  recovered codes, samples first, and the privacy record);
- image methods (``ImageMethod``): photo + faces → photo and record.
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, Sequence

from . import keywords as kw
from .privacy import SEED_MAX as MAX_SEED  # one source: what a torch.Generator accepts

__all__ = ["METHODS", "MethodInfo", "ProtectOptions", "KeywordSupport", "LatentOutput",
           "LatentMethod", "ImageMethod", "LReOrgMethod", "StyleMixMethod", "ImageBaselineMethod",
           "build_methods", "check_method", "check_faces", "check_output_size",
           "MAX_SAMPLES", "MAX_SEED", "MAX_FACES", "STRENGTH_LIMITS"]

MAX_SAMPLES = 16          # diverse samples per face: k·ε spent, k generator passes per face
MAX_FACES = 256           # face indices one call may select


@dataclass(frozen=True)
class MethodInfo:
    """What a method is, what it needs loaded, and which options apply to it."""

    name: str
    label: str                 # short honest text for menus, captions and records
    kind: str                  # "latent" (works on W+ codes) or "image" (works on pixels)
    needs: str                 # "bundle" (+ backbone), "backbone" (+ fitted style-mix), "nothing"
    uses_epsilon: bool
    options: tuple[str, ...]   # ProtectOptions fields that apply
    description: str = ""


_GIA = ("anonymize", "recover", "epsilon", "rank_window", "mechanism", "seed", "samples")
METHODS: dict[str, MethodInfo] = {m.name: m for m in (
    MethodInfo("lreorg", "LReOrg (CDFNet + GIA / KAA)", "latent", "bundle", True, _GIA,
               "Reorganize the W+ code: replace the keywords' key features (identity by the "
               "ε-DP group sampler GIA), then recover the chosen attributes."),
    MethodInfo("style-mix", "style-mix (training-free baseline)", "latent", "backbone", True,
               ("anonymize", "epsilon", "rank_window", "mechanism", "seed", "samples",
                "style_rows"),
               "Replace the middle W+ rows by a synthetic identity drawn with GIA's mechanism "
               "from k-means groups of mapping-network samples. No CDFNet, no recovery."),
    MethodInfo("laplace", "Laplace noise (latent baseline)", "latent", "bundle", True,
               ("anonymize", "recover", "epsilon", "seed", "samples"),
               "IdentityDP-style Laplace noise on the clipped identity key feature."),
    MethodInfo("k-anonymity", "k-anonymity (latent baseline)", "latent", "bundle", False,
               ("anonymize", "recover"),
               "Replace the identity key feature by the farthest group centre (deterministic)."),
    MethodInfo("blur", "Gaussian blur (image baseline)", "image", "nothing", False,
               ("strength",), "Blur the face region; strength = σ / face size."),
    MethodInfo("pixelate", "pixelation (image baseline)", "image", "nothing", False,
               ("strength",), "Mosaic the face region; strength = block side / face size."),
    MethodInfo("mask", "solid mask (image baseline)", "image", "nothing", False,
               ("strength",), "Cover the face region; strength = opacity."),
)}

_IDENTITY_ONLY = ("epsilon", "rank_window", "mechanism")  # meaningless without identity


def _strength_limits() -> dict[str, tuple[float, float]]:
    from .baselines import BASELINES

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
            from .anonymizers import MECHANISMS

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
            from .stylemix import check_style_rows

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


@dataclass(frozen=True)
class KeywordSupport:
    """Which keywords a loaded method can anonymize / recover, and why the others cannot."""

    anonymize: tuple[str, ...]
    recover: tuple[str, ...]
    unavailable: dict[str, str] = field(default_factory=dict)  # keyword → reason


@dataclass
class LatentOutput:
    """What a latent method made of N codes: (samples, N, L, D) tensors and the record."""

    recovered: "object"              # the codes to generate and paste (s^N)
    anonymized: "object | None"      # s^M when it differs from ``recovered``, else None
    record: dict


class LatentMethod(ABC):
    """W+ codes in, protected codes out (the pipeline encodes before and generates after)."""

    info: MethodInfo
    stage: ClassVar[str] = "reorganize"

    def check(self, options: ProtectOptions) -> ProtectOptions:
        """``options.validate`` against what is loaded, plus fitted-state checks."""
        return options.validate(self.info.name, **self.limits())

    @abstractmethod
    def limits(self) -> dict:
        """keywords / num_groups / num_rows of the loaded weights, for validation."""

    @abstractmethod
    def keyword_support(self) -> KeywordSupport: ...

    @abstractmethod
    def protect_codes(self, codes, options: ProtectOptions) -> LatentOutput:
        """codes (N, L, D), options already checked → LatentOutput."""

    def protect_codes_many(self, codes: list, options: list[ProtectOptions]
                           ) -> list[LatentOutput]:
        """Many photos' codes, each with its options (which differ at most in the seed) →
        one LatentOutput per photo. This default runs them one by one; methods with
        network passes override it to share them."""
        return [self.protect_codes(c, o) for c, o in zip(codes, options)]


class ImageMethod(ABC):
    """Photo and faces in, photo out (no encoder, no generator)."""

    info: MethodInfo
    stage: ClassVar[str] = "baseline"

    def check(self, options: ProtectOptions) -> ProtectOptions:
        return options.validate(self.info.name)

    def keyword_support(self) -> KeywordSupport:
        return KeywordSupport((), (), {k: f"{self.info.label} obfuscates the whole face region"
                                       for k in kw.KEYWORDS})

    @abstractmethod
    def protect_photo(self, photo, faces, options: ProtectOptions):
        """(photo, faces, options) → (protected photo, record dict)."""


class LReOrgMethod(LatentMethod):
    """LReOrg and the latent baselines, which swap GIA for Laplace noise or k-anonymity."""

    _IDENTITY = {"lreorg": None, "laplace": "laplace", "k-anonymity": "k-anonymity"}

    def __init__(self, name: str, model):
        if name not in self._IDENTITY:
            raise ValueError(f"{name!r} is not a bundle method")
        self.info, self.model = METHODS[name], model

    def limits(self) -> dict:
        return {"keywords": list(self.model.keywords),
                "num_groups": self.model.identity_anonymizer.num_groups,
                "num_rows": self.model.cdfnet.num_rows}

    def check(self, options: ProtectOptions) -> ProtectOptions:
        opts = super().check(options)
        support = self.keyword_support()
        for name in opts.anonymize:
            if name not in support.anonymize:
                raise ValueError(f"cannot anonymize {name!r} with this bundle: "
                                 f"{support.unavailable[name]}")
        return opts

    def keyword_support(self) -> KeywordSupport:
        model, unavailable, anonymize = self.model, {}, []
        for name in kw.KEYWORDS:
            if name not in model.keywords:
                unavailable[name] = "the bundle has no condition embedding for it"
                continue
            if name == kw.IDENTITY:
                fitted = self.info.name == "laplace" or bool(model.identity_anonymizer.fitted)
                what = "the identity anonymizer (GIA groups)"
            else:
                fitted = bool(model.attribute_anonymizer(name).fitted)
                what = f"the {name!r} attribute anonymizer (KAA means)"
            if fitted:
                anonymize.append(name)
            else:
                unavailable[name] = f"{what} is not fitted in this bundle"
        recover = tuple(n for n in model.keywords)
        return KeywordSupport(tuple(anonymize), recover, unavailable)

    def protect_codes(self, codes, options: ProtectOptions) -> LatentOutput:
        return self.protect_codes_many([codes], [options])[0]

    def protect_codes_many(self, codes: list, options: list[ProtectOptions]
                           ) -> list[LatentOutput]:
        """All photos share every CDFNet pass (``LReOrg.reorganize_many``); each keeps its
        own seed and so its own DP draw."""
        first = options[0]
        if any(replace(o, seed=None) != replace(first, seed=None) for o in options):
            raise ValueError("protect_codes_many: the photos' options may differ only in "
                             "the seed")
        mechanism = self._IDENTITY[self.info.name] or first.mechanism or "window"
        outs = self.model.reorganize_many(
            codes, [o.seed for o in options], first.anonymize, first.recover,
            epsilon=first.epsilon, rank_window=first.rank_window, mechanism=mechanism,
            samples=first.samples or 1)
        import torch

        names = list(outs[0].information_loss)
        # One read-back for every photo's mean information loss, not one per number.
        means = torch.stack([torch.stack([o.information_loss[k].mean() for k in names])
                             for o in outs]).tolist() if names else [[] for _ in outs]
        results = []
        for out, mean in zip(outs, means):
            record = _record_dict(out.record, self.info,
                                  information_loss=dict(zip(names, mean)))
            results.append(LatentOutput(out.recovered,
                                        out.anonymized if out.record.recover else None,
                                        record))
        return results


def _record_dict(record, info: MethodInfo, **more) -> dict:
    """``PrivacyRecord.to_dict()`` plus which method ran, and the record in plain words."""
    d = record.to_dict()
    d.update(method=info.name, method_label=info.label, **more)
    d["description"] = f"Method: {info.label}.\n" + record.describe()
    return d


def _style_mix_guarantee(mechanism: str, epsilon: float, rows: tuple[int, int]) -> str:
    from .privacy import GUARANTEES

    base = ("Training-free baseline (style-mix): rows [{r0}, {r1}) of the W+ code are replaced "
            "by a synthetic identity (a mapping-network sample) from a group drawn with GIA's "
            "exponential mechanism on the mean of those rows. ").format(r0=rows[0], r1=rows[1])
    if math.isinf(epsilon):
        return base + "ε = ∞: the nearest allowed group is always chosen; no DP guarantee holds."
    return base + GUARANTEES[mechanism] + (" The other rows are kept as they are and still "
                                           "carry identity information.")


class StyleMixMethod(LatentMethod):
    """`style-mix`: replace the middle W+ rows by a drawn synthetic identity."""

    stage: ClassVar[str] = "style-mix"

    def __init__(self, style_mix):
        self.info, self.style_mix = METHODS["style-mix"], style_mix

    def limits(self) -> dict:
        return {"keywords": [kw.IDENTITY], "num_groups": self.style_mix.num_groups,
                "num_rows": self.style_mix.num_rows}

    def check(self, options: ProtectOptions) -> ProtectOptions:
        if not self.style_mix.fitted:
            raise ValueError("the style-mix groups are not fitted: fit them on the generator "
                             "(StyleMixAnonymizer.fit) or load fitted groups")
        return super().check(options)

    def keyword_support(self) -> KeywordSupport:
        why = "style-mix anonymizes identity only and recovers nothing (no CDFNet)"
        return KeywordSupport((kw.IDENTITY,), (),
                              {k: why for k in kw.KEYWORDS if k != kw.IDENTITY})

    def protect_codes(self, codes, options: ProtectOptions) -> LatentOutput:
        from .privacy import PrivacyRecord, make_generator

        sm = self.style_mix
        samples = options.samples or 1
        eps = sm.default_epsilon if options.epsilon is None else options.epsilon
        window = tuple(options.rank_window or sm.default_rank_window)
        mechanism = options.mechanism or "window"
        rows = tuple(options.style_rows or sm.rows)
        generator, seed_used, seed_source = make_generator(options.seed)
        n = codes.shape[0]
        mixed = sm(codes.repeat(samples, 1, 1), eps, window, mechanism, rows, generator)
        record = PrivacyRecord(
            anonymize=[kw.IDENTITY], recover=[], mechanism=mechanism, epsilon=eps,
            rank_window=list(window), seed=seed_used, seed_source=seed_source,
            samples=samples, guarantee=_style_mix_guarantee(mechanism, eps, rows),
            scope=(f"The guarantee concerns only the choice of the synthetic identity for W+ "
                   f"rows [{rows[0]}, {rows[1]}). It says nothing about pixels outside the "
                   f"face or the other rows, which still carry information about the input."),
            extra={"style_rows": list(rows), "num_groups": sm.num_groups,
                   "member_bank": "mapping-network samples (synthetic identities only)"}
        )
        shape = (samples, n, *codes.shape[1:])
        return LatentOutput(mixed.codes.reshape(shape), None, _record_dict(record, self.info))


class ImageBaselineMethod(ImageMethod):
    """Blur, pixelate or mask the face regions of the photo."""

    def __init__(self, name: str):
        from .baselines import BASELINES

        if name not in BASELINES:
            raise ValueError(f"{name!r} is not an image baseline")
        self.info = METHODS[name]

    def protect_photo(self, photo, faces, options: ProtectOptions):
        from .baselines import get_baseline
        from .privacy import PrivacyRecord

        baseline = get_baseline(self.info.name, strength=options.strength)
        composed = baseline(photo, faces)
        record = PrivacyRecord(
            anonymize=[], recover=[], mechanism=self.info.name, epsilon=None,
            rank_window=None, seed=None, seed_source="none", samples=1,
            guarantee=f"Classical image baseline ({self.info.name}): no formal guarantee; "
                      f"the face region is obfuscated, nothing else changes.",
            scope="Only the face regions are changed; everything else in the photo is kept.",
            extra={"strength": baseline.strength})
        return composed, _record_dict(record, self.info, strength=baseline.strength)


def build_methods(model=None, style_mix=None, has_backbone: bool = False) -> dict:
    """The runnable methods for what is loaded, in ``METHODS`` order."""
    from .baselines import BASELINES

    runners: dict = {}
    for name in METHODS:
        if name in ("lreorg", "laplace", "k-anonymity") and model is not None and has_backbone:
            runners[name] = LReOrgMethod(name, model)
        elif name == "style-mix" and style_mix is not None and has_backbone:
            runners[name] = StyleMixMethod(style_mix)
        elif name in BASELINES:
            runners[name] = ImageBaselineMethod(name)
    return runners


def describe_missing(method: str) -> str:
    """Why a method cannot run, for the error when it is asked for but not loaded."""
    needs = METHODS[method].needs
    if needs == "bundle":
        return (f"method {method!r} needs an LReOrg bundle and a backbone (encoder + "
                f"generator)")
    return (f"method {method!r} needs a backbone (encoder + generator) and fitted style-mix "
            f"groups (StyleMixAnonymizer)")

