"""What each result shows beside its image: identity similarity to the input and whether the
face is still detected."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
from PIL import Image

from ..image.faces import Face, FaceDetector, align_face
from ..image.io import as_rgb_array
from ..scorers import IdentityEncoder

if TYPE_CHECKING:
    from ..pipeline import LReOrgPipeline
    from .runtime import Runtime

__all__ = ["Output", "CachingFaceDetector", "measure"]

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


def _relocate(pipe: LReOrgPipeline, photo: Image.Image, indices: Sequence[int]) -> list[Face]:
    """The processed faces again (detection is deterministic), to compose every output."""
    found = pipe.detector.locate(photo)
    faces = []
    for i in indices:
        box, points, score = found[i]
        crop, transform = align_face(photo, points, pipe.detector.output_size)
        faces.append(Face(box=box, landmarks=points, score=score, transform=transform,
                          aligned=crop))
    return faces


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


class CachingFaceDetector(FaceDetector):
    """MTCNN that remembers its last few answers by pixel content: detection is
    deterministic, and composing every output needs the faces the pipeline already found."""

    def __init__(self, *args, cache_size: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self._cache: OrderedDict[bytes, list] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def locate(self, image):
        rgb = np.ascontiguousarray(as_rgb_array(image))
        key = hashlib.sha256(rgb.tobytes()).digest() + bytes(str(rgb.shape), "ascii")
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return list(self._cache[key])
        found = super().locate(rgb)
        with self._lock:
            self._cache[key] = list(found)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found


def _still_detected(pipe: LReOrgPipeline, image: Image.Image, face: Face) -> bool:
    """Whether the detector still finds this face, looking only around its box (a crop of at
    most 256 px: far cheaper than the whole photo, and it asks about this face only)."""
    x0, y0, x1, y1 = (float(v) for v in face.box)
    grow = 0.5 * max(x1 - x0, y1 - y0)
    left, top = max(int(x0 - grow), 0), max(int(y0 - grow), 0)
    right, bottom = min(int(x1 + grow) + 1, image.width), min(int(y1 + grow) + 1, image.height)
    crop = image.crop((left, top, right, bottom))
    scale = min(1.0, 256 / max(crop.size))
    if scale < 1.0:
        crop = crop.resize((max(round(crop.width * scale), 1), max(round(crop.height * scale), 1)),
                           Image.BILINEAR)
    target = [(x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale]
    detector = pipe.detector
    found = FaceDetector.locate(detector, crop)  # uncached: every output is new
    return any(_iou(target, box) >= 0.3 for box, _, _ in found)


@torch.inference_mode()
def _measure(runtime: Runtime, faces: list[Face], image: Image.Image, caption: str) -> Output:
    pipe = runtime.pipeline
    detected = sum(_still_detected(pipe, image, f) for f in faces)
    similarity = None
    if runtime.identity is not None and faces:
        size = pipe.detector.output_size
        crops = [align_face(image, f.landmarks, size)[0] for f in faces]
        a = runtime.identity.embed([f.aligned for f in faces])
        b = runtime.identity.embed(crops)
        similarity = float((1.0 - IdentityEncoder.cosine_distance(a, b)).mean())
    return Output(image, caption, similarity, int(detected), len(faces))
