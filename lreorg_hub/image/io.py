"""Image loading and conversion: every image that enters or leaves the library passes here.

Rules kept by every function in this module:

- Inputs are read from memory or from the caller's file; nothing is ever written to disk.
- Returned images are *fresh* PIL images built from numpy arrays, so no metadata (EXIF with
  camera make or GPS position, XMP, ICC profile, comments) survives from the input.
- Photos are 8-bit RGB after loading, whatever the source mode:
  ``1``/``L`` (grayscale) are replicated to three channels; ``I;16*`` and ``I`` are treated as
  16-bit data (0..65535) and scaled to 8 bits with rounding; ``F`` is treated as [0, 1] floats;
  ``P`` (palette), ``CMYK``, ``YCbCr``, ``LAB`` and ``HSV`` go through Pillow's converters;
  anything with transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparent colour,
  ``RGBa``) is composited over a solid background (white by default) rather than just
  dropping alpha, because dropping it reveals whatever colour happened to be stored under
  transparent pixels.
- EXIF orientation is applied before the metadata is dropped, so the pixels are upright.
- An embedded ICC profile is used to convert the pixels to sRGB (when Pillow has LittleCMS),
  then dropped; wide-gamut phone photos otherwise look washed out once the profile is gone.

Tensor convention (shared with the encoders): float tensors of shape (3, H, W) or
(N, 3, H, W) with values in [-1, 1].
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import BinaryIO, Union

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .names import described, shown

try:  # LittleCMS is optional in Pillow builds; without it ICC conversion is skipped.
    from PIL import ImageCms
except ImportError:  # pragma: no cover - depends on the Pillow build
    ImageCms = None

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "ImageLoadError",
    "ImageTooLargeError",
    "ImageSource",
    "shown",
    "load_image",
    "to_rgb_array",
    "as_rgb_array",
    "to_pil",
    "strip_metadata",
    "pil_to_tensor",
    "tensor_to_pil",
    "tensor_to_uint8",
    "photo_tensor",
    "to_host_once",
]

#: Largest accepted photo, in pixels (50 MP covers current phone cameras at full resolution).
#: Pillow's own decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``, about 89 MP) applies too.
DEFAULT_MAX_PIXELS = 50_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, BinaryIO, Image.Image, np.ndarray]


class ImageLoadError(ValueError):
    """The input could not be read as an image (the message names the file)."""


class ImageTooLargeError(ImageLoadError):
    """The image has more pixels than the configured limit."""


def _check_size(width: int, height: int, max_pixels: int | None, what: str) -> None:
    if max_pixels is not None and width * height > max_pixels:
        raise ImageTooLargeError(
            f"image {what} is {width}x{height} = {width * height:,} pixels, more than the "
            f"limit of {max_pixels:,}; downscale it first or raise max_pixels"
        )


#: Formats whose extra frames are not part of the picture: an MPO (the multi-picture JPEG that
#: many phone cameras write) holds the photo first and previews / depth maps after it.
FIRST_FRAME_FORMATS = {"MPO"}


def _check_single_frame(img: Image.Image, what: str) -> None:
    """Refuse animations and multi-page files rather than anonymize one frame of them.

    Using only the first frame would hand back a still image while the user may believe the
    whole animation (or every page) was protected; refusing says so before anything runs.
    """
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and img.format not in FIRST_FRAME_FORMATS:
        kind = {"GIF": "an animated GIF", "TIFF": "a multi-page TIFF", "PNG": "an animated PNG",
                "WEBP": "an animated WebP"}.get(img.format, f"a {img.format} file")
        raise ImageLoadError(
            f"image {what} has {frames} frames ({kind}); only single-frame images are "
            f"processed, so that no frame is left unprotected by mistake. Save each frame you "
            f"want as its own image and use those instead")


def _open(source: ImageSource, max_pixels: int | None) -> Image.Image:
    """Open a path / bytes / file object and decode it fully, with clear errors."""
    what = described(source)
    if isinstance(source, (bytes, bytearray)):
        source = io.BytesIO(bytes(source))
    elif isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise ImageLoadError(f"cannot read image {what}: no such file")
    try:
        with warnings.catch_warnings():
            # Pillow only *warns* between 1x and 2x MAX_IMAGE_PIXELS; treat that as a refusal
            # so a decompression bomb never gets decoded.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(source) as img:
                # The header is enough to know the size: refuse before decoding any pixel data.
                _check_size(img.width, img.height, max_pixels, what)
                _check_single_frame(img, what)
                img.load()  # decoded pixels stay usable after the file is closed
    except ImageLoadError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageTooLargeError(f"image {what} refused as a possible decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"cannot read image {what}: not a recognised image format") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        # Truncated or corrupt data surfaces as OSError / SyntaxError from the plugins.
        raise ImageLoadError(f"cannot read image {what}: {exc}") from exc
    return img


def _to_srgb(img: Image.Image) -> Image.Image:
    """Convert pixels to sRGB with the embedded ICC profile, if there is one and we can."""
    icc = img.info.get("icc_profile")
    out_modes = {"RGB": "RGB", "RGBA": "RGBA", "CMYK": "RGB", "L": "RGB"}
    if not icc or ImageCms is None or img.mode not in out_modes:
        return img  # other modes (LA, P, 16-bit) keep their raw values
    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.createProfile("sRGB")
        return ImageCms.profileToProfile(img, src, dst, outputMode=out_modes[img.mode])
    except (ImageCms.PyCMSError, OSError, ValueError, TypeError):
        # A broken or unusual profile must not make the photo unreadable: keep raw values.
        return img


def _composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Alpha-composite an (H, W, 4) uint8 array over a solid colour; returns (H, W, 3) uint8."""
    rgb = rgba[..., :3].astype(np.float32)
    alpha = rgba[..., 3:4].astype(np.float32) / 255.0
    bg = np.asarray(background, dtype=np.float32).reshape(1, 1, 3)
    out = rgb * alpha + bg * (1.0 - alpha)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def to_rgb_array(img: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Convert a PIL image of any mode to an (H, W, 3) uint8 RGB array (see module notes)."""
    mode = img.mode
    if mode == "RGB":
        return np.array(img, dtype=np.uint8)
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit data: scale the 0..65535 range to 0..255 with rounding (÷257 maps 65535→255).
        arr = np.asarray(img, dtype=np.float64)
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    if mode == "F":
        arr = np.clip(np.rint(np.asarray(img, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(arr[..., None], 3, axis=2)
    has_alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        mode == "P" and "transparency" in img.info
    ) or (mode in ("L", "RGB") and "transparency" in img.info)
    if has_alpha:
        return _composite(np.array(img.convert("RGBA"), dtype=np.uint8), background)
    # 1, L, P, CMYK, YCbCr, LAB, HSV: Pillow's converters do the right thing.
    return np.array(img.convert("RGB"), dtype=np.uint8)


def as_rgb_array(image: Image.Image | np.ndarray) -> np.ndarray:
    """A PIL image of any mode, or an array :func:`to_pil` accepts → (H, W, 3) uint8 RGB.

    An (H, W, 3) uint8 array is returned as is (not copied).
    """
    if isinstance(image, np.ndarray):
        if image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8:
            return image
        image = to_pil(image)
    return to_rgb_array(image)


def load_image(
    source: ImageSource,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
    convert_icc: bool = True,
) -> Image.Image:
    """Load a photo as a fresh 8-bit RGB PIL image with no metadata.

    Args:
        source: a path, raw encoded bytes, a binary file object, a PIL image, or a numpy array
            (see :func:`to_pil` for arrays).
        max_pixels: refuse images with more pixels than this (``ImageTooLargeError``, a
            ``ValueError``); ``None`` disables the check (Pillow's own bomb limit still holds).
        background: the colour transparent pixels are composited over.
        convert_icc: convert to sRGB with an embedded ICC profile before dropping it.

    Raises:
        ImageLoadError (a ValueError) naming the source when it cannot be read, and
        ImageTooLargeError when it is over the pixel limit.
    """
    if isinstance(source, np.ndarray):
        img = to_pil(source)
    elif isinstance(source, Image.Image):
        _check_single_frame(source, described(source))
        img = source
    else:
        img = _open(source, max_pixels)
    _check_size(img.width, img.height, max_pixels, described(source))
    try:
        # Upright first (the Orientation tag lives in the metadata we are about to drop).
        img = ImageOps.exif_transpose(img)
    except (OSError, ValueError, SyntaxError):
        pass  # an unreadable EXIF block must not make the photo unreadable
    if convert_icc:
        img = _to_srgb(img)
    return Image.fromarray(to_rgb_array(img, background))


def to_pil(array: np.ndarray) -> Image.Image:
    """Build a fresh RGB (or L) PIL image from a numpy array.

    Accepts (H, W), (H, W, 1), (H, W, 3) and (H, W, 4) arrays. uint8 is used as is; bool maps to
    0/255; other integer types must already be in 0..255; float arrays are read as [0, 1]
    (clipped). Four channels are composited over white. (H, W) and (H, W, 1) give an ``L``
    image, everything else ``RGB``.
    """
    arr = np.asarray(array)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError(f"expected an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array, got {arr.shape}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif np.issubdtype(arr.dtype, np.floating):
        arr = np.clip(np.rint(np.nan_to_num(arr) * 255.0), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"integer array of dtype {arr.dtype} has values outside 0..255")
        arr = arr.astype(np.uint8)
    if arr.ndim == 3 and arr.shape[2] == 4:
        arr = _composite(arr, (255, 255, 255))
    arr = np.ascontiguousarray(arr)
    return Image.fromarray(arr)  # uint8 (H, W) → L, (H, W, 3) → RGB


def strip_metadata(img: Image.Image) -> Image.Image:
    """A fresh image with the same mode, size and pixels and nothing else.

    Everything in ``img.info`` (EXIF, GPS, XMP, ICC profile, comments, a palette image's
    transparency entry) is dropped; a palette image keeps its palette.
    """
    out = Image.frombytes(img.mode, img.size, img.tobytes())
    if img.mode in ("P", "PA"):
        palette = img.getpalette()
        if palette is not None:
            out.putpalette(palette)
    return out


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """An RGB PIL image → float32 tensor (3, H, W) in [-1, 1]."""
    arr = to_rgb_array(img)
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1))).float()
    return t / 127.5 - 1.0


def tensor_to_uint8(tensor: torch.Tensor) -> torch.Tensor:
    """Tensor in [-1, 1] → uint8 in 0..255 (clipped, rounded half to even), on its device."""
    return ((tensor.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """A (3, H, W) or (1, 3, H, W) tensor in [-1, 1] → fresh RGB PIL image (values clipped)."""
    t = tensor.detach().to("cpu", torch.float32)
    if t.dim() == 4:
        if t.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
        t = t[0]
    if t.dim() != 3 or t.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) tensor, got shape {tuple(tensor.shape)}")
    arr = tensor_to_uint8(t).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(arr))


def photo_tensor(image: Image.Image | np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """A photo (as :func:`as_rgb_array` takes it) → (3, H, W) uint8 tensor on ``device``: one
    uint8 copy to the device, the channel move done there."""
    arr = np.ascontiguousarray(as_rgb_array(image))
    if not arr.flags.writeable:  # torch wants writable memory to share; a read-only view is copied
        arr = arr.copy()
    return torch.from_numpy(arr).to(device).permute(2, 0, 1)


def to_host_once(tensors: "list[torch.Tensor] | tuple[torch.Tensor, ...]") -> list[torch.Tensor]:
    """Tensors of one dtype on one device → the same tensors on the CPU, in a single copy.

    They are gathered into one flat buffer on their device, copied once (one transfer instead
    of one per tensor), and split again; the results are views of that host buffer.
    """
    tensors = list(tensors)
    if not tensors:
        return []
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) != 1:
        raise ValueError(f"to_host_once takes tensors of one dtype, got {sorted(map(str, dtypes))}")
    host = torch.cat([t.reshape(-1) for t in tensors]).cpu()
    out, start = [], 0
    for t in tensors:
        out.append(host[start:start + t.numel()].view(t.shape))
        start += t.numel()
    return out
