"""Paste-back: generated aligned faces into the photo through the analytic inverse of the
alignment, with a feathered mask; pixels where the mask is 0 stay bit-identical."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..io import as_rgb_array, to_rgb_array
from .detection import Face
from .geometry import AlignTransform
from .resample import _exact_dtype

__all__ = ["paste_mask", "paste_faces", "paste_back", "paste_back_all"]


def _generated_to_array(generated: Image.Image | np.ndarray | torch.Tensor) -> np.ndarray:
    """Generated crop → (G, G, 3) float32 in 0..255. Tensors are (3, G, G) / (1, 3, G, G) in [-1, 1]."""
    if isinstance(generated, torch.Tensor):
        t = generated.detach().to("cpu", torch.float32)
        if t.dim() == 4:
            if t.shape[0] != 1:
                raise ValueError(f"expected one generated face, got a batch of {t.shape[0]}")
            t = t[0]
        arr = ((t.clamp(-1, 1) + 1) * 127.5).permute(1, 2, 0).numpy()
    elif isinstance(generated, Image.Image):
        arr = to_rgb_array(generated).astype(np.float32)
    else:
        arr = np.asarray(generated)
        arr = arr.astype(np.float32) * (255.0 if np.issubdtype(arr.dtype, np.floating) else 1.0)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] != arr.shape[1]:
        raise ValueError(f"expected a square RGB crop, got shape {arr.shape}")
    return arr


def _region(transform: AlignTransform, width: int, height: int) -> tuple[int, int, int, int] | None:
    """Integer photo box (x0, y0, x1, y1), exclusive end, covering the quad and inside the photo."""
    lo = np.floor(transform.quad.min(axis=0)).astype(int)
    hi = np.ceil(transform.quad.max(axis=0)).astype(int) + 1
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], width), min(hi[1], height)
    if x0 >= x1 or y0 >= y1:
        return None
    return x0, y0, x1, y1


def _unit_coords(transform: AlignTransform, box: tuple[int, int, int, int],
                 device: torch.device) -> torch.Tensor:
    """B⁻¹·(q − UL) for every photo pixel q in box: (h, w, 2), the crop position in [0, 1]²."""
    x0, y0, x1, y1 = box
    dtype = _exact_dtype(device)
    inv = np.linalg.inv(transform.basis)
    qx = torch.arange(x0, x1, device=device, dtype=dtype)[None, :] - float(transform.origin[0])
    qy = torch.arange(y0, y1, device=device, dtype=dtype)[:, None] - float(transform.origin[1])
    return torch.stack([inv[0, 0] * qx + inv[0, 1] * qy, inv[1, 0] * qx + inv[1, 1] * qy], dim=-1)


def _feather_mask(unit: torch.Tensor, feather: float) -> torch.Tensor:
    """Soft square mask from crop positions: 1 inside, smooth fall to 0 at the crop's edge.

    feather is the ramp width as a fraction of the crop side; 0 gives a hard edge. float32.
    """
    u, v = unit[..., 0], unit[..., 1]
    d = torch.minimum(torch.minimum(u, 1.0 - u), torch.minimum(v, 1.0 - v))
    if feather <= 0:
        return (d > 0).float()
    t = torch.clamp(d / feather, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).float()  # smoothstep: no visible kink


def paste_mask(photo_size: tuple[int, int], transform: AlignTransform, feather: float = 0.1) -> np.ndarray:
    """The (H, W) float32 blend mask paste-back uses for one face (photo_size = (W, H))."""
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    width, height = photo_size
    mask = np.zeros((height, width), dtype=np.float32)
    box = _region(transform, width, height)
    if box is not None:
        unit = _unit_coords(transform, box, torch.device("cpu"))
        mask[box[1]:box[3], box[0]:box[2]] = _feather_mask(unit, feather).numpy()
    return mask


def _check_paste_settings(feather: float, interpolation: str) -> None:
    if feather < 0:
        raise ValueError(f"feather must be >= 0, got {feather}")
    if interpolation not in ("bilinear", "bicubic", "nearest"):
        raise ValueError(f"interpolation must be bilinear, bicubic or nearest, got {interpolation!r}")


def _paste_into(out: torch.Tensor, transform: AlignTransform, generated: torch.Tensor,
                feather: float, interpolation: str) -> None:
    """Blend one generated crop, (3, G, G) float32 in 0..255 on out's device, into the
    (3, H, W) uint8 tensor `out`, in place."""
    _, height, width = out.shape
    box = _region(transform, width, height)
    if box is None:
        return
    gen = generated[None]
    # Shrinking a large generated crop by more than 1.5x with bilinear sampling aliases;
    # prefilter it to about the face's size in the photo first.
    target = max(int(math.ceil(transform.side)), 1)
    if gen.shape[-1] > 1.5 * target:
        gen = F.interpolate(gen, size=(target, target), mode="bicubic", antialias=True, align_corners=False)
    unit = _unit_coords(transform, box, out.device)
    mask = _feather_mask(unit, feather)[None]
    # grid_sample with align_corners=False: normalised −1/+1 are the crop's outer edges, so a
    # crop position u ∈ [0, 1] maps to 2u − 1 whatever the crop's pixel size is.
    grid = (2.0 * unit - 1.0).float()[None]
    sampled = F.grid_sample(gen, grid, mode=interpolation, padding_mode="border", align_corners=False)[0]
    x0, y0, x1, y1 = box
    orig = out[:, y0:y1, x0:x1]
    blended = torch.round(orig.float() * (1.0 - mask) + sampled * mask).clamp_(0, 255).to(torch.uint8)
    # Only pixels the mask touches change; the rest stay bit-identical.
    out[:, y0:y1, x0:x1] = torch.where(mask > 0, blended, orig)


def paste_faces(
    photo: torch.Tensor,
    transforms: Sequence["Face | AlignTransform"],
    generated: torch.Tensor,
    feather: float = 0.1,
    interpolation: str = "bicubic",
) -> torch.Tensor:
    """Put generated aligned faces back into the photo, on the photo's device.

    Args:
        photo: the original photo, a (3, H, W) uint8 tensor (not modified).
        transforms: the :class:`AlignTransform` (or :class:`Face`) of each crop.
        generated: the new faces in the aligned frame, (N, 3, G, G) on the photo's device,
            any G: floats in [-1, 1] (the generator's output) or uint8 in 0..255.
        feather, interpolation: as in :func:`paste_back`.

    Returns the composed photo, a (3, H, W) uint8 tensor. Faces are pasted in order (a later
    face wins where two masks overlap); every pixel where all masks are 0 is bit-identical
    to the input.
    """
    _check_paste_settings(feather, interpolation)
    if generated.dim() != 4 or generated.shape[1] != 3 or generated.shape[2] != generated.shape[3]:
        raise ValueError(f"expected generated faces (N, 3, G, G), got {tuple(generated.shape)}")
    if len(transforms) != generated.shape[0]:
        raise ValueError(f"{len(transforms)} faces but {generated.shape[0]} generated crops")
    if generated.dtype == torch.uint8:
        values = generated.float()
    else:  # as tensor_to_pil reads the generator's output, before its rounding
        values = (generated.float().clamp(-1, 1) + 1) * 127.5
    out = photo.clone()
    for face, gen in zip(transforms, values):
        transform = face.transform if isinstance(face, Face) else face
        _paste_into(out, transform, gen, feather, interpolation)
    return out


def paste_back(
    photo: Image.Image | np.ndarray,
    face: "Face | AlignTransform",
    generated: Image.Image | np.ndarray | torch.Tensor,
    feather: float = 0.1,
    interpolation: str = "bicubic",
) -> Image.Image:
    """Put a generated aligned face back into the photo; returns a fresh RGB image.

    Args:
        photo: the original photo.
        face: the :class:`Face` (or its :class:`AlignTransform`) the crop was aligned with.
        generated: the new face in the aligned frame, any square size G (PIL image, uint8 or
            [0, 1] float (G, G, 3) array, or a [-1, 1] tensor (3, G, G)).
        feather: width of the soft edge as a fraction of the crop side (0 = hard edge).
        interpolation: how the crop is sampled at photo pixels. Bicubic is the default: on the
            astronaut photo it keeps more detail than bilinear (round-trip mean error 3.4 vs
            4.1 gray levels); values are clipped to 0..255, so its overshoot cannot wrap.

    Every photo pixel outside the quad, and inside it where the mask is 0, is returned
    bit-identical to the input.
    """
    return paste_back_all(photo, [face], [generated], feather=feather, interpolation=interpolation)


def paste_back_all(
    photo: Image.Image | np.ndarray,
    faces: Sequence["Face | AlignTransform"],
    generated: Sequence[Image.Image | np.ndarray | torch.Tensor],
    feather: float = 0.1,
    interpolation: str = "bicubic",
) -> Image.Image:
    """Paste several faces, in order (a later face wins where two masks overlap): the
    :func:`paste_faces` maths on the CPU, for PIL images and arrays."""
    if len(faces) != len(generated):
        raise ValueError(f"{len(faces)} faces but {len(generated)} generated crops")
    _check_paste_settings(feather, interpolation)
    out = np.array(as_rgb_array(photo), dtype=np.uint8)  # a copy: the input is never modified
    pixels = torch.from_numpy(out).permute(2, 0, 1)      # a view: pasting writes into out
    for face, gen in zip(faces, generated):
        transform = face.transform if isinstance(face, Face) else face
        values = torch.from_numpy(np.ascontiguousarray(_generated_to_array(gen).transpose(2, 0, 1)))
        _paste_into(pixels, transform, values, feather, interpolation)
    return Image.fromarray(out)
