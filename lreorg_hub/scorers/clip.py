"""CLIP (open_clip) for keywords: text embeddings of keyword words (the CDFNet condition
k^f, SPEC §2) and the zero-shot distribution D(I, t_j) over a keyword's sub-category prompts
(KAA fitting, the L_s loss and APR, SPEC §4–6)."""

from __future__ import annotations

import os
from typing import Iterable, Sequence, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..method.keywords import Keyword, get as get_keyword
from .weights import ImagesLike, WeightsUnavailableError, _as_batch, _freeze, _hub_offline

from .defaults import DEFAULT_APR_CLIP, DEFAULT_CLIP_MODEL, DEFAULT_CLIP_PRETRAINED

__all__ = ["KeywordEncoder", "DEFAULT_CLIP_MODEL", "DEFAULT_CLIP_PRETRAINED",
           "DEFAULT_APR_CLIP"]

KeywordLike = Union[str, Keyword]


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
