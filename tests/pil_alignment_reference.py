"""The previous alignment of lreorg_hub.faces, kept as the reference the tensor version is
checked against: the verified PIL recipe (Lanczos shrink, crop, reflect pad with blur and
median fade, ``Image.transform(QUAD, BILINEAR)``), as it ran before alignment moved to torch.
Only the tests import it."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from lreorg_hub.image.faces import AlignTransform, ffhq_quad
from lreorg_hub.image.io import as_rgb_array


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an (H, W, C) float array over H and W (not across channels)."""
    if sigma <= 0:
        return img.copy()
    radius = max(int(math.ceil(4.0 * sigma)), 1)
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = (k / k.sum()).to(torch.float32)
    t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None].float()
    c, h, w = t.shape[1:]
    # Reflect needs the pad to be smaller than the image; fall back to edge replication.
    mode = "reflect" if radius < min(h, w) else "replicate"
    t = F.conv2d(F.pad(t, (radius, radius, 0, 0), mode=mode), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    t = F.conv2d(F.pad(t, (0, 0, radius, radius), mode=mode), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return t[0].numpy().transpose(1, 2, 0)


def pil_align_face(
    photo: Image.Image | np.ndarray,
    landmarks: np.ndarray,
    output_size: int = 256,
    transform_size: int | None = None,
    pad: bool = True,
) -> tuple[Image.Image, AlignTransform]:
    """Crop and align one face the FFHQ way with PIL (see lreorg_hub.faces.align_face)."""
    if output_size < 1:
        raise ValueError(f"output_size must be positive, got {output_size}")
    t_size = output_size if transform_size is None else int(transform_size)
    img = Image.fromarray(np.ascontiguousarray(as_rgb_array(photo)))
    quad0, qsize0 = ffhq_quad(landmarks)
    quad, qsize = quad0.copy(), qsize0

    # Shrink: large faces are first reduced with an antialiasing filter (step 5).
    shrink = int(math.floor(qsize / output_size * 0.5))
    if shrink > 1:
        rsize = (int(np.rint(img.width / shrink)), int(np.rint(img.height / shrink)))
        img = img.resize(rsize, Image.Resampling.LANCZOS)
        quad /= shrink
        qsize /= shrink

    # Crop to the quad's bounding box plus a border (step 6).
    border = max(int(np.rint(qsize * 0.1)), 3)
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    crop = (max(lo[0] - border, 0), max(lo[1] - border, 0),
            min(hi[0] + border, img.width), min(hi[1] + border, img.height))
    if crop[2] - crop[0] < img.width or crop[3] - crop[1] < img.height:
        img = img.crop(crop)
        quad -= np.array(crop[:2], dtype=np.float64)

    # Pad: when the quad leaves the photo, extend it by reflection, blurred and faded (step 7).
    lo = np.floor(quad.min(axis=0)).astype(int)
    hi = np.ceil(quad.max(axis=0)).astype(int)
    pads = [max(-lo[0] + border, 0), max(-lo[1] + border, 0),
            max(hi[0] - img.width + border, 0), max(hi[1] - img.height + border, 0)]
    if pad and max(pads) > border - 4:
        pads = [max(p, int(np.rint(qsize * 0.3)), 1) for p in pads]
        arr = np.pad(np.asarray(img, dtype=np.float32),
                     ((pads[1], pads[3]), (pads[0], pads[2]), (0, 0)), mode="reflect")
        h, w, _ = arr.shape
        yy, xx, _ = np.ogrid[:h, :w, :1]
        xx = xx.astype(np.float32)
        yy = yy.astype(np.float32)
        # 1 at the outer edge, 0 at the seam with the photo, negative inside the photo.
        mask = np.maximum(1.0 - np.minimum(xx / pads[0], (w - 1 - xx) / pads[2]),
                          1.0 - np.minimum(yy / pads[1], (h - 1 - yy) / pads[3]))
        blurred = gaussian_blur(arr, qsize * 0.02)
        arr = arr + (blurred - arr) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
        arr = arr + (np.median(arr, axis=(0, 1)) - arr) * np.clip(mask, 0.0, 1.0)
        img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
        quad += np.array(pads[:2], dtype=np.float64)

    # Sample the quad (step 8); +0.5 turns pixel-index into PIL's pixel-corner coordinates.
    img = img.transform((t_size, t_size), Image.Transform.QUAD, tuple((quad + 0.5).flatten()),
                        Image.Resampling.BILINEAR)
    if output_size != t_size:
        img = img.resize((output_size, output_size), Image.Resampling.LANCZOS)
    aligned = Image.fromarray(np.asarray(img, dtype=np.uint8))  # fresh, no metadata
    return aligned, AlignTransform(quad=quad0, size=output_size)
