"""Resampling on tensors with PIL's arithmetic: Lanczos (fixed-point weights), the FFHQ
reflect pad with blur and median fade, and the QUAD bilinear sampling."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["lanczos_resize"]


def _exact_dtype(device: torch.device) -> torch.dtype:
    """float64 where the device has it: 8-bit pixels times PIL's fixed-point weights then sum
    exactly, and sampling positions carry PIL's double precision; MPS has no float64."""
    return torch.float32 if device.type == "mps" else torch.float64


_PIL_WEIGHT_STEP = 1 << 22  # PIL's 8-bit resampling rounds its weights to multiples of 2⁻²²


def _lanczos_matrix(in_size: int, out_size: int, lo: int, hi: int) -> tuple[np.ndarray, int, int]:
    """Rows lo..hi of PIL's Lanczos matrix for in_size → out_size samples, and the input range
    [first, last) those rows read.

    As Pillow's ``precompute_coeffs`` + ``normalize_coeffs_8bpc``: Lanczos-3 with its support
    scaled by the shrink factor, centred on each output pixel, cut at the image edges,
    normalised per row and rounded to PIL's fixed-point steps.
    """
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 3.0 * filterscale
    center = (np.arange(lo, hi) + 0.5) * scale
    xmin = np.maximum(np.floor(center - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.floor(center + support + 0.5), in_size).astype(np.int64)
    first, last = int(xmin.min()), int(xmax.max())
    j = np.arange(first, last)[None, :]
    x = (j - center[:, None] + 0.5) / filterscale
    # Pillow's sinc(x)·sinc(x/3), each as sin(πx)/(πx), 1 at 0.
    px = np.where(x == 0, 1.0, x * math.pi)
    px3 = np.where(x == 0, 1.0, x / 3.0 * math.pi)
    sinc = np.where(x == 0, 1.0, np.sin(px) / px) * np.where(x == 0, 1.0, np.sin(px3) / px3)
    w = np.where((x >= -3.0) & (x < 3.0) & (j >= xmin[:, None]) & (j < xmax[:, None]),
                 sinc, 0.0)
    total = w.sum(axis=1, keepdims=True)
    w = w / np.where(total == 0, 1.0, total)
    fixed = np.trunc(w * _PIL_WEIGHT_STEP + np.where(w < 0, -0.5, 0.5))
    return fixed / _PIL_WEIGHT_STEP, first, last


def _round_like_pil(values: torch.Tensor) -> torch.Tensor:
    """PIL's fixed-point resample result: + half, floor, clip to 8 bits."""
    return torch.floor(values + 0.5).clamp_(0, 255)


def lanczos_resize(pixels: torch.Tensor, size: tuple[int, int],
                   box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """PIL's ``resize(size, LANCZOS)`` of a (C, H, W) tensor of 8-bit values, on its device.

    Horizontal pass, rounding to 8 bits, vertical pass, rounding (Pillow's order for 8-bit
    images), each a matmul with the banded weight matrix. size is (width, height); box
    (x0, y0, x1, y1) computes only those output pixels (each depends on its own weights only,
    so they equal the full resize's). Returns values 0..255 as uint8 for uint8 input, else in
    the input's float dtype. Bit-identical to Pillow where float64 is available.
    """
    c, height, width = pixels.shape
    out_w, out_h = size
    x0, y0, x1, y1 = box if box is not None else (0, 0, out_w, out_h)
    dtype = pixels.dtype if pixels.is_floating_point() else _exact_dtype(pixels.device)
    vertical = None
    if out_h != height:
        vertical, first, last = _lanczos_matrix(height, out_h, y0, y1)
        rows = pixels[:, first:last]
    else:
        rows = pixels[:, y0:y1]
    if out_w != width:
        horizontal, first, last = _lanczos_matrix(width, out_w, x0, x1)
        weights = torch.from_numpy(horizontal).to(pixels.device, dtype)
        out = _round_like_pil(rows[:, :, first:last].to(dtype) @ weights.T)
    else:
        out = rows[:, :, x0:x1].to(dtype)
    if vertical is not None:
        out = _round_like_pil(torch.from_numpy(vertical).to(pixels.device, dtype) @ out)
    return out.to(torch.uint8) if pixels.dtype == torch.uint8 else out


def _reflect_indices(before: int, size: int, after: int, device: torch.device) -> torch.Tensor:
    """Source indices of numpy's ``pad(mode="reflect")`` along one axis, for any pad length
    (a pad longer than the axis keeps reflecting: the pattern has period 2·(size − 1))."""
    i = torch.arange(-before, size + after, device=device)
    if size == 1:
        return torch.zeros_like(i)
    period = 2 * (size - 1)
    m = torch.remainder(i, period)
    return torch.where(m < size, m, period - m)


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (C, H, W) float tensor over H and W (not across channels)."""
    if sigma <= 0:
        return img.clone()
    radius = max(int(math.ceil(4.0 * sigma)), 1)
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = (k / k.sum()).to(img.device, img.dtype)
    t = img[None]
    c, h, w = img.shape
    # Reflect needs the pad to be smaller than the image; fall back to edge replication.
    mode = "reflect" if radius < min(h, w) else "replicate"
    t = F.conv2d(F.pad(t, (radius, radius, 0, 0), mode=mode), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    t = F.conv2d(F.pad(t, (0, 0, radius, radius), mode=mode), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)
    return t[0]


def _median_per_channel(img: torch.Tensor) -> torch.Tensor:
    """np.median over H and W of a (C, H, W) tensor: the middle value, or the mean of the two
    middle values for an even count; (C, 1, 1)."""
    flat = img.reshape(img.shape[0], -1)
    n = flat.shape[1]
    upper = flat.kthvalue(n // 2 + 1, dim=1).values
    if n % 2 == 0:
        upper = (flat.kthvalue(n // 2, dim=1).values + upper) / 2
    return upper[:, None, None]


def _fade_pad(img: torch.Tensor, pads: list[int], qsize: float) -> torch.Tensor:
    """FFHQ step 7 on a (C, H, W) tensor of 8-bit values: reflect-pad by pads (left, top,
    right, bottom), blur the band, fade it to the per-channel median; float32 like the
    recipe's numpy code, rounded back to 8-bit values."""
    left, top, right, bottom = pads
    _, h, w = img.shape
    arr = img.float()[:, _reflect_indices(top, h, bottom, img.device)]
    arr = arr[:, :, _reflect_indices(left, w, right, img.device)]
    h, w = arr.shape[1:]
    xx = torch.arange(w, device=img.device, dtype=torch.float32)[None, :]
    yy = torch.arange(h, device=img.device, dtype=torch.float32)[:, None]
    # 1 at the outer edge, 0 at the seam with the photo, negative inside the photo.
    mask = torch.maximum(1.0 - torch.minimum(xx / left, (w - 1 - xx) / right),
                         1.0 - torch.minimum(yy / top, (h - 1 - yy) / bottom))
    # The blur runs in float64 where possible, so no TF32 convolution rounds it differently.
    blurred = _gaussian_blur(arr.to(img.dtype), qsize * 0.02).float()
    arr = arr + (blurred - arr) * torch.clamp(mask * 3.0 + 1.0, 0.0, 1.0)
    arr = arr + (_median_per_channel(arr) - arr) * torch.clamp(mask, 0.0, 1.0)
    return torch.round(arr).clamp_(0, 255).to(img.dtype)


def _sample_quad(img: torch.Tensor, quad: np.ndarray, size: int) -> torch.Tensor:
    """PIL's ``transform((size, size), QUAD, quad + 0.5, BILINEAR)`` of a (C, H, W) tensor of
    8-bit values: (C, size, size) values, 0 where the sample falls outside the image."""
    _, h, w = img.shape
    (x0, y0), (swx, swy), (sex, sey), (nex, ney) = quad + 0.5  # pixel-corner coordinates
    step = 1.0 / size
    # Image.transform's QUAD coefficients, evaluated at output pixel centres in the same order.
    a = (x0, (nex - x0) * step, (swx - x0) * step, (sex - swx - nex + x0) * step * step)
    b = (y0, (ney - y0) * step, (swy - y0) * step, (sey - swy - ney + y0) * step * step)
    centre = torch.arange(size, device=img.device, dtype=img.dtype) + 0.5
    xin, yin = centre[None, :], centre[:, None]
    xs = a[0] + a[1] * xin + a[2] * yin + a[3] * xin * yin
    ys = b[0] + b[1] * xin + b[2] * yin + b[3] * xin * yin
    inside = (xs >= 0) & (xs < w) & (ys >= 0) & (ys < h)
    # align_corners=False puts ±1 at the outer pixel edges, so pixel-corner x maps to 2x/w − 1;
    # "border" clamps the neighbours at the edge as PIL does.
    grid = torch.stack([2.0 * xs / w - 1.0, 2.0 * ys / h - 1.0], dim=-1)[None]
    values = F.grid_sample(img[None], grid, mode="bilinear", padding_mode="border",
                           align_corners=False)[0]
    # PIL truncates its double result to 8 bits. The slack keeps grid_sample's own rounding
    # (about 1e-12 in float64) from pushing an exact integer, such as a flat region, below it.
    slack = 1e-6 if img.dtype == torch.float64 else 1e-2
    return torch.floor(values + slack).clamp_(0, 255) * inside
