"""The FFHQ alignment square from five landmarks, and the similarity transform between an
aligned crop and its photo."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["AlignTransform", "ffhq_quad"]


@dataclass(frozen=True, eq=False)
class AlignTransform:
    """The similarity between an aligned S×S crop and the photo it came from.

    Attributes:
        quad: (4, 2) float64 corners UL, LL, LR, UR in photo pixel-index coordinates (x, y),
            the quad of the FFHQ recipe before any shrink / crop / pad.
        size: S, the side of the aligned crop in pixels.
    """

    quad: np.ndarray
    size: int

    @property
    def origin(self) -> np.ndarray:
        """UL, the photo position of the crop's outer upper-left corner."""
        return self.quad[0]

    @property
    def basis(self) -> np.ndarray:
        """B, the 2×2 matrix with columns UR − UL (crop x axis) and LL − UL (crop y axis)."""
        ul, ll, _, ur = self.quad
        return np.stack([ur - ul, ll - ul], axis=1)

    @property
    def side(self) -> float:
        """Length of one side of the quad, in photo pixels."""
        return float(np.linalg.norm(self.quad[3] - self.quad[0]))

    def to_photo(self, points: np.ndarray, size: int | None = None) -> np.ndarray:
        """Aligned pixel coordinates (…, 2) of a size×size crop (default S) → photo coordinates."""
        s = self.size if size is None else size
        p = (np.asarray(points, dtype=np.float64) + 0.5) / s
        return self.origin + p @ self.basis.T

    def to_aligned(self, points: np.ndarray, size: int | None = None) -> np.ndarray:
        """Photo coordinates (…, 2) → pixel coordinates in a size×size crop (default S)."""
        s = self.size if size is None else size
        q = np.asarray(points, dtype=np.float64) - self.origin
        return s * (q @ np.linalg.inv(self.basis).T) - 0.5

    def matrix(self, size: int | None = None) -> np.ndarray:
        """3×3 homogeneous matrix mapping aligned pixel coordinates to photo coordinates."""
        s = self.size if size is None else size
        m = np.eye(3)
        m[:2, :2] = self.basis / s
        m[:2, 2] = self.origin + 0.5 * self.basis.sum(axis=1) / s
        return m


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """The FFHQ oriented square from five MTCNN landmarks.

    Args:
        landmarks: (5, 2) points in MTCNN order: eye with the smaller x, eye with the larger x,
            nose tip (unused), mouth corner with the smaller x, mouth corner with the larger x.

    Returns:
        (quad, qsize): quad (4, 2) = UL, LL, LR, UR and qsize, the side length.
    """
    lm = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_left, eye_right, _, mouth_left, mouth_right = lm
    eye_avg = (eye_left + eye_right) / 2
    eye_to_eye = eye_right - eye_left
    mouth_avg = (mouth_left + mouth_right) / 2
    eye_to_mouth = mouth_avg - eye_avg

    def rot(v: np.ndarray) -> np.ndarray:  # 90° turn: (x, y) → (−y, x)
        return np.array([-v[1], v[0]])

    x = eye_to_eye - rot(eye_to_mouth)
    norm = np.hypot(*x)
    if norm == 0:
        raise ValueError("degenerate landmarks: eyes and mouth coincide")
    x = x / norm * max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = rot(x)
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)
