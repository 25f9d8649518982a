"""What each result shows beside its image: identity similarity to the input and whether the
face is still detected, both read off the pipeline's result (no second detection of the
input, no second paste)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import torch
from PIL import Image

from ..image.faces import still_detected
from ..pipeline.results import FaceResult
from ..scorers import IdentityEncoder

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["Output", "measure"]


@dataclass
class Output:
    """One image shown to the visitor, with what was measured on it."""

    image: Image.Image
    caption: str
    identity_similarity: float | None = None   # mean cosine similarity to the input faces
    faces_detected: int = 0                    # processed faces still found by the detector
    faces_total: int = 0

    def measured(self) -> str:
        parts = []
        if self.identity_similarity is not None:
            parts.append(f"identity similarity {self.identity_similarity:.2f}")
        parts.append(f"face detected {self.faces_detected}/{self.faces_total}")
        return ", ".join(parts)


@torch.inference_mode()
def measure(runtime: "Runtime", faces: Sequence[FaceResult], image: Image.Image,
            crops: Sequence[Image.Image], caption: str) -> Output:
    """``image``: a composed photo; ``crops``: each face's crop in it (aligned frame)."""
    detector = runtime.pipeline.detector
    detected = sum(still_detected(detector, image, f.detection.box) for f in faces
                   if f.detection is not None)
    similarity = None
    if runtime.identity is not None and faces:
        a = runtime.identity.embed([f.aligned for f in faces])
        b = runtime.identity.embed(list(crops))
        similarity = float((1.0 - IdentityEncoder.cosine_distance(a, b)).mean())
    return Output(image, caption, similarity, int(detected), len(faces))
