"""The backbone: encoder, generator and latent_avg, loaded from an e4e or rosinality
checkpoint (local or from the Hub)."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from .checkpoints import (CheckpointLayoutError, _quote, build_encoder,
                          build_generator, read_checkpoint, split_prefixed)
from .e4e import E4EEncoder, _broadcast_latent_avg
from .sources import ENV_PATH, BackboneSource, download_backbone
from .stylegan2 import StyleGAN2Generator

__all__ = ["Backbone", "load_backbone", "load_e4e_checkpoint", "load_rosinality_checkpoint"]

logger = logging.getLogger(__name__)


@dataclass
class Backbone:
    """Encoder (optional), generator and average latent, ready for inference (eval mode).

    ``latent_avg`` has shape (n_latent, style_dim) (rows equal for rosinality files).
    ``opts`` holds the plain values of the e4e ``opts`` dict, for information only.
    """

    generator: StyleGAN2Generator
    encoder: E4EEncoder | None = None
    latent_avg: torch.Tensor | None = None
    source: str = ""
    opts: dict = field(default_factory=dict)

    def __post_init__(self):
        self.generator.eval()
        if self.encoder is not None:
            self.encoder.eval()

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    def to(self, device: torch.device | str) -> "Backbone":
        self.generator.to(device)
        if self.encoder is not None:
            self.encoder.to(device)
        if self.latent_avg is not None:
            self.latent_avg = self.latent_avg.to(device)
        return self

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Aligned faces (N, 3, S, S) in the encoder's input range → W+ (N, n_latent, D)."""
        if self.encoder is None:
            raise RuntimeError(f"backbone {self.source!r} has no encoder")
        if self.encoder.n_styles != self.n_latent:
            raise RuntimeError("encoder heads do not match the generator's W+ rows")
        return self.encoder(images, latent_avg=self.latent_avg)

    def decode(self, codes: torch.Tensor, **kwargs) -> torch.Tensor:
        """W+ codes → images in [−1, 1]; stored noise unless ``noise_mode`` says otherwise."""
        kwargs.setdefault("noise_mode", "const")
        return self.generator(codes, **kwargs)


def _plain_opts(opts: Any) -> dict:
    """Only plain values (str/int/float/bool/None and lists of them) from ``opts``."""
    if isinstance(opts, argparse.Namespace):
        opts = vars(opts)
    if not isinstance(opts, Mapping):
        return {}
    plain = (str, int, float, bool, type(None))
    return {str(k): v for k, v in opts.items()
            if isinstance(v, plain) or (isinstance(v, (list, tuple))
                                        and all(isinstance(x, plain) for x in v))}


def _latent_avg(value: Any, n_latent: int, style_dim: int, what: str) -> torch.Tensor | None:
    if value is None:
        return None
    if not isinstance(value, torch.Tensor) or value.shape[-1] != style_dim:
        raise CheckpointLayoutError(f"{what}: latent_avg must be a tensor (…, {style_dim}), "
                                    f"got {getattr(value, 'shape', type(value))}")
    if not bool(torch.isfinite(value).all()):
        raise CheckpointLayoutError(f"{what}: latent_avg holds NaN or ∞ values; the "
                                    f"checkpoint is damaged")
    try:
        return _broadcast_latent_avg(value.float(), n_latent).contiguous()
    except ValueError as e:
        raise CheckpointLayoutError(f"{what}: {e}") from None


def load_e4e_checkpoint(path_or_ckpt: str | Path | Mapping, *, allow_missing_noise: bool = False,
                        source: str | None = None) -> Backbone:
    """Load ``e4e_ffhq_encode.pt``-style files: ``state_dict`` with ``encoder.``/``decoder.``
    prefixes, ``latent_avg`` and ``opts``. Anything else (discriminator, optimiser…) is
    ignored with a debug log."""
    ckpt = read_checkpoint(path_or_ckpt) if not isinstance(path_or_ckpt, Mapping) else path_or_ckpt
    what = source or (str(path_or_ckpt) if not isinstance(path_or_ckpt, Mapping) else "e4e")
    if "state_dict" not in ckpt:
        raise CheckpointLayoutError(f"{what}: not an e4e checkpoint (no 'state_dict'; top-"
                                    f"level keys: {_quote(sorted(map(str, ckpt)))})")
    other = sorted(str(k) for k in ckpt if k not in ("state_dict", "latent_avg", "opts"))
    if other:
        logger.debug("%s: ignoring top-level entries %s", what, other)
    parts, ignored = split_prefixed(ckpt["state_dict"])
    if ignored:
        logger.debug("%s: ignoring %d state_dict entries outside encoder/decoder (%s)",
                     what, len(ignored), _quote(ignored))
    if not parts["encoder"] or not parts["decoder"]:
        raise CheckpointLayoutError(f"{what}: state_dict needs 'encoder.' and 'decoder.' "
                                    f"entries (found {len(parts['encoder'])} and "
                                    f"{len(parts['decoder'])})")
    opts = _plain_opts(ckpt.get("opts"))
    generator = build_generator(parts["decoder"], allow_missing_noise=allow_missing_noise,
                                what=f"{what} [decoder]")
    encoder = build_encoder(parts["encoder"], what=f"{what} [encoder]")
    _check_opts(opts, encoder, generator, what)
    latent_avg = _latent_avg(ckpt.get("latent_avg"), generator.n_latent,
                             generator.style_dim, what)
    if latent_avg is None and opts.get("start_from_latent_avg", True):
        logger.warning("%s: no latent_avg stored; using the mean of 10,000 mapped samples "
                       "(fixed seed), as e4e does", what)
        latent_avg = generator.mean_latent(10_000, torch.Generator().manual_seed(0))
        latent_avg = _broadcast_latent_avg(latent_avg, generator.n_latent).contiguous()
    if encoder.n_styles != generator.n_latent:
        raise CheckpointLayoutError(f"{what}: {encoder.n_styles} encoder heads but the "
                                    f"decoder takes {generator.n_latent} W+ rows")
    return Backbone(generator=generator, encoder=encoder, latent_avg=latent_avg, source=what,
                    opts=opts)


def _check_opts(opts: dict, encoder: E4EEncoder, generator: StyleGAN2Generator,
                what: str) -> None:
    etype = opts.get("encoder_type")
    if etype is not None and etype != "Encoder4Editing":
        raise CheckpointLayoutError(f"{what}: opts['encoder_type'] = {etype!r}; only "
                                    f"Encoder4Editing checkpoints are supported")
    size = opts.get("stylegan_size")
    if size is not None and size != generator.size:
        # Known issue (encoder4editing #56): the stored value can be wrong; keys win.
        logger.info("%s: opts['stylegan_size']=%s ignored; the weights say %d",
                    what, size, generator.size)


def load_rosinality_checkpoint(path_or_ckpt: str | Path | Mapping, *, key: str = "g_ema",
                               allow_missing_noise: bool = False,
                               source: str | None = None) -> Backbone:
    """Load a rosinality-format file (``g_ema`` [+ ``latent_avg``], or a train.py checkpoint).

    ``latent_avg`` is (512,) in converted files and absent from train.py checkpoints
    (then ``Backbone.latent_avg`` is None; use ``generator.mean_latent``).
    """
    ckpt = read_checkpoint(path_or_ckpt) if not isinstance(path_or_ckpt, Mapping) else path_or_ckpt
    what = source or (str(path_or_ckpt) if not isinstance(path_or_ckpt, Mapping) else "rosinality")
    if key not in ckpt:
        raise CheckpointLayoutError(f"{what}: no {key!r} entry (top-level keys: "
                                    f"{_quote(sorted(map(str, ckpt)))})")
    generator = build_generator(ckpt[key], allow_missing_noise=allow_missing_noise,
                                what=f"{what} [{key}]")
    latent_avg = _latent_avg(ckpt.get("latent_avg"), generator.n_latent,
                             generator.style_dim, what)
    return Backbone(generator=generator, latent_avg=latent_avg, source=what,
                    opts=_plain_opts(ckpt.get("args")))


def _detect_format(ckpt: Mapping) -> str:
    if "state_dict" in ckpt:
        return "e4e"
    if "g_ema" in ckpt:
        return "rosinality"
    raise CheckpointLayoutError("unknown checkpoint format (expected 'state_dict' for e4e or "
                                f"'g_ema' for rosinality; got {_quote(sorted(map(str, ckpt)))})")


def load_backbone(path_or_source: str | Path | BackboneSource | Mapping | None = None, *,
                  format: str | None = None, local_files_only: bool = False,
                  cache_dir: str | Path | None = None,
                  allow_missing_noise: bool = False) -> Backbone:
    """Load the backbone from a local file, or download it from the Hub.

    ``path_or_source``: a path to a ``.pt`` file (always wins); otherwise
    ``$LREORG_BACKBONE_PATH`` when set, else the Hub source given (a
    :class:`BackboneSource`, a dict of its fields such as a bundle's ``backbone`` config, or
    None for the default) with the ``LREORG_BACKBONE_REPO`` / ``_FILE`` / ``_REVISION``
    overrides. ``format`` ("e4e"/"rosinality") is detected from the file when None.
    """
    if not isinstance(path_or_source, (str, Path)) and os.environ.get(ENV_PATH):
        # The environment names a local file: it replaces any Hub source (configured or not).
        path_or_source = os.environ[ENV_PATH]
        format = None
    expected_size = None
    if isinstance(path_or_source, (str, Path)):
        path = Path(path_or_source).expanduser()
        label = str(path)
    else:
        src = (path_or_source if isinstance(path_or_source, BackboneSource)
               else BackboneSource.from_dict(path_or_source)).with_env()
        path = download_backbone(src, cache_dir=cache_dir, local_files_only=local_files_only)
        label = src.describe()
        format = format or src.format
        expected_size = src.size
    ckpt = read_checkpoint(path)
    fmt = format or _detect_format(ckpt)
    if fmt == "e4e":
        backbone = load_e4e_checkpoint(ckpt, allow_missing_noise=allow_missing_noise,
                                       source=label)
    elif fmt == "rosinality":
        backbone = load_rosinality_checkpoint(ckpt, allow_missing_noise=allow_missing_noise,
                                              source=label)
    else:
        raise ValueError(f"format must be 'e4e' or 'rosinality', got {fmt!r}")
    if expected_size is not None and backbone.generator.size != expected_size:
        logger.warning("%s: configured size %s, but the weights are a %d px generator "
                       "(the weights win)", label, expected_size, backbone.generator.size)
    return backbone
