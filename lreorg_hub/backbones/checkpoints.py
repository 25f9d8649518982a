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
import os
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .e4e import IR_SE_UNITS, E4EEncoder, _broadcast_latent_avg
from .stylegan2 import StyleGAN2Generator, blur_kernel_2d, channel_table

__all__ = [
    "Backbone", "BackboneSource", "BackboneNotAvailableError", "CheckpointLayoutError",
    "CheckpointReadError",
    "load_backbone", "load_e4e_checkpoint", "load_rosinality_checkpoint",
    "download_backbone", "read_checkpoint", "strict_load", "split_prefixed",
    "generator_config_from_state_dict", "encoder_config_from_state_dict",
    "build_generator", "build_encoder",
    "ENV_REPO", "ENV_FILE", "ENV_REVISION", "ENV_PATH",
]

logger = logging.getLogger(__name__)

ENV_REPO = "LREORG_BACKBONE_REPO"
ENV_FILE = "LREORG_BACKBONE_FILE"
ENV_REVISION = "LREORG_BACKBONE_REVISION"
ENV_PATH = "LREORG_BACKBONE_PATH"  # a local checkpoint file; skips the Hub entirely

_LIST_LIMIT = 5  # keys quoted per category in error messages


class CheckpointLayoutError(RuntimeError):
    """A checkpoint's keys or shapes do not match the architecture."""


class CheckpointReadError(ValueError):
    """A backbone file that is not a safely loadable PyTorch checkpoint (one sentence)."""


class BackboneNotAvailableError(FileNotFoundError):
    """The backbone checkpoint could not be found locally nor downloaded."""


# --------------------------------------------------------------------------------------
# Where the weights come from
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackboneSource:
    """Hub location of the backbone checkpoint (configuration, never hard-wired).

    ``format`` is "e4e" (encoder + decoder) or "rosinality" (generator only); ``size`` is
    the expected generator resolution (a mismatch with the file is logged; the file wins).
    :func:`download_backbone` applies the ``LREORG_BACKBONE_*`` environment overrides.
    """

    repo_id: str = "AIRI-Institute/HairFastGAN"
    filename: str = "pretrained_models/encoder4editing/e4e_ffhq_encode.pt"
    revision: str = "main"
    format: str = "e4e"
    size: int | None = 1024

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "BackboneSource":
        """Build from a plain dict (e.g. a bundle's config), ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (d or {}).items() if k in names})

    def with_env(self, environ: Mapping[str, str] | None = None) -> "BackboneSource":
        """Override fields from ``LREORG_BACKBONE_REPO`` / ``_FILE`` / ``_REVISION``."""
        env = os.environ if environ is None else environ
        changes = {name: env[var] for name, var in (("repo_id", ENV_REPO),
                                                    ("filename", ENV_FILE),
                                                    ("revision", ENV_REVISION))
                   if env.get(var)}
        return replace(self, **changes) if changes else self

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **defaults) -> "BackboneSource":
        """Defaults (or ``defaults``), overridden by the environment variables."""
        return cls(**defaults).with_env(environ)

    def describe(self) -> str:
        return f"{self.repo_id}/{self.filename}@{self.revision}"


def download_backbone(source: BackboneSource | None = None, *, cache_dir: str | Path | None = None,
                      local_files_only: bool = False, token: str | bool | None = None) -> Path:
    """Fetch the checkpoint with ``huggingface_hub.hf_hub_download`` (cached) → local path.

    Raises :class:`BackboneNotAvailableError` with instructions when the file is not in
    the cache and the Hub cannot be reached (offline mode, no network, ``local_files_only``),
    and when the repo, revision or file does not exist.
    """
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, OfflineModeIsEnabled,
                                        RepositoryNotFoundError, RevisionNotFoundError)

    from ..reachability import hub_reachable

    src = (source or BackboneSource()).with_env()
    if not local_files_only and not hub_reachable():
        # One short probe instead of huggingface_hub's ~23 s of retries: use the cache.
        local_files_only = True
    try:
        path = hf_hub_download(src.repo_id, src.filename, revision=src.revision,
                               cache_dir=cache_dir, local_files_only=local_files_only,
                               token=token)
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as e:
        raise BackboneNotAvailableError(_offline_message(src, e)) from e
    except (RepositoryNotFoundError, GatedRepoError, RevisionNotFoundError) as e:
        raise BackboneNotAvailableError(
            f"The backbone repo/revision {src.repo_id}@{src.revision} is not available on "
            f"the Hub ({type(e).__name__}). Check {ENV_REPO} / {ENV_REVISION}, log in if "
            f"the repo is gated, or load a local file ({ENV_PATH}=/path/to/file.pt)."
        ) from e
    except EntryNotFoundError as e:
        raise BackboneNotAvailableError(
            f"{src.filename!r} does not exist in {src.repo_id}@{src.revision}. Check "
            f"{ENV_FILE}, or load a local file ({ENV_PATH}=/path/to/file.pt).") from e
    except HfHubHTTPError as e:
        raise BackboneNotAvailableError(_offline_message(src, e)) from e
    return Path(path)


def _offline_message(src: BackboneSource, err: Exception) -> str:
    return (
        f"Could not obtain the backbone checkpoint {src.describe()}: it is not in the local "
        f"Hugging Face cache and the Hub could not be reached ({type(err).__name__}; "
        f"offline mode, HF_HUB_OFFLINE=1, local_files_only, or no network).\n"
        f"To fix, either:\n"
        f"  - on a machine with internet access run\n"
        f"      hf download {src.repo_id} {src.filename} --revision {src.revision}\n"
        f"    and copy the Hugging Face cache (HF_HOME) here, or\n"
        f"  - download the file by any means and point at it: set {ENV_PATH}=/path/to/"
        f"{Path(src.filename).name} or call load_backbone('/path/to/file.pt'), or\n"
        f"  - use another copy on the Hub via {ENV_REPO}, {ENV_FILE} and {ENV_REVISION}."
    )


# --------------------------------------------------------------------------------------
# Reading files and checking layouts
# --------------------------------------------------------------------------------------
# First bytes of files people point at by mistake, for a message that says what it is.
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


# --------------------------------------------------------------------------------------
# Architectures from state dicts
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# The loaded backbone
# --------------------------------------------------------------------------------------
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
