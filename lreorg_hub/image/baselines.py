"""Classical image baselines: Gaussian blur, pixelation and a solid mask over each face.

They are what the paper compares against (Tables 4 and 9) and what a reviewer expects to see
beside LReOrg. Each baseline is a small frozen dataclass whose one setting is ``strength``;
calling it with a photo and its faces returns a fresh RGB image in which only the pixels of the
face regions may change (every other pixel is bit-identical to the input).

Face region (``shape``):
- ``"box"``: MTCNN's box, grown by ``margin`` (a fraction of the box's size on each side);
  a pixel belongs to it when its centre (x + 0.5, y + 0.5) lies inside.
- ``"quad"``: the FFHQ alignment square (the area the generated face replaces in the LReOrg
  pipeline), grown by ``margin`` around its centre; needs aligned :class:`faces.Face` objects.

Strength, per baseline (a negative or non-finite strength is a ValueError; 0 leaves the photo
unchanged):
- :class:`Blur`: Gaussian σ as a fraction of the face size (the box's longer side);
  default 0.1, i.e. σ ≈ 10 px for a 100 px face.
- :class:`Pixelate`: block side as a fraction of the face size; default 0.1 (about ten blocks
  across the face). Blocks are laid from the region's top-left corner; each block becomes the
  mean of its pixels inside the region.
- :class:`SolidMask`: opacity in [0, 1] of a solid colour (default black); 1 is an opaque
  mask; values above 1 are a ValueError.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from .faces import Detection
from .io import as_rgb_array

__all__ = ["Blur", "Pixelate", "SolidMask", "BASELINES", "get_baseline", "face_region_mask"]

FaceLike = Union[Detection, Sequence[float]]  # a Detection / Face, or a plain box


def _box_of(face: FaceLike) -> np.ndarray:
    box = face.box if isinstance(face, Detection) else face
    box = np.asarray(box, dtype=np.float64).reshape(4)
    if not (box[2] > box[0] and box[3] > box[1]):
        raise ValueError(f"face box must have x1 > x0 and y1 > y0, got {box.tolist()}")
    return box


def _face_size(face: FaceLike) -> float:
    box = _box_of(face)
    return float(max(box[2] - box[0], box[3] - box[1]))


def face_region_mask(
    size: tuple[int, int], face: FaceLike, shape: str = "box", margin: float = 0.0
) -> np.ndarray:
    """Boolean (H, W) mask of one face's region in a photo of size (W, H); see module notes."""
    width, height = size
    if margin < 0 or not math.isfinite(margin):
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    if shape == "box":
        x0, y0, x1, y1 = _box_of(face)
        dx, dy = margin * (x1 - x0), margin * (y1 - y0)
        x0, y0, x1, y1 = x0 - dx, y0 - dy, x1 + dx, y1 + dy
        xs = np.arange(width) + 0.5
        ys = np.arange(height) + 0.5
        return ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]
    if shape == "quad":
        if getattr(face, "transform", None) is None:
            raise ValueError("shape='quad' needs aligned faces (Face objects: it uses the "
                             "alignment quad)")
        quad = face.transform.quad
        centre = quad.mean(axis=0)
        quad = centre + (quad - centre) * (1.0 + 2.0 * margin)
        canvas = Image.new("L", (width, height), 0)
        # PIL polygons use pixel-corner coordinates; the quad is in pixel-index ones (+0.5).
        ImageDraw.Draw(canvas).polygon([tuple(p) for p in (quad + 0.5)], fill=255)
        return np.asarray(canvas) > 0
    raise ValueError(f"shape must be 'box' or 'quad', got {shape!r}")


def _check_strength(strength: float, upper: float | None = None) -> float:
    try:
        value = float(strength)
    except (TypeError, ValueError):
        raise ValueError(f"strength must be a number, got {strength!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"strength must be a finite number >= 0, got {strength!r}")
    if upper is not None and value > upper:
        raise ValueError(f"strength must be <= {upper}, got {strength!r}")
    return value


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), exclusive end, of the True pixels; None when there are none."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


@dataclass(frozen=True)
class _RegionBaseline(ABC):
    """Shared plumbing: validate, loop over faces, change only region pixels."""

    strength: float = 0.1
    shape: str = "box"
    margin: float = 0.0

    name: ClassVar[str] = "baseline"
    max_strength: ClassVar[float | None] = None  # upper bound on strength, if any

    def __post_init__(self) -> None:
        _check_strength(self.strength, self.max_strength)
        if self.shape not in ("box", "quad"):
            raise ValueError(f"shape must be 'box' or 'quad', got {self.shape!r}")
        if self.margin < 0 or not math.isfinite(self.margin):
            raise ValueError(f"margin must be a finite number >= 0, got {self.margin}")

    def __call__(self, photo: Image.Image | np.ndarray, faces: Sequence[FaceLike]) -> Image.Image:
        """Apply to every face in turn; returns a fresh RGB image."""
        out = np.array(as_rgb_array(photo), dtype=np.uint8)  # a copy
        if out.ndim != 3 or out.shape[2] != 3:
            raise ValueError(f"expected an (H, W, 3) photo, got shape {out.shape}")
        height, width = out.shape[:2]
        for face in faces:
            mask = face_region_mask((width, height), face, self.shape, self.margin)
            box = _bbox(mask)
            if box is None or self.strength == 0:
                continue
            self._apply(out, mask, box, _face_size(face))
        return Image.fromarray(out)

    @abstractmethod
    def _apply(self, out: np.ndarray, mask: np.ndarray, box: tuple[int, int, int, int], face_size: float) -> None:
        """Change ``out`` in place inside ``mask`` (whose bounding box is ``box``)."""


@dataclass(frozen=True)
class Blur(_RegionBaseline):
    """Gaussian blur; strength = σ / face size."""

    name: ClassVar[str] = "blur"
    # σ beyond the face size blurs no further, and Pillow segfaults on absurd radii (1e9).
    max_strength: ClassVar[float | None] = 1.0

    def _apply(self, out, mask, box, face_size):
        sigma = self.strength * face_size
        # Blur a window a few σ larger than the region, so region pixels near its edge average
        # real neighbours rather than the window's replicated border.
        pad = int(math.ceil(3 * sigma)) + 1
        x0, y0, x1, y1 = box
        wx0, wy0 = max(x0 - pad, 0), max(y0 - pad, 0)
        wx1, wy1 = min(x1 + pad, out.shape[1]), min(y1 + pad, out.shape[0])
        window = Image.fromarray(np.ascontiguousarray(out[wy0:wy1, wx0:wx1]))
        blurred = np.asarray(window.filter(ImageFilter.GaussianBlur(radius=sigma)))
        sub = mask[wy0:wy1, wx0:wx1]
        out[wy0:wy1, wx0:wx1][sub] = blurred[sub]


@dataclass(frozen=True)
class Pixelate(_RegionBaseline):
    """Mosaic of square blocks; strength = block side / face size."""

    name: ClassVar[str] = "pixelate"
    # One block the size of the face is the coarsest mosaic; larger blocks only cost memory
    # (strength 1000 asked for a 270 GiB tile).
    max_strength: ClassVar[float | None] = 1.0

    def _apply(self, out, mask, box, face_size):
        block = max(int(round(self.strength * face_size)), 1)
        if block == 1:
            return  # one-pixel blocks are the identity
        x0, y0, x1, y1 = box
        region = out[y0:y1, x0:x1].astype(np.float64)
        sub = mask[y0:y1, x0:x1].astype(np.float64)
        rows = np.arange(0, y1 - y0, block)
        cols = np.arange(0, x1 - x0, block)
        # Sum of masked pixels and mask count per block, then the per-block mean.
        sums = np.add.reduceat(np.add.reduceat(region * sub[..., None], rows, axis=0), cols, axis=1)
        counts = np.add.reduceat(np.add.reduceat(sub, rows, axis=0), cols, axis=1)
        means = sums / np.maximum(counts, 1)[..., None]
        tiled = np.repeat(np.repeat(means, block, axis=0), block, axis=1)[: y1 - y0, : x1 - x0]
        tiled = np.clip(np.rint(tiled), 0, 255).astype(np.uint8)
        window = out[y0:y1, x0:x1]
        keep = sub > 0
        window[keep] = tiled[keep]


@dataclass(frozen=True)
class SolidMask(_RegionBaseline):
    """A solid colour over the region; strength = opacity in [0, 1]."""

    strength: float = 1.0
    color: tuple[int, int, int] = (0, 0, 0)

    name: ClassVar[str] = "mask"
    max_strength: ClassVar[float | None] = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.color) != 3 or any(not (0 <= int(c) <= 255) for c in self.color):
            raise ValueError(f"color must be three values in 0..255, got {self.color!r}")

    def _apply(self, out, mask, box, face_size):
        color = np.asarray(self.color, dtype=np.float64)
        pixels = out[mask].astype(np.float64)
        out[mask] = np.clip(np.rint(pixels * (1 - self.strength) + color * self.strength), 0, 255).astype(np.uint8)


BASELINES: dict[str, type[_RegionBaseline]] = {"blur": Blur, "pixelate": Pixelate, "mask": SolidMask}


def get_baseline(name: str, **settings) -> _RegionBaseline:
    """Build a baseline by name (``blur``, ``pixelate``, ``mask``) with its settings."""
    try:
        cls = BASELINES[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown baseline {name!r}; choose from {', '.join(BASELINES)}") from None
    return cls(**settings)
