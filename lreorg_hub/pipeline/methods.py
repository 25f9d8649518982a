"""One runner per method behind one interface (the *protect* stage).

The runners give every method the same small interface, so the pipeline only detects, aligns,
encodes, generates and pastes around them:

- latent methods (``LatentMethod``): W+ codes (N, L, D) → ``LatentOutput`` (anonymized and
  recovered codes, samples first, the public record and private diagnostics);
- image methods (``ImageMethod``): photo + faces → photo and record.

``check`` validates a call's options against what is loaded (keywords of the bundle, number
of groups, fitted anonymizers) through the one ``ProtectOptions.validate``.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from typing import ClassVar

from ..method import keywords as kw
from ..privacy import GUARANTEES, PrivacyRecord
from .options import Limits, ProtectOptions
from .registry import METHODS, MethodInfo

__all__ = ["KeywordSupport", "LatentOutput", "LatentMethod", "ImageMethod", "LReOrgMethod",
           "StyleMixMethod", "ImageBaselineMethod", "build_methods", "describe_missing"]


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
    record: PrivacyRecord
    diagnostics: dict = field(default_factory=dict)   # private (e.g. information loss)


class LatentMethod(ABC):
    """W+ codes in, protected codes out (the pipeline encodes before and generates after)."""

    info: MethodInfo
    stage: ClassVar[str] = "reorganize"

    def check(self, options: ProtectOptions, limits: Limits = Limits()) -> ProtectOptions:
        """``options.validate`` against what is loaded, plus fitted-state checks."""
        return options.validate(default_method=self.info.name, limits=limits,
                                **self.weight_limits())

    @abstractmethod
    def weight_limits(self) -> dict:
        """keywords / num_groups / num_rows of the loaded weights, for validation."""

    @abstractmethod
    def keyword_support(self) -> KeywordSupport: ...

    @abstractmethod
    def protect_codes(self, codes, options: ProtectOptions,
                      identities=None) -> LatentOutput:
        """codes (N, L, D), options already checked → LatentOutput. ``identities``: one
        replacement per code drawn beforehand by :meth:`draw_tracks` (nothing is drawn)."""

    def protect_codes_many(self, codes: list, options: list[ProtectOptions],
                           identities: list | None = None) -> list[LatentOutput]:
        """Many photos' codes, each with its options (which differ at most in the seed) →
        one LatentOutput per photo. This default runs them one by one; methods with
        network passes override it to share them."""
        identities = identities or [None] * len(codes)
        return [self.protect_codes(c, o, i) for c, o, i in zip(codes, options, identities)]

    # -- one draw per video track (SPEC §9) ----------------------------------------------------
    def draws_identity(self, options: ProtectOptions) -> bool:
        """Whether the identity is replaced (then a video draws it once per track)."""
        return kw.IDENTITY in (options.anonymize or (kw.IDENTITY,))

    @abstractmethod
    def track_features(self, codes):
        """The feature that ranks the groups, per code (float32): a track's draw uses the
        mean over its frames."""

    @abstractmethod
    def draw_tracks(self, features, options: ProtectOptions, seeds: list):
        """One identity replacement per row of ``features`` (a track's mean feature), row i
        drawn with its own coins ``seeds[i]`` (a SecretSeed, or a typed seed)."""


class ImageMethod(ABC):
    """Photo and faces in, photo out (no encoder, no generator)."""

    info: MethodInfo
    stage: ClassVar[str] = "baseline"

    def check(self, options: ProtectOptions, limits: Limits = Limits()) -> ProtectOptions:
        return options.validate(default_method=self.info.name, limits=limits)

    def keyword_support(self) -> KeywordSupport:
        return KeywordSupport((), (), {k: f"{self.info.label} obfuscates the whole face region"
                                       for k in kw.KEYWORDS})

    @abstractmethod
    def protect_photo(self, photo, faces, options: ProtectOptions):
        """(photo, faces, options) → (protected photo, PrivacyRecord)."""


class LReOrgMethod(LatentMethod):
    """LReOrg and the latent baselines, which replace GIA by Laplace noise or k-anonymity."""

    _IDENTITY = {"lreorg": "gia", "laplace": "laplace", "k-anonymity": "k-anonymity"}

    def __init__(self, name: str, model):
        if name not in self._IDENTITY:
            raise ValueError(f"{name!r} is not a bundle method")
        self.info, self.model = METHODS[name], model

    def weight_limits(self) -> dict:
        return {"keywords": list(self.model.keywords),
                "num_groups": self.model.identity_anonymizer.num_groups,
                "num_rows": self.model.cdfnet.num_rows}

    def check(self, options: ProtectOptions, limits: Limits = Limits()) -> ProtectOptions:
        opts = super().check(options, limits)
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

    def protect_codes(self, codes, options: ProtectOptions, identities=None) -> LatentOutput:
        return self.protect_codes_many([codes], [options],
                                       None if identities is None else [identities])[0]

    def track_features(self, codes):
        return self.model.identity_features(codes)

    def draw_tracks(self, features, options: ProtectOptions, seeds: list):
        import torch

        from ..method.rng import make_generator

        return torch.cat([self.model.draw_identity(
            f[None], self._IDENTITY[self.info.name], options.mechanism or "window",
            options.epsilon, options.rank_window, make_generator(seed)[0])
            for f, seed in zip(features, seeds)]) if len(seeds) else features[:0]

    def protect_codes_many(self, codes: list, options: list[ProtectOptions],
                           identities: list | None = None) -> list[LatentOutput]:
        """All photos share every CDFNet pass (``LReOrgModule.reorganize_many``); each keeps
        its own seed and so its own DP draw."""
        first = options[0]
        if any(replace(o, seed=None) != replace(first, seed=None) for o in options):
            raise ValueError("protect_codes_many: the photos' options may differ only in "
                             "the seed")
        outs = self.model.reorganize_many(
            codes, [o.seed for o in options], first.anonymize, first.recover,
            epsilon=first.epsilon, rank_window=first.rank_window,
            identity=self._IDENTITY[self.info.name], mechanism=first.mechanism or "window",
            samples=first.samples or 1, identities=identities)
        import torch

        names = list(outs[0].information_loss)
        # One read-back for every photo's mean information loss, not one per number.
        means = torch.stack([torch.stack([o.information_loss[k].mean() for k in names])
                             for o in outs]).tolist() if names else [[] for _ in outs]
        results = []
        for out, mean in zip(outs, means):
            record = _labelled(out.record, self.info)
            results.append(LatentOutput(out.recovered,
                                        out.anonymized if out.record.recover else None,
                                        record, {"information_loss": dict(zip(names, mean))}))
        return results


def _labelled(record: PrivacyRecord, info: MethodInfo) -> PrivacyRecord:
    """The record with the method that ran and its label."""
    return replace(record, method=info.name, method_label=info.label)


def _style_mix_guarantee(mechanism: str, epsilon: float, rows: tuple[int, int]) -> str:
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

    def weight_limits(self) -> dict:
        return {"keywords": [kw.IDENTITY], "num_groups": self.style_mix.num_groups,
                "num_rows": self.style_mix.num_rows}

    def check(self, options: ProtectOptions, limits: Limits = Limits()) -> ProtectOptions:
        if not self.style_mix.fitted:
            raise ValueError("the style-mix groups are not fitted: fit them on the generator "
                             "(StyleMixAnonymizer.fit) or load fitted groups")
        return super().check(options, limits)

    def keyword_support(self) -> KeywordSupport:
        why = "style-mix anonymizes identity only and recovers nothing (no CDFNet)"
        return KeywordSupport((kw.IDENTITY,), (),
                              {k: why for k in kw.KEYWORDS if k != kw.IDENTITY})

    def track_features(self, codes):
        return self.style_mix.feature(codes, self._rows(None)).float()

    def draw_tracks(self, features, options: ProtectOptions, seeds: list):
        import torch

        from ..method.rng import make_generator

        sm = self.style_mix
        return torch.cat([sm.members(sm.draw(f[None], options.epsilon, options.rank_window,
                                             options.mechanism or "window",
                                             make_generator(seed)[0]))
                          for f, seed in zip(features, seeds)]) if len(seeds) else \
            features.new_zeros((0, sm.style_dim))

    def _rows(self, options: ProtectOptions | None) -> tuple[int, int]:
        return tuple((options.style_rows if options is not None else None) or
                     self.style_mix.rows)

    def protect_codes(self, codes, options: ProtectOptions, identities=None) -> LatentOutput:
        from ..method.rng import make_generator

        sm = self.style_mix
        samples = options.samples or 1
        eps = sm.default_epsilon if options.epsilon is None else options.epsilon
        window = tuple(options.rank_window or sm.default_rank_window)
        mechanism = options.mechanism or "window"
        rows = self._rows(options)
        generator, seed_used, seed_source = make_generator(options.seed)
        n = codes.shape[0]
        if identities is not None:  # drawn beforehand, once per track: nothing drawn here
            if samples != 1 or options.seed is not None:
                raise ValueError("fixed identities take samples=1 and no seed")
            mixed_codes, seed_source = sm.mix(codes, identities, rows), "none"
        else:
            mixed_codes = sm(codes.repeat(samples, 1, 1), eps, window, mechanism, rows,
                             generator).codes
        record = PrivacyRecord(
            method=self.info.name, method_label=self.info.label, anonymize=[kw.IDENTITY],
            recover=[], identity="style-mix", mechanism=mechanism, epsilon=eps,
            rank_window=list(window), seed=seed_used, seed_source=seed_source,
            samples=samples, faces=n, guarantee=_style_mix_guarantee(mechanism, eps, rows),
            scope=(f"The guarantee concerns only the choice of the synthetic identity for W+ "
                   f"rows [{rows[0]}, {rows[1]}). It says nothing about pixels outside the "
                   f"face or the other rows, which still carry information about the input."),
            extra={"style_rows": list(rows), "num_groups": sm.num_groups,
                   "member_bank": "mapping-network samples (synthetic identities only)"})
        shape = (samples, n, *codes.shape[1:])
        return LatentOutput(mixed_codes.reshape(shape), None, record)


class ImageBaselineMethod(ImageMethod):
    """Blur, pixelate or mask the face regions of the photo."""

    def __init__(self, name: str):
        from ..image.baselines import BASELINES

        if name not in BASELINES:
            raise ValueError(f"{name!r} is not an image baseline")
        self.info = METHODS[name]

    def protect_photo(self, photo, faces, options: ProtectOptions):
        from ..image.baselines import get_baseline

        baseline = get_baseline(self.info.name, strength=options.strength)
        composed = baseline(photo, faces)
        record = PrivacyRecord(
            method=self.info.name, method_label=self.info.label, anonymize=[], recover=[],
            identity="none", mechanism=None, epsilon=None, rank_window=None, seed=None,
            seed_source="none", samples=1, faces=len(faces),
            guarantee=f"Classical image baseline ({self.info.name}): no formal guarantee; "
                      f"the face region is obfuscated, nothing else changes.",
            scope="Only the face regions are changed; everything else in the photo is kept.",
            extra={"strength": baseline.strength})
        return composed, record


def build_methods(model=None, style_mix=None, has_backbone: bool = False) -> dict:
    """The runnable methods for what is loaded, in ``METHODS`` order."""
    from ..image.baselines import BASELINES

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
