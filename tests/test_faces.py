"""faces.py: MTCNN detection on real photos, FFHQ alignment geometry, exact paste-back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from lreorg_hub.image.faces import (AlignTransform, Face, FaceDetector, align_face, ffhq_quad, paste_back, paste_back_all, paste_mask)

# Mean absolute error (gray levels) allowed where the mask is 1 when the unchanged aligned
# crop is pasted back: two resamplings blur fine texture (measured 2.8 on astronaut at 256).
PASTE_BACK_MAE = 4.0


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    return FaceDetector()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def astro_face(detector, astronaut) -> Face:
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    return faces[0]


# --- detection ------------------------------------------------------------------------------------


def test_astronaut_has_one_face(astro_face):
    f = astro_face
    assert f.score > 0.99
    x0, y0, x1, y1 = f.box
    assert 150 < x0 < x1 < 300 and 40 < y0 < y1 < 200  # the face is top-centre of the photo
    assert f.box.dtype == np.float64 and f.landmarks.shape == (5, 2)
    assert ((f.landmarks[:, 0] > x0) & (f.landmarks[:, 0] < x1)).all()
    assert isinstance(f.aligned, Image.Image) and f.aligned.mode == "RGB"
    assert f.aligned.size == (256, 256) and f.aligned.info == {}
    assert f.transform.size == 256


def test_camera_small_face_found_at_default_min_size(detector):
    faces = detector.detect(data.camera())  # grayscale (H, W) array is accepted
    assert len(faces) == 1
    assert 40 < faces[0].size < 100  # a small face (~55 px box)


def test_min_face_size_drops_smaller_faces():
    assert FaceDetector(min_face_size=100).detect(data.camera()) == []


@pytest.mark.parametrize("name", ["coffee", "chelsea"])
def test_no_face_gives_empty_list(detector, name):
    assert detector.detect(getattr(data, name)()) == []


def test_several_faces_sorted_left_to_right(detector, astronaut):
    crop = astronaut[0:300, 120:330]
    photo = np.ascontiguousarray(np.concatenate([crop, crop[:, ::-1]], axis=1))
    faces = detector.detect(Image.fromarray(photo))
    assert len(faces) == 2
    assert faces[0].box[0] < faces[1].box[0]
    out = np.asarray(paste_back_all(photo, faces, [f.aligned for f in faces]))
    union = np.maximum(paste_mask((420, 300), faces[0].transform), paste_mask((420, 300), faces[1].transform))
    np.testing.assert_array_equal(out[union == 0], photo[union == 0])


# --- alignment geometry ---------------------------------------------------------------------------


def test_transform_inverse_and_centre():
    lm = np.array([[110.0, 110], [146, 112], [128, 130], [112, 150], [144, 151]])
    quad, qsize = ffhq_quad(lm)
    t = AlignTransform(quad=quad, size=256)
    pts = np.random.default_rng(0).uniform(0, 256, (10, 2))
    np.testing.assert_allclose(t.to_aligned(t.to_photo(pts)), pts, atol=1e-9)
    # the quad centre c = eye_avg + 0.1·eye_to_mouth lands on the crop centre
    eye_avg = lm[:2].mean(0)
    c = eye_avg + 0.1 * (lm[3:].mean(0) - eye_avg)
    np.testing.assert_allclose(t.to_aligned(c), [127.5, 127.5], atol=1e-9)
    np.testing.assert_allclose(t.side, qsize)
    homog = t.matrix() @ np.array([3.0, 7.0, 1.0])
    np.testing.assert_allclose(homog[:2], t.to_photo(np.array([3.0, 7.0])))


def test_aligned_pixels_follow_the_documented_formula():
    """A photo whose red/green channels are x/y reads back as q(i, j) (PIL QUAD geometry)."""
    yy, xx = np.mgrid[0:256, 0:256]
    photo = np.stack([xx, yy, np.zeros_like(xx)], axis=-1).astype(np.uint8)
    lm = np.array([[110.0, 110], [146, 112], [128, 130], [112, 150], [144, 151]])
    aligned, t = align_face(photo, lm, output_size=128)  # quad inside the photo: no pad
    jj, ii = np.mgrid[0:128, 0:128]
    q = t.to_photo(np.stack([ii, jj], axis=-1))
    a = np.asarray(aligned).astype(float)
    assert np.abs(a[..., 0] - q[..., 0]).max() <= 1.0  # PIL's 8-bit bilinear truncates
    assert np.abs(a[..., 1] - q[..., 1]).max() <= 1.0


def test_landmarks_land_on_the_template(astro_face):
    s = 256
    al = astro_face.aligned_landmarks / s
    eyes, nose, mouth = al[:2], al[2], al[3:]
    # When 2·|eye_to_eye| sets the scale (frontal faces), the eyes sit at x = 3/8 and 5/8.
    np.testing.assert_allclose(eyes[:, 0], [0.375, 0.625], atol=0.01)
    assert abs(eyes[0, 1] - eyes[1, 1]) < 0.01  # rotation removed
    assert 0.44 < eyes[:, 1].mean() < 0.5
    assert abs(nose[0] - 0.5) < 0.03
    assert (mouth[:, 1] > 0.65).all() and (mouth[:, 1] < 0.78).all()


def test_aligned_crop_redetects_at_the_transformed_landmarks(detector, astro_face):
    found = detector.locate(astro_face.aligned)
    assert len(found) == 1
    err = np.abs(found[0].landmarks - astro_face.aligned_landmarks).max()
    assert err < 3.0  # pixels in the 256 crop (measured 1.5)


def test_output_size_is_configurable(astronaut, astro_face):
    aligned, t = align_face(astronaut, astro_face.landmarks, output_size=1024)
    assert aligned.size == (1024, 1024)
    np.testing.assert_allclose(t.quad, astro_face.transform.quad)
    small = (astro_face.aligned_landmarks + 0.5) * 4 - 0.5
    np.testing.assert_allclose(t.to_aligned(astro_face.landmarks), small, atol=1e-6)
    aligned_ss, _ = align_face(astronaut, astro_face.landmarks, output_size=256, transform_size=1024)
    diff = np.abs(np.asarray(aligned_ss).astype(int) - np.asarray(astro_face.aligned).astype(int))
    assert diff.mean() < 1.5  # supersampled variant: same content, other filter (measured 0.4)


def test_face_near_the_border_is_padded(astronaut, astro_face):
    shifted = np.ascontiguousarray(astronaut[100:, 150:])  # face now touches the top edge
    lm = astro_face.landmarks - [150, 100]
    aligned, t = align_face(shifted, lm)
    a = np.asarray(aligned)
    assert a.shape == (256, 256, 3)
    assert a[:10].mean() > 5  # reflected and blurred, not black
    no_pad, _ = align_face(shifted, lm, pad=False)
    assert np.asarray(no_pad)[:3].max() == 0  # outside the photo samples as black without padding


def test_degenerate_landmarks_rejected():
    with pytest.raises(ValueError, match="degenerate"):
        ffhq_quad(np.zeros((5, 2)))


# --- paste-back -----------------------------------------------------------------------------------


def test_paste_back_unchanged_crop(astronaut, astro_face):
    before = astronaut.copy()
    out = paste_back(astronaut, astro_face, astro_face.aligned, feather=0.1)
    np.testing.assert_array_equal(astronaut, before)  # input untouched
    assert isinstance(out, Image.Image) and out.info == {}
    out = np.asarray(out).astype(int)
    mask = paste_mask((512, 512), astro_face.transform, feather=0.1)
    assert 0.5 < mask.max() <= 1 and (mask == 1).sum() > 10_000
    np.testing.assert_array_equal(out[mask == 0], astronaut[mask == 0])  # bit-identical
    err = np.abs(out - astronaut)
    assert err[mask == 1].mean() < PASTE_BACK_MAE
    assert err[mask > 0].mean() < PASTE_BACK_MAE


def test_paste_back_geometry_is_exact():
    """A generated crop whose channels encode (i, j) comes back at the inverse transform."""
    photo = np.full((256, 256, 3), 7, np.uint8)
    lm = np.array([[110.0, 110], [146, 112], [128, 130], [112, 150], [144, 151]])
    _, t = align_face(photo, lm, output_size=128)
    g = 128
    jj, ii = np.mgrid[0:g, 0:g].astype(np.float32)
    # channel values in [-1, 1]: 255·(x + 1)/2 = 2·i → x = 4i/255 − 1
    gen = torch.from_numpy(np.stack([4 * ii / 255 - 1, 4 * jj / 255 - 1, np.zeros_like(ii)]))
    mask = paste_mask((256, 256), t, feather=0.1)
    ys, xs = np.nonzero(mask == 1)
    ij = t.to_aligned(np.stack([xs, ys], axis=-1).astype(float), size=g)
    # bilinear reproduces a linear ramp exactly (only uint8 rounding is left); bicubic
    # (torch's a = -0.75 kernel) nearly so
    for interpolation, tol in (("bilinear", 0.5 + 1e-3), ("bicubic", 0.75)):
        out = np.asarray(paste_back(photo, t, gen, feather=0.1, interpolation=interpolation)).astype(float)
        assert np.abs(out[ys, xs, 0] - 2 * ij[:, 0]).max() <= tol
        assert np.abs(out[ys, xs, 1] - 2 * ij[:, 1]).max() <= tol
    assert (out[mask == 0] == 7).all()


def test_paste_back_any_generated_size_and_hard_edge(astronaut, astro_face):
    gen = torch.zeros(1, 3, 1024, 1024)  # mid-gray face at the generator's resolution
    for feather in (0.0, 0.2):
        out = np.asarray(paste_back(Image.fromarray(astronaut), astro_face, gen, feather=feather))
        mask = paste_mask((512, 512), astro_face.transform, feather=feather)
        np.testing.assert_array_equal(out[mask == 0], astronaut[mask == 0])
        assert (np.abs(out[mask == 1].astype(int) - 128) <= 1).all()
        if feather == 0:
            assert set(np.unique(mask)) == {0.0, 1.0}
    with pytest.raises(ValueError):
        paste_back(astronaut, astro_face, gen, feather=-0.1)
    with pytest.raises(ValueError):
        paste_back(astronaut, astro_face, torch.zeros(3, 64, 32))


def test_paste_back_face_partly_outside_photo(astronaut, astro_face):
    shifted = np.ascontiguousarray(astronaut[100:, 150:])
    face = astro_face.transform
    t = AlignTransform(quad=face.quad - [150, 100], size=256)
    out = np.asarray(paste_back(shifted, t, np.zeros((256, 256, 3), np.uint8)))
    mask = paste_mask(shifted.shape[1::-1], t)
    assert out.shape == shifted.shape
    np.testing.assert_array_equal(out[mask == 0], shifted[mask == 0])
    assert (out[mask == 1] == 0).all()


@pytest.mark.parametrize("shape", [(1, 1, 3), (12, 12, 3), (19, 400, 3)])
def test_photo_smaller_than_min_face_size_has_no_face(detector, shape):
    assert detector.detect(np.zeros(shape, np.uint8)) == []


def test_large_face_goes_through_the_shrink_step(astronaut, astro_face):
    """A 4x upscaled photo (shrink factor 2 at S = 128) gives the same crop as the original."""
    big = np.asarray(Image.fromarray(astronaut).resize((2048, 2048), Image.Resampling.BICUBIC))
    lm_big = (astro_face.landmarks + 0.5) * 4 - 0.5  # same points in the big photo's pixel indices
    _, qsize = ffhq_quad(lm_big)
    assert int(qsize / 128 * 0.5) >= 2
    a_big, t_big = align_face(big, lm_big, output_size=128)
    a_small, t_small = align_face(astronaut, astro_face.landmarks, output_size=128)
    np.testing.assert_allclose(t_big.quad, (t_small.quad + 0.5) * 4 - 0.5, atol=1e-9)
    diff = np.abs(np.asarray(a_big).astype(int) - np.asarray(a_small).astype(int))
    assert diff.mean() < 3  # measured 1.7
