"""End to end on real photos (scikit-image), with a tiny backbone and bundle built by the real
classes; nothing is mocked."""

import io
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lreorg_hub.backbones import BackboneSource
from lreorg_hub.faces import FaceDetector, paste_mask
from lreorg_hub.model import DEFAULT_BACKBONE
from lreorg_hub.pipeline import LReOrgPipeline, NoFaceError


def outside_and_inside(photo, face_transform, feather=0.1):
    mask = paste_mask(photo.size, face_transform, feather)
    return mask == 0, mask == 1


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    return FaceDetector(output_size=64).detect(astronaut)[0]


def test_photo_goes_through_every_stage(pipeline, astronaut, astronaut_face):
    result = pipeline(astronaut, seed=0, samples=3)
    assert result.image.size == astronaut.size and result.image.mode == "RGB"
    assert list(result.timings) == ["load", "detect", "align", "encode", "reorganize",
                                    "generate", "paste"]
    (face,) = result.faces
    assert face.aligned.size == (64, 64) and face.recovered.size == (64, 64)
    assert len(face.diverse) == 3 and face.anonymized is not None
    assert np.allclose(face.box, astronaut_face.box)
    outside, inside = outside_and_inside(astronaut, astronaut_face.transform)
    before, after = np.asarray(astronaut), np.asarray(result.image)
    assert np.array_equal(before[outside], after[outside])        # the rest is untouched
    assert np.abs(before[inside].astype(int) - after[inside]).mean() > 20  # the face changed
    rec = result.record
    assert rec["method"] == "lreorg" and rec["mechanism"] == "window"
    assert rec["anonymize"] == ["identity"]
    assert rec["recover"] == ["gender", "age", "expression", "makeup"]
    assert rec["seed"] == 0 and rec["faces_processed"] == [0]


def test_same_seed_reproduces_and_seeds_differ(pipeline, astronaut):
    a = pipeline(astronaut, seed=5, samples=2)
    b = pipeline(astronaut, seed=5, samples=2)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(a.faces[0].diverse, b.faces[0].diverse))
    c = pipeline(astronaut, seed=6, samples=2)
    assert not np.array_equal(np.asarray(a.faces[0].diverse[0]),
                              np.asarray(c.faces[0].diverse[0]))
    # diverse samples of one call differ from each other
    assert not np.array_equal(np.asarray(a.faces[0].diverse[0]),
                              np.asarray(a.faces[0].diverse[1]))


def test_no_face_is_a_readable_error(pipeline):
    with pytest.raises(NoFaceError, match="No face was found in this photo"):
        pipeline(Image.fromarray(data.coffee()), seed=0)


def test_face_selection(pipeline, astronaut):
    with pytest.raises(ValueError, match=r"face index 3 is out of range: 1 face\(s\) were "
                                         r"found, numbered 0..0"):
        pipeline(astronaut, faces=[3], seed=0)
    assert pipeline(astronaut, faces=[0], seed=0).record["faces_processed"] == [0]


def test_aligned_input_skips_detection(pipeline, astronaut_face):
    crop = astronaut_face.aligned.resize((128, 128))
    result = pipeline(crop, aligned=True, seed=1)
    assert "detect" not in result.timings and result.image.size == (128, 128)
    assert result.faces[0].box is None
    with pytest.raises(ValueError, match="an aligned face crop must be square"):
        pipeline(crop.crop((0, 0, 128, 100)), aligned=True, seed=1)


@pytest.mark.parametrize("method", ["blur", "pixelate", "mask"])
def test_image_baselines_run_through_the_same_interface(pipeline, astronaut, astronaut_face,
                                                        method):
    result = pipeline(astronaut, method=method)
    assert result.record["method"] == method and "no formal guarantee" in \
        result.record["guarantee"]
    before, after = np.asarray(astronaut), np.asarray(result.image)
    x0, y0, x1, y1 = (int(v) for v in astronaut_face.box)
    assert not np.array_equal(before[y0:y1, x0:x1], after[y0:y1, x0:x1])
    assert np.array_equal(before[:, x1 + 40:], after[:, x1 + 40:])
    assert result.faces[0].anonymized.size == (64, 64)


@pytest.mark.parametrize("method", ["laplace", "k-anonymity"])
def test_latent_baselines_run_through_the_same_interface(pipeline, astronaut, method):
    result = pipeline(astronaut, method=method, seed=0)
    assert result.record["method"] == method and result.record["mechanism"] == method


def test_bad_method_and_mechanism(pipeline, astronaut):
    with pytest.raises(ValueError, match="method must be one of lreorg, laplace, k-anonymity, "
                                         "blur, pixelate, mask"):
        pipeline(astronaut, method="swirl")
    with pytest.raises(ValueError, match="mechanism must be 'window' or 'strict'"):
        pipeline(astronaut, mechanism="laplace")


def test_outputs_carry_no_metadata_from_the_upload(pipeline, astronaut):
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"           # Make
    exif[0x010E] = "Jane Doe at home"    # ImageDescription
    upload = io.BytesIO()
    astronaut.save(upload, format="JPEG", exif=exif.tobytes(), quality=95)
    result = pipeline(upload.getvalue(), seed=0)
    images = [result.image, result.faces[0].aligned, result.faces[0].recovered,
              *result.faces[0].diverse]
    for img in images:
        assert not img.info and not img.getexif()
        for fmt in ("JPEG", "WEBP"):
            out = io.BytesIO()
            img.save(out, format=fmt)
            raw = out.getvalue()
            assert b"SecretCam" not in raw and b"Jane Doe" not in raw
            assert not Image.open(io.BytesIO(raw)).getexif()


def test_backbone_that_does_not_fit_the_bundle_is_refused(tiny_backbone):
    from conftest import TINY_CDFNET
    from lreorg_hub.model import LReOrg

    with pytest.raises(ValueError, match=r"backbone does not match the bundle, which works on "
                                         r"\(4, 16\) W\+ codes: generator gives \(10, 32\)"):
        LReOrgPipeline(LReOrg(cdfnet=TINY_CDFNET), tiny_backbone.encoder,
                       tiny_backbone.generator, tiny_backbone.latent_avg, device="cpu")


def test_from_pretrained_loads_bundle_and_backbone_files(photo_bundle, tiny_backbone, tmp_path,
                                                         astronaut, pipeline):
    from conftest import save_as_e4e_checkpoint

    photo_bundle.save_pretrained(tmp_path / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, tmp_path / "tiny_e4e.pt")
    loaded = LReOrgPipeline.from_pretrained(tmp_path / "bundle", backbone=tmp_path / "tiny_e4e.pt",
                                            device="cpu")
    a, b = loaded(astronaut, seed=2), pipeline(astronaut, seed=2)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_default_backbone_reference_matches_the_loader():
    assert DEFAULT_BACKBONE == asdict(BackboneSource())


def test_skipping_the_anonymized_crops_keeps_the_photo(pipeline, astronaut):
    full = pipeline(astronaut, seed=4)
    lean = pipeline(astronaut, seed=4, anonymized_crops=False)
    assert np.array_equal(np.asarray(full.image), np.asarray(lean.image))
    assert lean.faces[0].anonymized is None and full.faces[0].anonymized is not None
