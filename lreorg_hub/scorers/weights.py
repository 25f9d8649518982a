"""What both scorers share: the missing-weights error, the Hub's offline switch, torch's
cache folder, and turning images into batches."""

from __future__ import annotations

import os
from typing import Sequence, Union

import torch
import torch.nn as nn
from PIL import Image

from ..image.io import pil_to_tensor

__all__ = ["WeightsUnavailableError", "ImagesLike"]

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
