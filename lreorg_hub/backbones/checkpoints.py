"""Loading the public backbone checkpoints: e4e (encoder + 1024 px decoder) and
rosinality-format StyleGAN2 files, from a local path or the Hugging Face Hub.

Policy (``docs/CHECKPOINT_LAYOUTS.md`` §1):

- files are read with ``torch.load(..., weights_only=True)`` only; rosinality ``train.py``
  checkpoints (which pickle an ``argparse.Namespace``) are read with that one class
  allow-listed, never with ``weights_only=False``;
- architectures are derived from the state-dict keys and shapes, not from ``opts`` (the
  public e4e file's ``opts['stylegan_size']`` is known to be unreliable);
- loading is strict: a clear :class:`CheckpointLayoutError` names missing, unexpected and
  mis-shaped keys. The only tensors ever synthesised are the constant blur/upsample
  kernels, which some third-party conversions drop; missing ``noises.*`` fail by default
  (random noise would silently change every "deterministic" image);
- models are built on the ``meta`` device and the checkpoint tensors are assigned, so a
  1.2 GB file costs no second copy and no random initialisation.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .e4e import IR_SE_UNITS, E4EEncoder
from .sources import BackboneNotAvailableError
from .stylegan2 import StyleGAN2Generator, blur_kernel_2d, channel_table

__all__ = ["CheckpointLayoutError", "CheckpointReadError", "read_checkpoint", "check_layout",
           "strict_load", "split_prefixed", "generator_config_from_state_dict",
           "encoder_config_from_state_dict", "build_generator", "build_encoder"]

logger = logging.getLogger(__name__)

_LIST_LIMIT = 5  # keys quoted per category in error messages


class CheckpointLayoutError(RuntimeError):
    """A checkpoint's keys or shapes do not match the architecture."""


class CheckpointReadError(ValueError):
    """A backbone file that is not a safely loadable PyTorch checkpoint (one sentence)."""


_MAGIC = {b"\xff\xd8\xff": "a JPEG image", b"\x89PNG": "a PNG image", b"GIF8": "a GIF image",
          b"RIFF": "a RIFF (WebP / WAV) file", b"%PDF": "a PDF document",
          b"\x1f\x8b": "a gzip archive", b"<": "a text / HTML file", b"{": "a JSON file"}


def _what_file(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head:
        return "an empty file"
    return next((name for magic, name in _MAGIC.items() if head.startswith(magic)),
                "not a PyTorch checkpoint")


def read_checkpoint(path: str | Path) -> dict:
    """``torch.load`` with ``weights_only=True`` on CPU (argparse.Namespace allow-listed,
    for rosinality ``train.py`` checkpoints).

    Anything else (an image, a truncated download, a pickle that would run code) is refused
    with a :class:`CheckpointReadError` in one sentence; torch's advice to retry with
    ``weights_only=False`` is never passed on, since following it would execute the file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointReadError(f"{path} is a folder, not a checkpoint file; pass the .pt "
                                  f"file inside it")
    if not path.is_file():
        raise BackboneNotAvailableError(f"checkpoint file not found: {path}")
    safe = getattr(torch.serialization, "safe_globals", None)  # torch ≥ 2.5
    try:
        with warnings.catch_warnings():
            # torch's unpickler warnings (pickle protocol, file-an-issue advice) are not
            # actionable for a user; a file that fails gets the one sentence below.
            warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.")
            if safe is None:
                obj = torch.load(path, map_location="cpu", weights_only=True)
            else:
                with safe([argparse.Namespace]):
                    obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        what = _what_file(path)
        if what == "not a PyTorch checkpoint" and "GLOBAL" in str(e).upper():
            raise CheckpointReadError(
                f"{path} is refused: it is a pickle holding Python objects other than tensors "
                f"(code could run when loading it), and backbone files are only ever loaded "
                f"as plain tensors; use the e4e or rosinality StyleGAN2 .pt file") from None
        kind = "" if what == "not a PyTorch checkpoint" else f": it is {what}"
        raise CheckpointReadError(f"{path} is not a PyTorch checkpoint{kind}; expected the e4e "
                                  f"or rosinality StyleGAN2 .pt file") from None
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile,
            KeyError, IndexError, TypeError, AttributeError) as e:  # text read as pickle ops
        what = _what_file(path)
        detail = "it looks truncated or damaged" if what == "not a PyTorch checkpoint" else what
        raise CheckpointReadError(f"{path} could not be read as a PyTorch checkpoint ({detail}: "
                                  f"{type(e).__name__}); download it again") from None
    if not isinstance(obj, dict):
        raise CheckpointLayoutError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def _quote(keys: list[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_LIST_LIMIT])
    more = f", … ({len(keys) - _LIST_LIMIT} more)" if len(keys) > _LIST_LIMIT else ""
    return shown + more


def check_layout(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str) -> None:
    """Raise :class:`CheckpointLayoutError` unless keys and shapes match exactly."""
    expected = module.state_dict(keep_vars=True)
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    mis_shaped = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
                  for k, v in expected.items()
                  if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    if not (missing or unexpected or mis_shaped):
        return
    parts = [f"{what}: the checkpoint does not match the architecture "
             f"({len(expected)} expected keys, {len(state_dict)} in the file)."]
    if missing:
        parts.append(f"Missing keys ({len(missing)}): {_quote(missing)}")
    if unexpected:
        parts.append(f"Unexpected keys ({len(unexpected)}): {_quote(unexpected)}")
    if mis_shaped:
        parts.append(f"Shape mismatches ({len(mis_shaped)}, file vs model): "
                     f"{_quote(mis_shaped)}")
    raise CheckpointLayoutError("\n".join(parts))


def strict_load(module: nn.Module, state_dict: Mapping[str, torch.Tensor], what: str = "model",
                assign: bool | None = None) -> nn.Module:
    """Strictly load ``state_dict`` (clear error first); meta modules get the tensors
    assigned (no copy), materialised ones are copied into."""
    check_layout(module, state_dict, what)
    bad = [k for k, t in state_dict.items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointLayoutError(f"{what}: {len(bad)} tensor(s) hold NaN or ∞ values "
                                    f"({_quote(bad)}); the checkpoint is damaged")
    if assign is None:
        assign = any(t.is_meta for t in module.state_dict(keep_vars=True).values())
    module.load_state_dict(state_dict, strict=True, assign=assign)
    return module


def split_prefixed(state_dict: Mapping[str, torch.Tensor],
                   prefixes: tuple[str, ...] = ("encoder", "decoder")
                   ) -> tuple[dict[str, dict[str, torch.Tensor]], list[str]]:
    """Split ``prefix.key`` entries into one dict per prefix (prefix and dot removed).

    Returns (parts, ignored keys). The reference strips ``len(prefix) + 1`` characters
    from keys starting with the prefix; requiring the dot avoids catching e.g.
    ``encoder_x.*``.
    """
    parts: dict[str, dict[str, torch.Tensor]] = {p: {} for p in prefixes}
    ignored = []
    for k, v in state_dict.items():
        for p in prefixes:
            if k.startswith(p + "."):
                parts[p][k[len(p) + 1:]] = v
                break
        else:
            ignored.append(k)
    return parts, ignored


def _indices(state_dict: Mapping[str, Any], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m.group(1)) for k in state_dict if (m := rx.match(k))})


def _count(state_dict: Mapping[str, Any], pattern: str) -> int:
    """Highest index + 1, so a hole shows up as missing keys rather than a smaller model."""
    idx = _indices(state_dict, pattern)
    return idx[-1] + 1 if idx else 0


def generator_config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> dict:
    """StyleGAN2Generator kwargs implied by a rosinality generator state dict."""
    try:
        n_rgbs = _count(sd, r"to_rgbs\.(\d+)\.")
        size = 2 ** (n_rgbs + 2)
        style_dim = sd["conv1.conv.modulation.weight"].shape[1]
        n_mlp = _count(sd, r"style\.(\d+)\.weight") - 1  # style.0 = PixelNorm
        observed = {4: sd["input.input"].shape[1]}
        for k in range(n_rgbs):
            observed[2 ** (k + 3)] = sd[f"to_rgbs.{k}.conv.weight"].shape[2]
    except KeyError as e:
        raise CheckpointLayoutError(f"not a rosinality StyleGAN2 generator state dict "
                                    f"(missing {e.args[0]!r})") from None
    channel_max = max(observed.values())
    product = observed[size] * size
    for mult in (2, 1, 4):
        if product % mult:
            continue
        cfg = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=mult,
                   channel_base=product // mult, channel_max=channel_max)
        if channel_table(size, mult, product // mult, channel_max) == observed:
            return cfg
    raise CheckpointLayoutError(f"unsupported generator channel table {observed}")


def encoder_config_from_state_dict(sd: Mapping[str, torch.Tensor]) -> dict:
    """E4EEncoder kwargs implied by an Encoder4Editing state dict (heads counted from keys,
    never from ``opts``)."""
    try:
        n_styles = _count(sd, r"styles\.(\d+)\.")
        n_body = _count(sd, r"body\.(\d+)\.")
        depths = [sd[f"body.{i}.res_layer.1.weight"].shape[0] for i in range(n_body)]
        base_width = sd["input_layer.0.weight"].shape[0]
        style_dim = sd["styles.0.linear.weight"].shape[0]
        n_coarse_convs = len(_indices(sd, r"styles\.0\.convs\.(\d+)\.weight"))
    except KeyError as e:
        raise CheckpointLayoutError(f"not an Encoder4Editing state dict "
                                    f"(missing {e.args[0]!r})") from None
    units = [len(list(g)) for g in _runs(depths)]
    num_layers = next((n for n, u in IR_SE_UNITS.items() if list(u) == units), 50)
    return dict(n_styles=n_styles, num_layers=num_layers,
                units=None if tuple(units) == IR_SE_UNITS[num_layers] else units,
                base_width=base_width, style_dim=style_dim,
                input_size=16 * 2 ** n_coarse_convs)


def _runs(values: list[int]):
    out: list[list[int]] = []
    for v in values:
        if out and out[-1][0] == v:
            out[-1].append(v)
        else:
            out.append([v])
    return out


def _add_missing_kernels(sd: dict[str, torch.Tensor], gen: StyleGAN2Generator) -> list[str]:
    """Fill in the constant blur/upsample kernels some conversions drop (returns keys)."""
    added = []
    for k in gen.state_dict(keep_vars=True):
        if (k.endswith(".blur.kernel") or k.endswith(".upsample.kernel")) and k not in sd:
            sd[k] = blur_kernel_2d(factor=2)
            added.append(k)
    if added:
        logger.warning("checkpoint lacks %d constant kernel buffers (%s); filled in the "
                       "standard [1,3,3,1] kernels", len(added), _quote(added))
    return added


def build_generator(sd: Mapping[str, torch.Tensor], *, allow_missing_noise: bool = False,
                    what: str = "generator") -> StyleGAN2Generator:
    """A StyleGAN2Generator built from, and strictly loaded with, a generator state dict."""
    sd = dict(sd)
    cfg = generator_config_from_state_dict(sd)
    with torch.device("meta"):
        gen = StyleGAN2Generator(**cfg)
    _add_missing_kernels(sd, gen)
    missing_noise = [k for k in gen.state_dict(keep_vars=True)
                     if k.startswith("noises.") and k not in sd]
    if missing_noise:
        if not allow_missing_noise:
            raise CheckpointLayoutError(
                f"{what}: the checkpoint has no stored noise buffers ({len(missing_noise)} "
                f"missing: {_quote(missing_noise)}); it predates them. Images would not be "
                f"reproducible. Pass allow_missing_noise=True to draw them from a fixed "
                f"seed instead.")
        logger.warning("%s: %d noise buffers missing; drawn from a fixed seed",
                       what, len(missing_noise))
        g = torch.Generator().manual_seed(0)
        for k in missing_noise:
            shape = gen.state_dict(keep_vars=True)[k].shape
            sd[k] = torch.randn(shape, generator=g)
    return strict_load(gen, sd, what=what)


def build_encoder(sd: Mapping[str, torch.Tensor], *, what: str = "encoder") -> E4EEncoder:
    """An E4EEncoder built from, and strictly loaded with, an Encoder4Editing state dict."""
    cfg = encoder_config_from_state_dict(sd)
    with torch.device("meta"):
        enc = E4EEncoder(**cfg)
    return strict_load(enc, dict(sd), what=what)
