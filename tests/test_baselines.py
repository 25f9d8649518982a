"""baselines.py: blur / pixelate / solid mask change the face region only."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lreorg_hub.image.baselines import BASELINES
from lreorg_hub.image.baselines import Blur, Pixelate, SolidMask, face_region_mask, get_baseline
from lreorg_hub.image.faces import FaceDetector


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return data.astronaut()


@pytest.fixture(scope="module")
def faces(astronaut):
    found = FaceDetector().detect(astronaut)
    assert len(found) == 1
    return found


ALL = [Blur(), Pixelate(), SolidMask(), Blur(0.05, shape="quad"), Pixelate(0.2, shape="quad", margin=0.1),
       SolidMask(0.5, color=(255, 0, 0), margin=0.2)]


@pytest.mark.parametrize("baseline", ALL, ids=repr)
def test_only_the_face_region_changes(astronaut, faces, baseline):
    before = astronaut.copy()
    out = baseline(astronaut, faces)
    np.testing.assert_array_equal(astronaut, before)  # input untouched
    assert isinstance(out, Image.Image) and out.mode == "RGB" and out.info == {}
    out = np.asarray(out)
    region = face_region_mask((512, 512), faces[0], baseline.shape, baseline.margin)
    assert region.sum() > 5_000
    np.testing.assert_array_equal(out[~region], astronaut[~region])  # bit-identical elsewhere
    changed = (out != astronaut).any(axis=-1)
    assert changed[region].mean() > 0.5  # most of the face changes
    assert np.abs(out.astype(int) - astronaut)[region].mean() > 10


def test_strength_zero_is_identity_and_accepts_pil(astronaut, faces):
    for cls in BASELINES.values():
        out = cls(strength=0.0)(Image.fromarray(astronaut), faces)
        np.testing.assert_array_equal(np.asarray(out), astronaut)


@pytest.mark.parametrize("cls", list(BASELINES.values()))
@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), "strong"])
def test_invalid_strength_rejected(cls, bad):
    with pytest.raises(ValueError, match="strength"):
        cls(strength=bad)


def test_other_invalid_settings():
    with pytest.raises(ValueError, match="<= 1"):
        SolidMask(strength=1.5)
    with pytest.raises(ValueError, match="shape"):
        Blur(shape="circle")
    with pytest.raises(ValueError, match="margin"):
        Pixelate(margin=-1)
    with pytest.raises(ValueError, match="color"):
        SolidMask(color=(0, 0, 300))
    with pytest.raises(ValueError, match="unknown baseline"):
        get_baseline("swirl")
    with pytest.raises(ValueError, match="Face objects"):
        Blur(shape="quad")(np.zeros((10, 10, 3), np.uint8), [(1, 1, 5, 5)])


def test_strength_orders_the_effect(astronaut, faces):
    region = face_region_mask((512, 512), faces[0])
    errs = [np.abs(np.asarray(Blur(s)(astronaut, faces)).astype(int) - astronaut)[region].mean()
            for s in (0.01, 0.05, 0.2)]
    assert errs[0] < errs[1] < errs[2]


def test_solid_mask_and_pixelate_values(astronaut):
    box = (10.0, 20.0, 50.0, 60.0)  # plain boxes are accepted too
    out = np.asarray(SolidMask(color=(1, 2, 3))(astronaut, [box]))
    region = face_region_mask((512, 512), box)
    assert region.sum() == 40 * 40
    assert (out[region] == (1, 2, 3)).all()
    pix = np.asarray(Pixelate(strength=0.25)(astronaut, [box]))  # 10-px blocks, 4×4 of them
    block = pix[20:30, 10:20]
    assert (block == block[0, 0]).all()
    np.testing.assert_allclose(block[0, 0], astronaut[20:30, 10:20].reshape(-1, 3).mean(0), atol=0.5)
    assert len(np.unique(pix[20:60, 10:50].reshape(-1, 3), axis=0)) <= 16


def test_get_baseline_by_name():
    b = get_baseline("Pixelate", strength=0.3)
    assert isinstance(b, Pixelate) and b.strength == 0.3 and b.name == "pixelate"
    assert get_baseline("mask").strength == 1.0
