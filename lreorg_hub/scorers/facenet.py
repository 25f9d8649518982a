"""facenet-pytorch's InceptionResnetV1 (VGGFace2 / CASIA-WebFace): identity embeddings and
cosine distance (L_I, PSR) and intermediate feature maps (the perceptual loss L_p)."""

from __future__ import annotations

import os
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .weights import ImagesLike, WeightsUnavailableError, _as_batch, _freeze, _hub_offline, _torch_home

from .defaults import FACENET_WEIGHTS, FFHQ_FACE_CROP

__all__ = ["IdentityEncoder", "FACENET_WEIGHTS", "FFHQ_FACE_CROP"]


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
