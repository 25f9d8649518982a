"""imaging.py: loading any mode as 8-bit RGB, EXIF orientation, size limits, no metadata out."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from lreorg_hub.image.io import (ImageLoadError, ImageTooLargeError, as_rgb_array, load_image, pil_to_tensor, strip_metadata, tensor_to_pil, to_pil)


def encode(img: Image.Image, fmt: str = "PNG", **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def gradient_rgb(w: int = 16, h: int = 12) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 15, yy * 20, (xx + yy) * 5], axis=-1).astype(np.uint8)


def assert_fresh_rgb(img: Image.Image, size: tuple[int, int]) -> np.ndarray:
    assert isinstance(img, Image.Image)
    assert img.mode == "RGB" and img.size == size
    assert img.info == {}
    return np.asarray(img)


# --- mode conversion ----------------------------------------------------------------------------


def test_rgb_roundtrip_is_exact_and_fresh():
    arr = gradient_rgb()
    src = Image.fromarray(arr)
    out = load_image(src)
    assert out is not src
    np.testing.assert_array_equal(assert_fresh_rgb(out, src.size), arr)


@pytest.mark.parametrize("via_bytes", [False, True])
def test_grayscale_modes(via_bytes):
    gray = (np.arange(12 * 16).reshape(12, 16) % 256).astype(np.uint8)
    img = Image.fromarray(gray)  # L
    out = load_image(encode(img) if via_bytes else img)
    np.testing.assert_array_equal(assert_fresh_rgb(out, (16, 12)), np.repeat(gray[..., None], 3, 2))
    bw = img.point(lambda v: 255 if v >= 128 else 0).convert("1")
    out = np.asarray(load_image(encode(bw) if via_bytes else bw))
    assert set(np.unique(out)) <= {0, 255}
    np.testing.assert_array_equal(out[..., 0], np.where(gray >= 128, 255, 0))


def test_la_composited_on_white():
    la = np.zeros((4, 4, 2), np.uint8)
    la[..., 0] = 40
    la[0, 0, 1] = 255  # opaque
    la[0, 1, 1] = 0  # fully transparent → background
    la[0, 2, 1] = 128  # half
    out = np.asarray(load_image(Image.fromarray(la, "LA")))
    assert tuple(out[0, 0]) == (40, 40, 40)
    assert tuple(out[0, 1]) == (255, 255, 255)
    assert abs(int(out[0, 2, 0]) - round(40 * 128 / 255 + 255 * 127 / 255)) <= 1


def test_rgba_composited_on_background():
    rgba = np.zeros((2, 3, 4), np.uint8)
    rgba[..., 0] = 255  # red under everything
    rgba[0, 0, 3] = 255
    rgba[0, 1, 3] = 0
    out = np.asarray(load_image(encode(Image.fromarray(rgba, "RGBA"))))
    assert tuple(out[0, 0]) == (255, 0, 0)
    assert tuple(out[0, 1]) == (255, 255, 255)  # hidden red not revealed
    out = np.asarray(load_image(Image.fromarray(rgba, "RGBA"), background=(0, 0, 0)))
    assert tuple(out[0, 1]) == (0, 0, 0)


def test_palette_with_and_without_transparency():
    arr = gradient_rgb()
    p = Image.fromarray(arr).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    expect = np.asarray(p.convert("RGB"))
    np.testing.assert_array_equal(assert_fresh_rgb(load_image(encode(p)), p.size), expect)
    # index 0 transparent → those pixels become white
    p.info["transparency"] = 0
    out = np.asarray(load_image(encode(p, transparency=0)))
    idx = np.asarray(p)
    assert (out[idx == 0] == 255).all()
    np.testing.assert_array_equal(out[idx != 0], expect[idx != 0])


def test_cmyk_to_rgb():
    cmyk = Image.new("CMYK", (5, 4), (0, 255, 255, 0))  # pure red in CMYK
    for src in (cmyk, encode(cmyk, "TIFF"), encode(cmyk, "JPEG", quality=100)):
        out = assert_fresh_rgb(load_image(src), (5, 4))
        assert np.abs(out.astype(int) - [255, 0, 0]).max() <= 3


def test_16bit_and_32bit_integer_scaled_to_8bit():
    vals = np.array([[0, 257 * 100, 65535, 128]], dtype=np.uint16)
    img16 = Image.fromarray(vals)
    assert img16.mode == "I;16"
    for src in (img16, encode(img16, "PNG"), encode(img16, "TIFF")):
        out = assert_fresh_rgb(load_image(src), (4, 1))
        np.testing.assert_array_equal(out[0, :, 0], [0, 100, 255, 0])
        assert (out[..., 0] == out[..., 2]).all()
    img32 = Image.fromarray(vals.astype(np.int32))
    assert img32.mode == "I"
    np.testing.assert_array_equal(np.asarray(load_image(img32))[0, :, 1], [0, 100, 255, 0])


def test_float_mode_read_as_unit_range():
    img = Image.fromarray(np.array([[0.0, 0.5, 1.0, 2.0]], np.float32))
    assert img.mode == "F"
    np.testing.assert_array_equal(np.asarray(load_image(img))[0, :, 0], [0, 128, 255, 255])


def test_icc_profile_applied_then_dropped():
    arr = gradient_rgb()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    out = load_image(encode(Image.fromarray(arr), "PNG", icc_profile=srgb))
    assert "icc_profile" not in out.info
    assert np.abs(np.asarray(out).astype(int) - arr).max() <= 2  # sRGB → sRGB ≈ identity


# --- EXIF -------------------------------------------------------------------------------------


def test_exif_orientation_applied():
    stored = np.zeros((2, 3, 3), np.uint8)  # H=2, W=3
    stored[0, 0] = (255, 0, 0)  # stored top-left is red
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: display rotated 90° clockwise
    data = encode(Image.fromarray(stored), "PNG", exif=exif)
    assert Image.open(io.BytesIO(data)).getexif()[0x0112] == 6
    out = assert_fresh_rgb(load_image(data), (2, 3))  # width and height swapped
    assert tuple(out[0, -1]) == (255, 0, 0)  # top-left turned to top-right
    assert out[..., 0].sum() == 255


def exif_with_camera_and_gps() -> Image.Exif:
    exif = Image.Exif()
    exif[0x010F] = "SpyCamCorp"  # Make
    exif[0x0110] = "Model X"  # Model
    gps = {1: "N", 2: (52.0, 31.0, 12.5), 3: "E", 4: (13.0, 24.0, 0.0)}
    exif[0x8825] = gps  # GPS IFD
    return exif


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_saved_output_carries_no_exif(fmt):
    src = encode(Image.fromarray(gradient_rgb(64, 48)), "JPEG", exif=exif_with_camera_and_gps(), quality=95)
    opened = Image.open(io.BytesIO(src))
    assert opened.getexif()[0x010F] == "SpyCamCorp" and opened.getexif().get_ifd(0x8825)  # input has it
    out = load_image(src)
    saved = encode(out, fmt)
    again = Image.open(io.BytesIO(saved))
    assert "exif" not in again.info
    assert len(again.getexif()) == 0
    assert b"SpyCam" not in saved and b"Exif" not in saved


def test_strip_metadata_keeps_pixels_and_palette():
    p = Image.fromarray(gradient_rgb()).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    with_meta = Image.open(io.BytesIO(encode(p, "PNG", exif=exif_with_camera_and_gps())))
    assert with_meta.getexif()
    clean = strip_metadata(with_meta)
    assert clean is not with_meta and clean.mode == "P" and clean.info == {}
    assert len(clean.getexif()) == 0
    np.testing.assert_array_equal(np.asarray(clean.convert("RGB")), np.asarray(with_meta.convert("RGB")))


# --- limits and errors ----------------------------------------------------------------------------


def test_pixel_limit():
    img = Image.new("RGB", (100, 100))
    assert load_image(encode(img), max_pixels=10_000).size == (100, 100)
    with pytest.raises(ValueError, match="10,000 pixels"):
        load_image(encode(img), max_pixels=9_999)
    with pytest.raises(ImageTooLargeError):
        load_image(img, max_pixels=9_999)  # PIL input checked too
    assert load_image(img, max_pixels=None).size == (100, 100)


@pytest.mark.parametrize("pillow_limit", [6_000, 1_000])  # warning band, then error band
def test_pillow_decompression_bomb_guard(monkeypatch, pillow_limit):
    data = encode(Image.new("RGB", (100, 100)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", pillow_limit)
    with pytest.raises(ImageTooLargeError, match="decompression bomb"):
        load_image(data, max_pixels=None)


def test_unreadable_inputs_name_the_file(tmp_path):
    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"this is not an image")
    with pytest.raises(ImageLoadError, match="holiday.jpg"):
        load_image(bad)
    with pytest.raises(ImageLoadError, match="missing.png.*no such file"):
        load_image(tmp_path / "missing.png")
    truncated = tmp_path / "cut.png"
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    full = encode(Image.fromarray(noise))
    truncated.write_bytes(full[: len(full) // 2])
    with pytest.raises(ValueError, match="cut.png"):
        load_image(str(truncated))
    with pytest.raises(ImageLoadError, match="bytes in memory"):
        load_image(b"\x00\x01garbage")


def test_file_object_and_path_inputs(tmp_path):
    arr = gradient_rgb()
    path = tmp_path / "g.png"
    path.write_bytes(encode(Image.fromarray(arr)))
    np.testing.assert_array_equal(np.asarray(load_image(path)), arr)
    with open(path, "rb") as fh:
        np.testing.assert_array_equal(np.asarray(load_image(fh)), arr)


# --- array / tensor helpers -------------------------------------------------------------------------


def test_to_pil_variants():
    assert to_pil(np.zeros((3, 4), np.uint8)).mode == "L"
    assert to_pil(np.zeros((3, 4, 1), np.uint8)).mode == "L"
    np.testing.assert_array_equal(np.asarray(to_pil(np.array([[0.0, 0.5, 1.0]]))), [[0, 128, 255]])
    np.testing.assert_array_equal(np.asarray(to_pil(np.array([[True, False]]))), [[255, 0]])
    rgba = np.zeros((1, 1, 4), np.uint8)
    assert tuple(np.asarray(to_pil(rgba))[0, 0]) == (255, 255, 255)  # transparent → white
    with pytest.raises(ValueError):
        to_pil(np.zeros((2, 2, 2), np.uint8))
    with pytest.raises(ValueError):
        to_pil(np.array([[300]], np.int32))
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    assert as_rgb_array(gray).shape == (2, 3, 3)
    np.testing.assert_array_equal(np.asarray(load_image(gray))[..., 1], gray)


def test_tensor_roundtrip():
    arr = gradient_rgb()
    t = pil_to_tensor(Image.fromarray(arr))
    assert t.shape == (3, 12, 16) and t.dtype == torch.float32
    assert t.min() >= -1 and t.max() <= 1
    np.testing.assert_array_equal(np.asarray(tensor_to_pil(t)), arr)
    assert (np.asarray(tensor_to_pil(torch.full((1, 3, 2, 2), 3.0))) == 255).all()  # clipped
    with pytest.raises(ValueError):
        tensor_to_pil(torch.zeros(2, 3, 4, 4))


# -- inputs with more than one frame: refused (MPO phone photos: the primary image) ----------
def _frames(n=3, size=(24, 16)):
    from PIL import Image

    return [Image.new("RGB", size, (40 * i, 100, 200 - 40 * i)) for i in range(n)]


@pytest.mark.parametrize("fmt, kind", [("GIF", "an animated GIF"),
                                       ("TIFF", "a multi-page TIFF"),
                                       ("PNG", "an animated PNG")])
def test_multi_frame_files_are_refused_with_a_message(tmp_path, fmt, kind):
    frames = _frames()
    path = tmp_path / f"anim.{fmt.lower()}"
    frames[0].save(path, format=fmt, save_all=True, append_images=frames[1:])
    for source in (path, path.read_bytes()):
        with pytest.raises(ImageLoadError) as info:
            load_image(source)
        msg = str(info.value)
        assert f"has 3 frames ({kind})" in msg and "only single-frame images" in msg
    from PIL import Image

    with Image.open(path) as opened, pytest.raises(ImageLoadError, match="has 3 frames"):
        load_image(opened)                               # an open PIL image too


def test_single_frame_gif_still_loads(tmp_path):
    _frames(1)[0].save(tmp_path / "one.gif")
    assert load_image(tmp_path / "one.gif").size == (24, 16)


def test_mpo_phone_photo_uses_the_primary_image(tmp_path):
    frames = _frames(2)
    frames[0].save(tmp_path / "phone.mpo", format="MPO", save_all=True,
                   append_images=frames[1:], quality=95)
    with Image.open(tmp_path / "phone.mpo") as opened:
        assert (opened.format, opened.n_frames) == ("MPO", 2)
    out = load_image(tmp_path / "phone.mpo")
    expected = np.asarray(frames[0], dtype=np.int16)
    assert np.abs(np.asarray(out, dtype=np.int16) - expected).max() < 12   # JPEG-coded frame 0
