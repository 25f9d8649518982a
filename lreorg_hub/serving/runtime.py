"""Which weights the app runs, decided once per process, and what is missing."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch

from ..backbones import Backbone, BackboneNotAvailableError, BackboneSource, load_backbone
from ..bundle import BundleError, LReOrg, StyleMixAnonymizer
from ..demo import build_demo_backbone, build_demo_bundle, build_demo_style_mix
from ..image.baselines import BASELINES
from ..method import keywords as kw
from ..pipeline import LReOrgPipeline
from ..pipeline.devices import check_device
from ..pipeline.options import Limits
from ..pipeline.methods import KeywordSupport
from ..scorers import FFHQ_FACE_CROP, IdentityEncoder, WeightsUnavailableError
from .text import METHOD_LABELS, _first_line

__all__ = ["ServingConfig", "Runtime", "load_runtime"]

logger = logging.getLogger(__name__)


@dataclass
class ServingConfig:
    """Where the weights come from (flags / environment variables of ``app.py``).

    ``bundle``: Hub repo id or folder of an LReOrg bundle (None: none).
    ``backbone``: local e4e / rosinality checkpoint; None: the bundle's configured Hub file
    (or the library default), with the ``LREORG_BACKBONE_*`` overrides.
    ``try_backbone_without_bundle``: without a bundle, still load the backbone for style-mix.
    ``identity_weights``: facenet weights for the identity similarity ("vggface2", a file,
    or None to skip the measurement).
    """

    bundle: str | None = None
    bundle_revision: str | None = None
    backbone: str | None = None
    try_backbone_without_bundle: bool = True
    style_mix: str | None = None     # folder / repo of fitted style-mix groups (None: fit)
    demo: bool = False
    identity_weights: str | None = "vggface2"
    device: str = "auto"
    output_size: int | None = None
    max_pixels: int = 25_000_000
    #: What a visitor may ask for (the library's own caps are wider): k ≤ 8 samples, ε ≤ 10.
    limits: Limits = field(default_factory=lambda: Limits(max_samples=8, max_epsilon=10.0))


@dataclass
class Runtime:
    """What was loaded at start, decided once: the pipeline, the mode, and what is missing."""

    pipeline: LReOrgPipeline
    mode: str                             # "lreorg" | "style-mix" | "baselines"
    methods: list[str]                    # what can run, the best first
    demo: bool = False
    notes: list[str] = field(default_factory=list)      # missing weights, how to provide them
    identity: IdentityEncoder | None = None
    identity_note: str | None = None
    anonymizable: list[str] = field(default_factory=list)
    recoverable: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)   # keyword -> why not
    max_pixels: int = 25_000_000
    limits: Limits = field(default_factory=Limits)

    @property
    def default_method(self) -> str:
        return self.pipeline.default_method or self.methods[0]

    @property
    def default_epsilon(self) -> float:
        model = self.pipeline.model
        if model is not None:
            return float(model.default_epsilon)
        return 1.0

    @property
    def default_rank_window(self) -> tuple[int, int]:
        model = self.pipeline.model
        if model is not None:
            return tuple(model.default_rank_window)
        return (2, min(8, self.num_groups))

    @property
    def num_groups(self) -> int:
        return self.groups(self.default_method)

    def groups(self, method: str) -> int:
        """How many groups the identity draw of ``method`` chooses among."""
        pipe = self.pipeline
        if method == "style-mix" and pipe.style_mix is not None:
            return int(pipe.style_mix.num_groups)
        if pipe.model is not None:
            return int(pipe.model.identity_anonymizer.num_groups)
        return 16

    def keyword_choices(self, method: str) -> tuple[list[str], list[str], dict[str, str]]:
        """What ``method`` can anonymize / keep here, and why the others cannot. Identity is
        never offered to keep: keeping it would undo the anonymization."""
        if method not in self.methods or method in BASELINES:
            label = METHOD_LABELS.get(method, method)
            return [], [], {n: f"{label} obfuscates the whole face" for n in kw.KEYWORDS}
        support = self.pipeline.keywords(method)
        return (list(support.anonymize), [k for k in support.recover if k != kw.IDENTITY],
                dict(support.unavailable))

    def summary(self) -> str:
        """One sentence for the page: what this app can and cannot do with these weights."""
        if self.demo:
            return ("This demo runs small untrained networks: every step works, but the new "
                    "faces will not look like real faces.")
        if self.mode == "lreorg":
            return ("Faces are replaced by synthetic ones that can keep the attributes you "
                    "choose; nothing outside the faces (hair, clothes, background) is changed.")
        if self.mode == "style-mix":
            return ("Faces can be replaced by synthetic ones (style-mix) or blurred, pixelated "
                    "or masked; keeping chosen attributes needs a trained model that is not "
                    "loaded here.")
        return ("Faces can only be blurred, pixelated or masked here; replacing them needs "
                "model weights that are not loaded.")

    def console_banner(self) -> str:
        """For the operator (console, logs): which weights run, what is missing and how to
        provide it. Never shown on the page."""
        if self.demo:
            head = ("WEIGHTS ARE RANDOM (--demo): small random-weight StyleGAN2, e4e and CDFNet "
                    "built offline through the real classes; every step runs, the faces do not "
                    "look real.")
        elif self.mode == "lreorg":
            head = "LReOrg runs with the loaded bundle and backbone."
        elif self.mode == "style-mix":
            head = ("style-mix (training-free baseline) runs: the backbone loaded, but no "
                    "trained LReOrg bundle.")
        else:
            head = ("Classical baselines only (blur, pixelate, mask): no backbone or bundle "
                    "could be loaded, so the latent methods are off.")
        lines = [head, "Methods available: " + ", ".join(self.methods) + "."]
        lines += [f"- {n}" for n in self.notes]
        if self.identity_note:
            lines.append(f"- {self.identity_note}")
        return "\n".join(lines)


def _demo_weights(seed: int = 0) -> tuple[Backbone, LReOrg, StyleMixAnonymizer]:
    """Small random-weight backbone, fitted bundle and style-mix groups (real classes)."""
    backbone = build_demo_backbone(seed=seed)
    return backbone, build_demo_bundle(backbone, seed=seed), build_demo_style_mix(backbone, seed)


def _style_mix_for(backbone: Backbone, config: "ServingConfig",
                   notes: list[str]) -> StyleMixAnonymizer | None:
    """Style-mix groups: loaded from --style-mix, else fitted now on the generator's mapping
    network (synthetic identities only; a fixed seed, so every start serves the same groups)."""
    try:
        if config.style_mix:
            return StyleMixAnonymizer.from_pretrained(config.style_mix)
        g = backbone.generator
        return StyleMixAnonymizer(style_dim=g.style_dim, num_rows=g.n_latent).fit(
            g, generator=torch.Generator().manual_seed(0)).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        notes.append(f"The style-mix groups did not load: {_first_line(exc)}")
        return None


def _load_identity(config: ServingConfig) -> tuple[IdentityEncoder | None, str | None]:
    if config.identity_weights is None:
        return None, ("Identity similarity is off (--no-identity). Results show whether a face "
                      "is still detected only.")
    try:
        return IdentityEncoder(pretrained=config.identity_weights, crop=FFHQ_FACE_CROP), None
    except (WeightsUnavailableError, OSError, RuntimeError) as exc:
        logger.info("identity weights unavailable: %s", _first_line(exc))
        return None, ("Identity similarity is omitted: the facenet (VGGFace2) weights are "
                      "missing. Place 20180402-114759-vggface2.pt in $TORCH_HOME/checkpoints "
                      "or pass --identity-weights PATH (env LREORG_IDENTITY_WEIGHTS).")


def _backbone_note(source, exc: Exception) -> str:
    """Why the backbone did not load, and exactly how to provide it."""
    if isinstance(source, str):
        return (f"The StyleGAN2 + e4e backbone {source!r} did not load: {_first_line(exc)} "
                f"Pass --backbone with an e4e or rosinality checkpoint file.")
    src = BackboneSource.from_dict(source).with_env()
    name = src.filename.rsplit("/", 1)[-1]
    return (f"The StyleGAN2 + e4e backbone did not load: {_first_line(exc)} To provide it, run "
            f"`hf download {src.repo_id} {src.filename} --revision {src.revision}` on a machine "
            f"with internet access and copy the Hugging Face cache (HF_HOME) here; or pass "
            f"`--backbone /path/to/{name}` (env LREORG_BACKBONE_PATH); or point "
            f"LREORG_BACKBONE_REPO / _FILE / _REVISION at another Hub copy.")


def load_runtime(config: ServingConfig) -> Runtime:
    """Load what can be loaded, once, and say what is missing and how to provide it."""
    notes: list[str] = []
    model = backbone = style_mix = None
    if config.demo:
        backbone, model, style_mix = _demo_weights()
    else:
        if config.bundle:
            try:
                model = LReOrg.from_pretrained(config.bundle, revision=config.bundle_revision)
            except (BundleError, OSError, ValueError) as exc:
                notes.append(f"The LReOrg bundle {config.bundle!r} did not load: "
                             f"{_first_line(exc)}")
        else:
            notes.append("No LReOrg bundle given (none is published yet): pass --bundle "
                         "REPO_ID_OR_FOLDER or set LREORG_BUNDLE.")
        if model is not None or config.try_backbone_without_bundle:
            source = config.backbone or (model.backbone if model is not None else None)
            try:
                backbone = load_backbone(source)
            except (BackboneNotAvailableError, OSError, ValueError, RuntimeError) as exc:
                notes.append(_backbone_note(source, exc))
        if backbone is not None:
            style_mix = _style_mix_for(backbone, config, notes)
    pipe = _build_pipeline(model, backbone, style_mix, config, notes)
    methods = pipe.available_methods()
    mode = pipe.default_method or "baselines"
    if mode == "baselines":
        support = KeywordSupport((), (), {n: "needs a trained LReOrg bundle (or the backbone, "
                                              "for style-mix)" for n in kw.KEYWORDS})
    else:
        support = pipe.keywords(mode)
    anonymizable, recoverable = list(support.anonymize), list(support.recover)
    unavailable = dict(support.unavailable)
    identity, identity_note = _load_identity(config)
    if identity is not None:
        identity = identity.to(pipe.device)
    pipe.detector  # built now: models load once per process, not per request
    return Runtime(pipeline=pipe, mode=mode, methods=methods, demo=config.demo, notes=notes,
                   identity=identity, identity_note=identity_note, anonymizable=anonymizable,
                   recoverable=recoverable, unavailable=unavailable,
                   max_pixels=config.max_pixels, limits=config.limits)


def _build_pipeline(model, backbone, style_mix, config: ServingConfig,
                    notes: list[str]) -> LReOrgPipeline:
    kwargs = dict(device=check_device(config.device), output_size=config.output_size,
                  max_pixels=config.max_pixels)
    if backbone is None:
        return LReOrgPipeline(None, **kwargs)
    parts = (backbone.encoder, backbone.generator, backbone.latent_avg)
    try:
        return LReOrgPipeline(model, *parts, style_mix=style_mix, **kwargs)
    except ValueError as exc:  # the bundle does not fit the backbone's codes
        if model is None:
            raise
        notes.append(f"The bundle and backbone do not fit together: {_first_line(exc)}")
        return LReOrgPipeline(None, *parts, style_mix=style_mix, **kwargs)
