"""Pretrained encoders used as conditions, scorers and losses.

- :class:`KeywordEncoder`: open_clip CLIP. Text embeddings of keyword words (the CDFNet
  condition k^f, SPEC §2) and the zero-shot distribution D(I, t_j) over a keyword's
  sub-category prompts (KAA fitting, the L_s loss and APR, SPEC §4–6).
- :class:`IdentityEncoder`: facenet-pytorch InceptionResnetV1 (VGGFace2). Identity embeddings
  and cosine distance (L_I, PSR) and intermediate feature maps (the perceptual loss L_p).

Both take images as float tensors (N, 3, H, W) in [-1, 1] of any size and do their own resizing
and normalisation with differentiable torch ops, so they can sit inside a training loss.
Their weights are frozen (requires_grad False) and they stay in eval mode; gradients still flow
to the input images.

Weights: ``pretrained`` is a known name (open_clip tag / ``"vggface2"``), a local file path, or
``None`` for random weights (tests, timing). Nothing is downloaded when the Hub is in offline
mode (``HF_HUB_OFFLINE=1``); a missing file raises :class:`WeightsUnavailableError` that says
what was wanted and how to supply a local file.
"""

from __future__ import annotations

import os
from typing import Iterable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from .imaging import pil_to_tensor
from .keywords import Keyword, get as get_keyword

__all__ = [
    "WeightsUnavailableError",
    "KeywordEncoder",
    "IdentityEncoder",
    "DEFAULT_CLIP_MODEL",
    "DEFAULT_CLIP_PRETRAINED",
    "FACENET_WEIGHTS",
    "FFHQ_FACE_CROP",
]

#: open_clip has no "default" tag; this is the LAION-2B ViT-B-32 checkpoint its README leads with.
DEFAULT_CLIP_MODEL = "ViT-B-32"
DEFAULT_CLIP_PRETRAINED = "laion2b_s34b_b79k"

#: facenet-pytorch's published weights (the same URLs its own loader uses).
FACENET_WEIGHTS = {
    "vggface2": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt",
    "casia-webface": "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180408-102900-casia-webface.pt",
}

#: The inner face box (left, top, right, bottom, fractions of the side) of an FFHQ-aligned crop,
#: the region pSp's identity loss crops (pixels 32:220 × 35:223 of 256) before a face recognizer.
FFHQ_FACE_CROP = (32 / 256, 35 / 256, 220 / 256, 223 / 256)

KeywordLike = Union[str, Keyword]
ImagesLike = Union[torch.Tensor, Image.Image, Sequence[Image.Image]]


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights are needed but cannot be found locally or downloaded."""


def _hub_offline() -> bool:
    """The Hub's offline switch (HF_HUB_OFFLINE), read at call time so tests can patch it."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        return False
    return bool(constants.HF_HUB_OFFLINE)


def _torch_home() -> str:
    """$TORCH_HOME, resolved the way facenet-pytorch resolves it (so its cache is shared)."""
    default = os.path.join(os.getenv("XDG_CACHE_HOME", "~/.cache"), "torch")
    return os.path.expanduser(os.getenv("TORCH_HOME", default))


def _as_batch(images: ImagesLike) -> list[torch.Tensor] | torch.Tensor:
    """A tensor (3, H, W) / (N, 3, H, W), or PIL image(s) → a 4-D tensor or a list of 3-D ones."""
    if isinstance(images, Image.Image):
        return pil_to_tensor(images)[None]
    if isinstance(images, torch.Tensor):
        if images.dim() == 3:
            images = images[None]
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        return images
    return [pil_to_tensor(im) for im in images]  # PIL images may differ in size


def _freeze(module: nn.Module) -> None:
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# CLIP


class KeywordEncoder(nn.Module):
    """CLIP text/image encoder for keywords (open_clip).

    Args:
        model_name: open_clip architecture name (``ViT-B-32``), or an ``hf-hub:`` /
            ``local-dir:`` identifier (then ``pretrained`` is ignored, as in open_clip).
        pretrained: an open_clip tag for ``model_name`` (see ``open_clip.list_pretrained()``),
            a path to a local checkpoint (e.g. ``open_clip_pytorch_model.bin``), or ``None``
            for random weights.
        model_cfg: optional architecture override, passed to ``open_clip.create_model`` as
            keyword arguments (``embed_dim``, ``vision_cfg``, ``text_cfg``, …), which replace
            the built-in config of ``model_name``: this is how a tiny CLIP is built for tests.
        device: torch device.
        cache_dir: open_clip / Hub cache directory.

    Preprocessing is read from the model (``visual.preprocess_cfg``): ``image_size``,
    ``mean``, ``std``, interpolation and resize mode are kept as attributes.
    """

    def __init__(
        self,
        model_name: str = DEFAULT_CLIP_MODEL,
        pretrained: str | os.PathLike | None = DEFAULT_CLIP_PRETRAINED,
        model_cfg: dict | None = None,
        device: str | torch.device = "cpu",
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        import open_clip  # heavy import, only when an encoder is built
        from open_clip.pretrained import get_pretrained_cfg, list_pretrained_tags_by_model

        self.model_name = model_name
        self.pretrained = None if pretrained is None else os.fspath(pretrained)
        has_schema = model_name.startswith(("hf-hub:", "local-dir:"))
        is_tag = False
        if self.pretrained is not None and not has_schema and not os.path.isfile(self.pretrained):
            is_tag = bool(get_pretrained_cfg(model_name, self.pretrained))
            if not is_tag:
                tags = ", ".join(list_pretrained_tags_by_model(model_name)) or "none"
                raise WeightsUnavailableError(
                    f"pretrained={self.pretrained!r} is neither an existing file nor a known "
                    f"open_clip tag for {model_name!r} (known tags: {tags})"
                )
        try:
            model = open_clip.create_model(
                model_name, pretrained=self.pretrained, device=device, cache_dir=cache_dir,
                **(model_cfg or {}),
            )
        except RuntimeError as exc:
            if not (is_tag or has_schema):
                raise
            where = model_name if has_schema else f"{model_name!r} with tag {self.pretrained!r}"
            offline = " (HF_HUB_OFFLINE is set)" if _hub_offline() else ""
            raise WeightsUnavailableError(
                f"could not load open_clip weights for {where}: they are not in the local cache "
                f"and could not be downloaded; this machine looks offline{offline}. Download the "
                f"checkpoint on a connected machine and pass its path, e.g. "
                f"KeywordEncoder({model_name!r}, pretrained='/path/to/open_clip_pytorch_model.bin'), "
                f"or pass pretrained=None for random weights. Original error: {exc}"
            ) from exc
        _freeze(model)
        self.model = model
        tok_kwargs = {} if has_schema else {"context_length": model.context_length}
        self.tokenizer = open_clip.get_tokenizer(model_name, **tok_kwargs)

        cfg = getattr(model.visual, "preprocess_cfg", {})
        size = cfg.get("size", model.visual.image_size)
        self.image_size: tuple[int, int] = (size, size) if isinstance(size, int) else tuple(size)
        self.interpolation: str = "bilinear" if cfg.get("interpolation") == "bilinear" else "bicubic"
        self.resize_mode: str = cfg.get("resize_mode", "shortest")
        self.fill_value: float = float(cfg.get("fill_color", 0)) / 255.0
        mean = torch.tensor(cfg.get("mean", model.visual.image_mean), dtype=torch.float32)
        std = torch.tensor(cfg.get("std", model.visual.image_std), dtype=torch.float32)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", std.view(1, 3, 1, 1), persistent=False)
        self._prompt_cache: dict[tuple[str, ...], torch.Tensor] = {}
        self.to(device)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def preprocess_config(self) -> dict:
        """The image preprocessing, as plain values (for a bundle's config.json)."""
        return {"image_size": list(self.image_size), "mean": self.mean.flatten().tolist(),
                "std": self.std.flatten().tolist(), "interpolation": self.interpolation,
                "resize_mode": self.resize_mode, "value_range": [-1.0, 1.0]}

    @property
    def embed_dim(self) -> int:
        """Length of the text/image embeddings."""
        return int(self.model.visual.output_dim)

    def train(self, mode: bool = True) -> "KeywordEncoder":
        """Always eval: the encoder is a fixed scorer (dropout/BN must not change with mode)."""
        return super().train(False)

    # -- text ----------------------------------------------------------------------------------

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text embeddings, (len(texts), embed_dim)."""
        if isinstance(texts, str):
            texts = [texts]
        tokens = self.tokenizer(list(texts)).to(self.device)
        return self.model.encode_text(tokens, normalize=True)

    def keyword_embeddings(self, keywords: Iterable[KeywordLike]) -> torch.Tensor:
        """Condition vectors k^f: the embedding of each keyword's ``condition_text``.

        Names are looked up in the registry (``keywords.get``); a :class:`Keyword` object is
        used as given, so free-text keywords work too.
        """
        kws = [k if isinstance(k, Keyword) else get_keyword(k) for k in keywords]
        return self.encode_text([k.condition_text for k in kws])

    def prompt_embeddings(self, keyword: KeywordLike) -> torch.Tensor:
        """Embeddings of the keyword's sub-category prompts t_j, (C, embed_dim), cached.

        The text side is a constant of the zero-shot scorer, so it is computed without
        gradient and cached per prompt tuple (call ``clear_cache`` after changing weights).
        """
        kw = keyword if isinstance(keyword, Keyword) else get_keyword(keyword)
        prompts = kw.prompts
        if not prompts:
            raise ValueError(f"keyword {kw.name!r} has no sub-categories, so no zero-shot prompts")
        cached = self._prompt_cache.get(prompts)
        if cached is None or cached.device != self.device:
            with torch.no_grad():
                cached = self.encode_text(list(prompts))
            self._prompt_cache[prompts] = cached
        return cached

    def clear_cache(self) -> None:
        """Forget cached prompt embeddings."""
        self._prompt_cache.clear()

    # -- images --------------------------------------------------------------------------------

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images (N, 3, H, W) of any size → the model's normalised input, differentiably.

        Follows open_clip's eval transform: resize (``shortest``: shorter side to the input size
        then centre crop; ``squash``: straight to the input size; ``longest``: longer side, then
        pad with the fill colour), antialiased, then (x − mean) / std.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (N, 3, H, W), got {tuple(images.shape)}")
        x = (images.to(self.device, torch.float32) + 1.0) / 2.0
        th, tw = self.image_size
        h, w = x.shape[-2:]
        if self.resize_mode == "squash":
            size = (th, tw)
        else:
            scale = max(th / h, tw / w) if self.resize_mode == "shortest" else min(th / h, tw / w)
            size = (max(round(h * scale), 1), max(round(w * scale), 1))
        if size != (h, w):
            x = F.interpolate(x, size=size, mode=self.interpolation, align_corners=False, antialias=True)
        h, w = x.shape[-2:]
        if (h, w) != (th, tw):
            if self.resize_mode == "longest":  # pad to the target, centred
                top, left = (th - h) // 2, (tw - w) // 2
                x = F.pad(x, (left, tw - w - left, top, th - h - top), value=self.fill_value)
            else:  # centre crop
                top, left = (h - th) // 2, (w - tw) // 2
                x = x[..., top:top + th, left:left + tw]
        return (x - self.mean) / self.std

    def encode_image(self, images: ImagesLike) -> torch.Tensor:
        """L2-normalised image embeddings, (N, embed_dim); differentiable w.r.t. tensor inputs."""
        batch = _as_batch(images)
        if isinstance(batch, list):
            x = torch.cat([self.preprocess(b[None]) for b in batch])
        else:
            x = self.preprocess(batch)
        return self.model.encode_image(x, normalize=True)

    def zero_shot(self, images: ImagesLike, keyword: KeywordLike) -> torch.Tensor:
        """D(I, t_j): softmax over the keyword's sub-category prompts, (N, C).

        Column j follows ``keyword.subcategories[j]``; logits are CLIP's
        ``logit_scale.exp() · <image, text>`` as in CLIP zero-shot classification.
        """
        text = self.prompt_embeddings(keyword)
        image = self.encode_image(images)
        logits = self.model.logit_scale.exp() * image @ text.T
        return logits.softmax(dim=-1)

    def forward(self, images: ImagesLike, keyword: KeywordLike) -> torch.Tensor:
        """Same as :meth:`zero_shot`."""
        return self.zero_shot(images, keyword)


# ---------------------------------------------------------------------------------------------
# facenet


class IdentityEncoder(nn.Module):
    """Face identity embeddings from facenet-pytorch's InceptionResnetV1.

    Args:
        pretrained: ``"vggface2"`` (default) or ``"casia-webface"`` (facenet-pytorch's published
            weights, looked up in ``$TORCH_HOME/checkpoints`` like facenet-pytorch does), a path
            to a state-dict file, or ``None`` for random weights. The classifier head
            (``logits.*``) in the published files is not needed and is dropped; everything
            else must load strictly.
        allow_download: fetch a missing published file (never in Hub offline mode).
        image_size: the network's input side (160, what the VGGFace2 model was trained at).
        crop: optional (left, top, right, bottom) fractions of the input to keep before
            resizing, e.g. :data:`FFHQ_FACE_CROP` for FFHQ-aligned crops (the recognizer was
            trained on tight MTCNN boxes, not on the wider FFHQ framing); ``None`` keeps all.
        feature_layers: names of the InceptionResnetV1 stages whose outputs :meth:`features`
            returns.
        device: torch device.
    """

    #: The network's stages in forward order (InceptionResnetV1.forward).
    STAGES = ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a",
              "conv2d_4b", "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8")

    def __init__(
        self,
        pretrained: str | os.PathLike | None = "vggface2",
        allow_download: bool = True,
        image_size: int = 160,
        crop: tuple[float, float, float, float] | None = None,
        feature_layers: Sequence[str] = ("conv2d_2b", "conv2d_4b", "repeat_1", "repeat_2", "block8"),
        device: str | torch.device = "cpu",
    ) -> None:
        super().__init__()
        from facenet_pytorch import InceptionResnetV1

        unknown = [n for n in feature_layers if n not in self.STAGES]
        if unknown:
            raise ValueError(f"unknown feature layer(s) {unknown}; choose from {list(self.STAGES)}")
        if crop is not None:
            left, top, right, bottom = crop
            if not (0 <= left < right <= 1 and 0 <= top < bottom <= 1):
                raise ValueError(f"crop must be fractions 0 <= left < right <= 1 (same for top/bottom), got {crop}")
        self.pretrained = None if pretrained is None else os.fspath(pretrained)
        self.image_size = int(image_size)
        self.crop = None if crop is None else tuple(float(c) for c in crop)
        self.feature_layers = tuple(feature_layers)
        # Built without weights: facenet-pytorch would download inside its constructor.
        self.net = InceptionResnetV1(pretrained=None, classify=False)
        if self.pretrained is not None:
            self._load(self._resolve(self.pretrained, allow_download))
        _freeze(self.net)
        self.to(device)

    @staticmethod
    def _resolve(pretrained: str, allow_download: bool) -> str:
        """Local file for a published name (downloading it if allowed), or the given path."""
        if pretrained not in FACENET_WEIGHTS:
            if os.path.isfile(pretrained):
                return pretrained
            raise WeightsUnavailableError(
                f"identity weights {pretrained!r}: no such file, and not one of the published "
                f"names {sorted(FACENET_WEIGHTS)}"
            )
        url = FACENET_WEIGHTS[pretrained]
        cached = os.path.join(_torch_home(), "checkpoints", url.rsplit("/", 1)[1])
        if os.path.isfile(cached):
            return cached
        hint = (f"Download {url} on a connected machine and pass its path: "
                f"IdentityEncoder(pretrained='/path/to/{os.path.basename(cached)}'), or place it at "
                f"{cached}; pretrained=None gives random weights.")
        if not allow_download or _hub_offline():
            why = "downloads are disabled" if not allow_download else "offline mode (HF_HUB_OFFLINE) is set"
            raise WeightsUnavailableError(f"facenet {pretrained!r} weights are not cached and {why}. {hint}")
        try:
            os.makedirs(os.path.dirname(cached), exist_ok=True)
            torch.hub.download_url_to_file(url, cached, progress=False)
        except Exception as exc:  # network errors come in many types (URLError, OSError, …)
            raise WeightsUnavailableError(
                f"could not download facenet {pretrained!r} weights from {url}; this machine "
                f"looks offline ({exc}). {hint}"
            ) from exc
        return cached

    def _load(self, path: str) -> None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise WeightsUnavailableError(f"cannot read identity weights {path!r}: {exc}") from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        self.net.load_state_dict(state, strict=True)

    @property
    def device(self) -> torch.device:
        return self.net.last_linear.weight.device

    def train(self, mode: bool = True) -> "IdentityEncoder":
        """Always eval: BatchNorm must use its running statistics."""
        return super().train(False)

    def preprocess(self, images: ImagesLike) -> torch.Tensor:
        """[-1, 1] images of any size → the network's input (N, 3, S, S), differentiably.

        Optional crop, then antialiased bilinear resize to S×S (non-square inputs are squashed),
        then facenet's fixed standardisation (pixel − 127.5) / 128, which for x ∈ [-1, 1] is
        x · 127.5 / 128.
        """
        batch = _as_batch(images)
        if isinstance(batch, list):
            return torch.cat([self.preprocess(b[None]) for b in batch])
        x = batch.to(self.device, torch.float32)
        if self.crop is not None:
            h, w = x.shape[-2:]
            left, top, right, bottom = self.crop
            x = x[..., round(top * h):max(round(bottom * h), round(top * h) + 1),
                  round(left * w):max(round(right * w), round(left * w) + 1)]
        if tuple(x.shape[-2:]) != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=True)
        return x * (127.5 / 128.0)

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The network stage by stage: (embedding, requested feature maps)."""
        feats = []
        for name in self.STAGES:
            x = getattr(self.net, name)(x)
            if name in self.feature_layers:
                feats.append(x)
        x = self.net.avgpool_1a(x).flatten(1)
        x = self.net.last_bn(self.net.last_linear(x))  # dropout is a no-op in eval mode
        return F.normalize(x, p=2, dim=1), feats

    def embed(self, images: ImagesLike) -> torch.Tensor:
        """L2-normalised 512-d identity embeddings, (N, 512)."""
        return self._run(self.preprocess(images))[0]

    def features(self, images: ImagesLike) -> list[torch.Tensor]:
        """Intermediate feature maps (one per ``feature_layers`` entry) for a perceptual loss."""
        return self._run(self.preprocess(images))[1]

    def embed_and_features(self, images: ImagesLike) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Both in one pass (the swap-training loss needs both)."""
        return self._run(self.preprocess(images))

    def forward(self, images: ImagesLike) -> torch.Tensor:
        """Same as :meth:`embed`."""
        return self.embed(images)

    @staticmethod
    def cosine_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """1 − cos(a, b) per row (inputs are normalised first), shape (N,)."""
        return 1.0 - (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1)
