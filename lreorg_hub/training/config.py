"""Training configuration: one dataclass, read from a JSON/TOML file plus `key=value` overrides.

The effective configuration is written (as JSON) next to every checkpoint and into the final
bundle's ``training.json``, so a run can be understood and resumed from its files alone.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..scorers.defaults import DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED, FFHQ_FACE_CROP
from .weights import REDUCTIONS, AOSWeights, IOSWeights

__all__ = ["TrainingConfig", "RESUME_OVERRIDABLE", "KEY_HELP", "parse_overrides",
           "describe_keys"]

#: What a resumed run may change: how long it runs and where/how it reports, nothing that
#: changes the arithmetic of a step (that would break the bit-for-bit continuation).
RESUME_OVERRIDABLE = ("steps", "log_every", "checkpoint_every", "keep_checkpoints", "out",
                      "tensorboard", "progress")


@dataclass
class TrainingConfig:
    """Everything that defines a swap-training run (SPEC §5).

    Optimisation: ``steps`` steps of ``batch_size`` latent pairs; Adam (``betas``, ``lr``).
    Each step samples one keyword uniformly from ``keywords`` (default: all of the bundle's);
    identity runs the identity-oriented swap (L_IOS), any other keyword the attribute-oriented
    swap (L_AOS), with the weights ``ios_weights`` / ``aos_weights`` (the paper's by default).

    Latents: ``latents = "w"`` (the paper) broadcasts one mapping-network sample w to every
    W+ row; ``"w+"`` draws each of the L rows of a code from one of ``mixing_sources``
    mapping samples (per-row style mixing), so training sees codes whose rows differ, as the
    e4e codes CDFNet meets at inference do. ``loss_reduction`` is how L_f and L_r reduce over
    the code ("mean", default, or "sum": see ``losses``).

    Images: I = G(s) resized to ``image_size`` (256). ``generator_output_size=256`` stops the
    generator at its 256 px block instead (much faster on a 1024 px generator, but that image
    is the coarse ToRGB sum, not a downscaled final image; off by default). ``noise_mode``
    is the generator's noise (stored "const" noise keeps a latent's image fixed).

    Start: a fresh run draws CDFNet's weights from the seed with every φ/ψ output layer at
    N(0, ``init_output_std``²) — near the identity map, but not on it: the exact identity
    is a stationary point of swap training (see ``CDFNet.reset_parameters``).

    Learning: only CDFNet learns, plus the keyword embeddings if
    ``train_keyword_embeddings``. ``mixed_precision="bf16"`` runs the frozen generator and
    scorers under bf16 autocast and ``"fp16"`` under fp16 autocast with a gradient scaler
    (CDFNet always stays float32: its invertibility depends on it); ``gradient_checkpointing`` recomputes the swapped images' generator and scorer
    passes in the backward pass instead of storing them.

    Watching: every ``log_every`` steps a CSV row (and TensorBoard if ``tensorboard``) with
    every loss term and the round-trip error max|CDFNet⁻¹(CDFNet(s)) − (0, s)| on a fixed
    held-out batch of ``heldout_size`` latents; a warning above ``roundtrip_warn``.

    Randomness: ``seed`` seeds every draw of the run (CDFNet init, latents, keywords,
    held-out batch); None draws it from OS entropy and it is never written anywhere.

    Building (CLI): ``backbone`` is a local e4e / rosinality file (None: the bundle's
    configured Hub file, or $LREORG_BACKBONE_PATH); ``bundle`` holds LReOrg constructor
    arguments (CDFNet sizes, keywords, GIA size; latent sizes and cond_dim are filled from the
    backbone and CLIP); ``identity_encoder`` and ``clip`` are IdentityEncoder / KeywordEncoder
    arguments (``pretrained: null`` = random weights, for tests and timing only).
    """

    steps: int = 50_000
    batch_size: int = 4
    lr: float = 1e-5
    betas: tuple[float, float] = (0.5, 0.999)
    keywords: list[str] | None = None
    ios_weights: dict = field(default_factory=lambda: dataclasses.asdict(IOSWeights()))
    aos_weights: dict = field(default_factory=lambda: dataclasses.asdict(AOSWeights()))
    loss_reduction: str = "mean"
    latents: str = "w"
    mixing_sources: int = 2
    image_size: int = 256
    generator_output_size: int | None = None
    noise_mode: str = "const"
    train_keyword_embeddings: bool = False
    init_output_std: float = 1e-3
    mixed_precision: str = "no"
    gradient_checkpointing: bool = False
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    heldout_size: int = 8
    roundtrip_warn: float = 1e-4
    seed: int | None = None
    device: str = "auto"
    out: str = "runs/lreorg"
    tensorboard: bool = False
    progress: bool = True
    backbone: str | None = None
    bundle: dict = field(default_factory=dict)
    identity_encoder: dict = field(default_factory=lambda: {"pretrained": "vggface2",
                                                            "crop": list(FFHQ_FACE_CROP)})
    clip: dict = field(default_factory=lambda: {"model_name": DEFAULT_CLIP_MODEL,
                                                "pretrained": DEFAULT_CLIP_PRETRAINED})

    def __post_init__(self):
        self.betas = tuple(float(b) for b in self.betas)
        problems = []
        for name in ("steps", "batch_size", "image_size", "log_every", "checkpoint_every",
                     "keep_checkpoints", "heldout_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                problems.append(f"{name} must be a positive integer, got {value!r}")
        if not (self.init_output_std >= 0):
            problems.append(f"init_output_std must be >= 0, got {self.init_output_std!r}")
        if not (self.lr > 0):
            problems.append(f"lr must be > 0, got {self.lr!r}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            problems.append(f"betas must be two numbers in [0, 1), got {self.betas!r}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            problems.append(f"mixed_precision must be 'no', 'bf16' or 'fp16', got "
                            f"{self.mixed_precision!r}")
        if self.loss_reduction not in REDUCTIONS:
            problems.append(f"loss_reduction must be one of {list(REDUCTIONS)}, got "
                            f"{self.loss_reduction!r}")
        if self.latents not in ("w", "w+"):
            problems.append(f"latents must be 'w' or 'w+', got {self.latents!r}")
        sources = self.mixing_sources
        if isinstance(sources, bool) or not isinstance(sources, int) or sources < 2:
            problems.append(f"mixing_sources must be an integer >= 2, got {sources!r}")
        if self.noise_mode not in ("const", "none"):
            problems.append(f"noise_mode must be 'const' or 'none' (random noise would make "
                            f"I and I' differ for reasons CDFNet cannot learn), got "
                            f"{self.noise_mode!r}")
        size = self.generator_output_size
        if size is not None and (isinstance(size, bool) or not isinstance(size, int)
                                 or size < 4 or size & (size - 1)):
            problems.append(f"generator_output_size must be null or a power of two >= 4, got "
                            f"{size!r}")
        for name, cls in (("ios_weights", IOSWeights), ("aos_weights", AOSWeights)):
            known = {f.name for f in dataclasses.fields(cls)}
            unknown = sorted(set(getattr(self, name)) - known)
            if unknown:
                problems.append(f"{name} has unknown term(s) {unknown}; known: {sorted(known)}")
        if problems:
            raise ValueError("invalid training configuration: " + "; ".join(problems))

    @property
    def ios(self) -> IOSWeights:
        return IOSWeights(**self.ios_weights)

    @property
    def aos(self) -> AOSWeights:
        return AOSWeights(**self.aos_weights)

    # -- plain values in and out -----------------------------------------------------------
    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> "TrainingConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(known))}")
        return cls(**dict(values))

    @classmethod
    def from_file(cls, path: str | Path | None, overrides: Sequence[str] = ()) -> "TrainingConfig":
        """Read a .json or .toml file (None: the defaults), then apply `key=value` overrides."""
        values: dict = {}
        if path is not None:
            path = Path(path)
            if not path.is_file():
                raise FileNotFoundError(f"training configuration {path} not found")
            text = path.read_text("utf-8")
            if path.suffix.lower() == ".toml":
                values = tomllib.loads(text)
            elif path.suffix.lower() == ".json":
                values = json.loads(text)
            else:
                raise ValueError(f"training configuration must be a .json or .toml file, got "
                                 f"{path.name}")
        unknown = sorted(set(values) - {f.name for f in dataclasses.fields(cls)})
        if unknown:  # before merging, so the message names the file's own keys
            raise ValueError(f"unknown training option(s) {', '.join(unknown)} in {path}")
        # File and overrides are merged into the defaults table by table, so setting
        # identity_encoder.image_size keeps identity_encoder.pretrained.
        merged = _deep_merge(cls().to_dict(), values)
        return cls.from_dict(apply_overrides(merged, parse_overrides(overrides)))


#: One line per key for `lreorg train --help` and --print-config (the defaults come from the
#: dataclass itself; tests check that every key has a line here).
KEY_HELP = {
    "steps": "total optimisation steps",
    "batch_size": "latent pairs per step (global: split over processes)",
    "lr": "Adam learning rate",
    "betas": "Adam betas",
    "keywords": "keywords to train (null: all of the bundle's)",
    "ios_weights": "λ of L_IOS: identity, perceptual, latent, information",
    "aos_weights": "α of L_AOS: identity, swap, latent, information",
    "loss_reduction": "L_f / L_r over the code: mean (per row / per entry) or sum",
    "latents": "w (one mapping sample per code) or w+ (rows mixed from several)",
    "mixing_sources": "with latents = w+: mapping samples mixed per code",
    "image_size": "I = G(s) resized to this side",
    "generator_output_size": "stop the generator at this block (null: full size)",
    "noise_mode": "generator noise: const or none",
    "train_keyword_embeddings": "also learn the keyword condition vectors",
    "init_output_std": "std of the φ/ψ output layers at the start",
    "mixed_precision": "no, bf16 or fp16 autocast of the frozen networks",
    "gradient_checkpointing": "recompute the swapped images' passes in backward",
    "log_every": "steps per log row",
    "checkpoint_every": "steps per checkpoint",
    "keep_checkpoints": "newest checkpoints kept",
    "heldout_size": "held-out latents for the round-trip check (pairs: half)",
    "roundtrip_warn": "warn above this round-trip error",
    "seed": "seed of every draw (null: OS entropy, never written)",
    "device": "auto, cpu, cuda, cuda:1 …",
    "out": "run folder",
    "tensorboard": "also write TensorBoard scalars",
    "progress": "show a progress bar",
    "backbone": "local e4e / rosinality file (null: the bundle's Hub file)",
    "bundle": "LReOrg constructor arguments (cdfnet sizes, keywords, backbone, …)",
    "identity_encoder": "IdentityEncoder arguments (pretrained: null = random, tests only)",
    "clip": "KeywordEncoder arguments (pretrained: null = random, tests only)",
}


def describe_keys() -> str:
    """Every key with its default and one line of help (for --help)."""
    lines = []
    for key, value in TrainingConfig().to_dict().items():
        lines.append(f"  {key} = {json.dumps(value)}\n      {KEY_HELP[key]}")
    return "\n".join(lines)


def parse_overrides(items: Sequence[str]) -> dict:
    """`key=value` strings → {key: value}; values are JSON where they parse (numbers, true,
    null, lists, objects), plain strings otherwise; `a.b=1` sets a nested key."""
    out: dict = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"override {item!r} must look like key=value")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        out[key.strip()] = value
    return out


def _deep_merge(base: dict, update: Mapping[str, Any]) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def apply_overrides(values: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict:
    result = json.loads(json.dumps(dict(values)))  # a deep copy of plain values
    for key, value in overrides.items():
        *parents, leaf = key.split(".")
        node = result
        for p in parents:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override {key!r}: {p!r} is not a table")
        node[leaf] = value
    return result
