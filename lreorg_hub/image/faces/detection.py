"""Face detection: MTCNN (facenet-pytorch, weights shipped with the package), the typed
detections it gives, and the one "is this face still detected?" rule that the app and the
evaluation share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..io import as_rgb_array
from .align import align_face
from .geometry import AlignTransform

__all__ = ["Detection", "Face", "FaceDetector", "box_iou", "still_detected",
           "MTCNN_MIN_FACE"]

#: The smallest face MTCNN can find: its first network looks at 12 × 12 windows.
MTCNN_MIN_FACE = 12


@dataclass(eq=False)
class Detection:
    """One face the detector found.

    Attributes:
        box: (4,) float64 x0, y0, x1, y1 of MTCNN's box, in photo pixels.
        landmarks: (5, 2) float64 MTCNN points (eye with smaller x, eye with larger x, nose,
            mouth corner with smaller x, mouth corner with larger x).
        score: MTCNN's face probability.
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """The shorter side of the detection box, in photo pixels."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass(eq=False)
class Face(Detection):
    """A detection with its FFHQ alignment.

    Attributes (besides the detection's):
        transform: the alignment transform (aligned crop ↔ photo).
        aligned: the aligned S×S RGB crop.
    """

    transform: AlignTransform = field(default=None)
    aligned: Image.Image = field(default=None, repr=False)

    @property
    def aligned_landmarks(self) -> np.ndarray:
        """The landmarks in the aligned crop's pixel coordinates."""
        return self.transform.to_aligned(self.landmarks)


def box_iou(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> np.ndarray:
    """Intersection over union of every (x0, y0, x1, y1) box in ``a`` with every one in ``b``
    (torchvision's ``box_iou``): an (len(a), len(b)) array."""
    from torchvision.ops import box_iou as _iou

    ta = torch.as_tensor(np.asarray(a, dtype=np.float64).reshape(-1, 4))
    tb = torch.as_tensor(np.asarray(b, dtype=np.float64).reshape(-1, 4))
    return _iou(ta, tb).numpy()


class FaceDetector:
    """MTCNN plus FFHQ alignment.

    Args:
        min_face_size: smallest face searched for, in photo pixels (MTCNN finds none below
            12); detections whose box has a shorter side below it are dropped too.
        thresholds: MTCNN's P/R/O-net thresholds.
        factor: scale step of MTCNN's image pyramid.
        min_score: drop detections with a lower face probability (0 keeps all MTCNN returns).
        device: torch device for the three networks.
        output_size, transform_size, pad: alignment settings, see :func:`align_face`.

    :meth:`locate` and :meth:`detect` return faces sorted left to right by box (x0, then y0):
    stable for a given photo and the order a reader scans a group photo in.
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
            self.mtcnn = MTCNN(min_face_size=max(self.min_face_size, MTCNN_MIN_FACE),
                               thresholds=list(self.thresholds), factor=self.factor,
                               keep_all=True, select_largest=False, device=self.device).eval()

    def locate(self, image: Image.Image | np.ndarray) -> list[Detection]:
        """Every face found (filtered, sorted left to right), without alignment."""
        rgb = as_rgb_array(image)
        if min(rgb.shape[:2]) < max(self.min_face_size, MTCNN_MIN_FACE):
            return []  # no face of the minimum size fits (and MTCNN's pyramid would be empty)
        boxes, probs, points = self.mtcnn.detect(np.ascontiguousarray(rgb, dtype=np.uint8),
                                                 landmarks=True)
        if boxes is None:  # MTCNN's "no face"
            return []
        found = []
        for box, prob, pts in zip(boxes, probs, points):
            # numpy 2: facenet-pytorch hands back object-dtype arrays; cast before arithmetic.
            detection = Detection(box=np.asarray(box, dtype=np.float64).reshape(4),
                                  landmarks=np.asarray(pts, dtype=np.float64).reshape(5, 2),
                                  score=float(prob))
            if detection.score < self.min_score or detection.size < self.min_face_size:
                continue
            found.append(detection)
        found.sort(key=lambda d: (d.box[0], d.box[1]))
        return found

    def align(self, image: Image.Image | np.ndarray, detection: Detection) -> Face:
        """The detection with its aligned crop (ValueError for degenerate landmarks)."""
        aligned, transform = align_face(image, detection.landmarks, self.output_size,
                                        self.transform_size, self.pad)
        return Face(box=detection.box, landmarks=detection.landmarks, score=detection.score,
                    transform=transform, aligned=aligned)

    def detect(self, image: Image.Image | np.ndarray) -> list[Face]:
        """Detect and align every face; an empty list when there is none."""
        rgb = as_rgb_array(image)
        faces = []
        for detection in self.locate(rgb):
            try:
                faces.append(self.align(rgb, detection))
            except ValueError:
                continue  # degenerate landmarks: nothing sensible to align
        return faces


def still_detected(detector: FaceDetector, image: Image.Image, box: Sequence[float],
                   min_iou: float = 0.3, max_side: int = 256) -> bool:
    """Whether ``detector`` still finds a face where ``box`` was, in ``image``.

    It looks only around the box (grown by half its size, shrunk to at most ``max_side`` px):
    far cheaper than the whole photo, and it asks about this face only, so in a group photo a
    face that vanished is not excused by its neighbour. A face counts when a detection there
    overlaps the box by ``min_iou`` (intersection over union). The app's captions and the
    evaluation's detection rate both use this rule.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    grow = 0.5 * max(x1 - x0, y1 - y0)
    left, top = max(int(x0 - grow), 0), max(int(y0 - grow), 0)
    right = min(int(x1 + grow) + 1, image.width)
    bottom = min(int(y1 + grow) + 1, image.height)
    crop = image.crop((left, top, right, bottom))
    scale = min(1.0, max_side / max(crop.size))
    if scale < 1.0:
        crop = crop.resize((max(round(crop.width * scale), 1),
                            max(round(crop.height * scale), 1)), Image.BILINEAR)
    target = [(x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale,
              (y1 - top) * scale]
    found = detector.locate(crop)
    return bool(found) and bool((box_iou([target], [d.box for d in found]) >= min_iou).any())
