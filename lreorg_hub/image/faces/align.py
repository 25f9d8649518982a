"""FFHQ-style alignment of faces on the photo's device (reference §4.1 steps 3–8)."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..io import photo_tensor
from .geometry import AlignTransform, ffhq_quad
from .resample import _exact_dtype, _fade_pad, _sample_quad, lanczos_resize

__all__ = ["align_faces", "align_face"]


def _align_one(photo: torch.Tensor, landmarks: np.ndarray, output_size: int, t_size: int,
               pad: bool) -> tuple[torch.Tensor, AlignTransform]:
    dtype = _exact_dtype(photo.device)
    _, height, width = photo.shape
    quad0, qsize0 = ffhq_quad(landmarks)
    quad, qsize = quad0.copy(), qsize0

    # Shrink (step 5): large faces are first reduced with Lanczos. Only the crop of the
    # shrunk photo is computed, which equals that part of the whole shrunk photo.
    shrink = int(math.floor(qsize / output_size * 0.5))
    size = (width, height)
    if shrink > 1:
        size = (int(np.rint(width / shrink)), int(np.rint(height / shrink)))
        quad /= shrink
        qsize /= shrink

    # Crop to the quad's bounding box plus a border (step 6).
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
            min(hi[0] + border, size[0]), min(hi[1] + border, size[1]))
    if crop[0] >= crop[2] or crop[1] >= crop[3]:
        raise ValueError("the face's alignment square lies outside the photo")
    if shrink > 1:
        img = lanczos_resize(photo, size, crop).to(dtype)
    else:
        img = photo[:, crop[1]:crop[3], crop[0]:crop[2]].to(dtype)
    quad -= np.array(crop[:2], dtype=np.float64)

    # Pad: when the quad leaves the photo, extend it by reflection, blurred and faded (step 7).
    _, h, w = img.shape
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    pads = [max(-lo[0] + border, 0), max(-lo[1] + border, 0),
            max(hi[0] - w + border, 0), max(hi[1] - h + border, 0)]
    if pad and max(pads) > border - 4:
        pads = [max(p, int(np.rint(qsize * 0.3)), 1) for p in pads]
        img = _fade_pad(img, pads, qsize)
        quad += np.array(pads[:2], dtype=np.float64)

    # Sample the quad (step 8), then resize to S when sampled at another size.
    img = _sample_quad(img, quad, t_size)
    if output_size != t_size:
        img = lanczos_resize(img, (output_size, output_size))
    return img.to(torch.uint8), AlignTransform(quad=quad0, size=output_size)


def align_faces(
    photo: torch.Tensor,
    landmarks: Sequence[np.ndarray],
    output_size: int = 256,
    transform_size: int | None = None,
    pad: bool = True,
) -> tuple[torch.Tensor, list[AlignTransform]]:
    """Crop and align faces the FFHQ way on the photo's device (reference §4.1 steps 3–8,
    §4.3 for 5 points).

    Args:
        photo: the photo, a (3, H, W) uint8 tensor on any device.
        landmarks: the (5, 2) MTCNN landmarks of each face.
        output_size: S, the side of the crops (256 for e4e, 1024 for FFHQ).
        transform_size: the size the quad is sampled at before a Lanczos resize to S;
            ``None`` means S (the pSp/e4e variant); FFHQ proper used 4096.
        pad: reflect-pad with blur and median fade when the quad leaves the photo (FFHQ step 7);
            if False the outside of the photo samples as black.

    Returns:
        (crops (N, 3, S, S) uint8 on the photo's device, the transform of each crop).
    """
    if output_size < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    if photo.dim() != 3 or photo.shape[0] != 3 or photo.dtype != torch.uint8:
        raise ValueError(f"expected a (3, H, W) uint8 photo, got {photo.dtype} "
                         f"{tuple(photo.shape)}")
    t_size = output_size if transform_size is None else int(transform_size)
    crops, transforms = [], []
    for points in landmarks:
        crop, transform = _align_one(photo, points, output_size, t_size, pad)
        crops.append(crop)
        transforms.append(transform)
    if not crops:
        return photo.new_zeros((0, 3, output_size, output_size)), []
    return torch.stack(crops), transforms


def align_face(
    photo: Image.Image | np.ndarray,
    landmarks: np.ndarray,
    output_size: int = 256,
    transform_size: int | None = None,
    pad: bool = True,
) -> tuple[Image.Image, AlignTransform]:
    """:func:`align_faces` for one face of a PIL image (any mode) or (H, W, 3) uint8 array,
    on the CPU. Returns (aligned RGB image S×S, the transform from it to the original photo)."""
    crops, (transform,) = align_faces(photo_tensor(photo), [landmarks], output_size,
                                      transform_size, pad)
    return Image.fromarray(crops[0].permute(1, 2, 0).numpy()), transform  # fresh, no metadata
