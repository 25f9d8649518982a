"""Face detection: MTCNN (facenet-pytorch, weights shipped with the package)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..io import as_rgb_array
from .align import align_face
from .geometry import AlignTransform

__all__ = ["Face", "FaceDetector"]

@dataclass(eq=False)
class Face:
    """One detected face.

    Attributes:
        box: (4,) float64 x0, y0, x1, y1 of MTCNN's box, in photo pixels.
        landmarks: (5, 2) float64 MTCNN points (eye with smaller x, eye with larger x, nose,
            mouth corner with smaller x, mouth corner with larger x).
        score: MTCNN's face probability.
        transform: the alignment transform (aligned crop ↔ photo).
        aligned: the aligned S×S RGB crop.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float
    transform: AlignTransform
    aligned: Image.Image = field(repr=False)

    @property
    def size(self) -> float:
        """The shorter side of the detection box, in photo pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    @property
    def aligned_landmarks(self) -> np.ndarray:
        """The landmarks in the aligned crop's pixel coordinates."""
        return self.transform.to_aligned(self.landmarks)


class FaceDetector:
    """MTCNN (facenet-pytorch, weights shipped with the package) plus FFHQ alignment.

    Args:
        min_face_size: smallest face searched for, in photo pixels; detections whose box has a
            shorter side below it are dropped too.
        thresholds: MTCNN's P/R/O-net thresholds.
        factor: scale step of MTCNN's image pyramid.
        min_score: drop detections with a lower face probability (0 keeps all MTCNN returns).
        device: torch device for the three networks.
        output_size, transform_size, pad: alignment settings, see :func:`align_face`.

    :meth:`detect` returns faces sorted left to right by box (x0, then y0): stable for a given
    photo and the order a reader scans a group photo in.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: Sequence[float] = (0.6, 0.7, 0.7),
        factor: float = 0.709,
        min_score: float = 0.0,
        device: str | torch.device = "cpu",
        output_size: int = 256,
        transform_size: int | None = None,
        pad: bool = True,
    ) -> None:
        from facenet_pytorch import MTCNN  # heavy import, only when a detector is built

        if min_face_size < 1:
            raise ValueError(f"min_face_size must be >= 1, got {min_face_size}")
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.factor = float(factor)
        self.min_score = float(min_score)
        self.device = torch.device(device)
        self.output_size = int(output_size)
        self.transform_size = transform_size
        self.pad = bool(pad)
        # facenet-pytorch's layers draw their (immediately overwritten) initial weights from
        # torch's global RNG; fork_rng puts the caller's RNG state back afterwards.
        with torch.random.fork_rng(devices=[]):
            self.mtcnn = MTCNN(min_face_size=self.min_face_size,
                               thresholds=list(self.thresholds), factor=self.factor,
                               keep_all=True, select_largest=False, device=self.device).eval()

    def locate(self, image: Image.Image | np.ndarray) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Raw detections (box, landmarks, score), filtered and sorted, without alignment."""
        rgb = as_rgb_array(image)
        if min(rgb.shape[:2]) < self.min_face_size:
            return []  # no face of the minimum size fits (and MTCNN's pyramid would be empty)
        boxes, probs, points = self.mtcnn.detect(np.ascontiguousarray(rgb, dtype=np.uint8), landmarks=True)
        if boxes is None:  # MTCNN's "no face"
            return []
        found = []
        for box, prob, pts in zip(boxes, probs, points):
            # numpy 2: facenet-pytorch hands back object-dtype arrays; cast before arithmetic.
            box = np.asarray(box, dtype=np.float64).reshape(4)
            pts = np.asarray(pts, dtype=np.float64).reshape(5, 2)
            score = float(prob)
            if score < self.min_score:
                continue
            if min(box[2] - box[0], box[3] - box[1]) < self.min_face_size:
                continue
            found.append((box, pts, score))
        found.sort(key=lambda f: (f[0][0], f[0][1]))
        return found

    def detect(self, image: Image.Image | np.ndarray) -> list[Face]:
        """Detect and align every face; an empty list when there is none."""
        rgb = as_rgb_array(image)
        faces = []
        for box, pts, score in self.locate(rgb):
            try:
                aligned, transform = align_face(rgb, pts, self.output_size, self.transform_size, self.pad)
            except ValueError:
                continue  # degenerate landmarks: nothing sensible to align
            faces.append(Face(box=box, landmarks=pts, score=score, transform=transform, aligned=aligned))
        return faces
