"""End to end on real photos (scikit-image), with a tiny backbone and bundle built by the real
classes; nothing is mocked."""

import io

import torch
from dataclasses import asdict

import numpy as np
import pytest
from PIL import Image
from skimage import data

from lreorg_hub.backbones import BackboneSource
from lreorg_hub.image.faces import FaceDetector, paste_mask
from lreorg_hub.bundle import DEFAULT_BACKBONE
from lreorg_hub.pipeline import LReOrgPipeline
from lreorg_hub.pipeline import NoFaceError, ProtectOptions


def outside_and_inside(photo, face_transform, feather=0.1):
    mask = paste_mask(photo.size, face_transform, feather)
    return mask == 0, mask == 1


@pytest.fixture(scope="module")
def astronaut_face(astronaut):
    return FaceDetector(min_face_size=12, output_size=64).detect(astronaut)[0]  # as the pipeline


def test_photo_goes_through_every_stage(pipeline, astronaut, astronaut_face):
    result = pipeline(astronaut, seed=0, samples=3)
    assert result.image.size == astronaut.size and result.image.mode == "RGB"
    assert list(result.timings) == ["load", "detect", "align", "encode", "reorganize",
                                    "generate", "paste"]
    assert len(result.images) == 3 and result.anonymized_image.size == astronaut.size
    (face,) = result.faces
    assert face.aligned.size == (64, 64) and face.recovered.size == (64, 64)
    assert len(face.samples) == 3 and face.anonymized is not None
    assert np.allclose(face.box, astronaut_face.box)
    outside, inside = outside_and_inside(astronaut, astronaut_face.transform)
    before, after = np.asarray(astronaut), np.asarray(result.image)
    assert np.array_equal(before[outside], after[outside])        # the rest is untouched
    assert np.abs(before[inside].astype(int) - after[inside]).mean() > 20  # the face changed
    assert face.detection.score > 0.9 and face.transform.size == 64 and face.index == 0
    rec = result.record
    assert rec.method == "lreorg" and (rec.identity, rec.mechanism) == ("gia", "window")
    assert rec.anonymize == ["identity"]
    assert rec.recover == ["gender", "age", "expression", "makeup"]
    assert rec.seed == 0 and (rec.faces, rec.faces_found, rec.faces_covered) == (1, 1, {})
    # every sample's photo is the paste of that sample's crop, nothing else changes
    for image in result.images[1:]:
        assert np.array_equal(np.asarray(image)[outside], before[outside])
    assert not np.array_equal(np.asarray(result.images[1]), after)


def test_same_seed_reproduces_and_seeds_differ(pipeline, astronaut):
    a = pipeline(astronaut, seed=5, samples=2)
    b = pipeline(astronaut, seed=5, samples=2)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert all(np.array_equal(np.asarray(x), np.asarray(y))
               for x, y in zip(a.faces[0].samples, b.faces[0].samples))
    c = pipeline(astronaut, seed=6, samples=2)
    assert not np.array_equal(np.asarray(a.faces[0].samples[0]),
                              np.asarray(c.faces[0].samples[0]))
    # diverse samples of one call differ from each other
    assert not np.array_equal(np.asarray(a.faces[0].samples[0]),
                              np.asarray(a.faces[0].samples[1]))


def test_no_face_is_a_readable_error(pipeline):
    with pytest.raises(NoFaceError, match="No face was found in this photo"):
        pipeline(Image.fromarray(data.coffee()), seed=0)


def test_face_selection(pipeline, astronaut):
    with pytest.raises(ValueError, match=r"face index 3 is out of range: 1 face\(s\) were "
                                         r"found, numbered 0..0"):
        pipeline(astronaut, faces=[3], seed=0)
    assert pipeline(astronaut, faces=[0], seed=0).record.faces == 1


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
    assert result.record.method == method and "no formal guarantee" in \
        result.record.guarantee
    assert result.record.seed is None and result.record.seed_source == "none"
    assert result.record.epsilon is None and result.record.extra["strength"] > 0
    before, after = np.asarray(astronaut), np.asarray(result.image)
    x0, y0, x1, y1 = (int(v) for v in astronaut_face.box)
    assert not np.array_equal(before[y0:y1, x0:x1], after[y0:y1, x0:x1])
    assert np.array_equal(before[:, x1 + 40:], after[:, x1 + 40:])
    assert result.faces[0].anonymized.size == (64, 64)


@pytest.mark.parametrize("method, options", [("laplace", {"seed": 0}), ("k-anonymity", {})])
def test_latent_baselines_run_through_the_same_interface(pipeline, astronaut, method, options):
    result = pipeline(astronaut, method=method, **options)
    assert result.record.method == method and result.record.identity == method
    assert result.record.mechanism is None


def test_bad_method_and_mechanism(pipeline, astronaut):
    with pytest.raises(ValueError, match="method must be one of lreorg, style-mix, laplace, "
                                         "k-anonymity, blur, pixelate, mask"):
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
              *result.faces[0].samples]
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
    from lreorg_hub.bundle import LReOrg

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


# -- one interface for every method, and the style-mix-only pipeline --------------------------
@pytest.fixture(scope="module")
def style_mix(tiny_style_mix):
    return tiny_style_mix


@pytest.fixture(scope="module")
def style_mix_pipeline(tiny_backbone, style_mix):
    return LReOrgPipeline(encoder=tiny_backbone.encoder, generator=tiny_backbone.generator,
                          latent_avg=tiny_backbone.latent_avg, style_mix=style_mix,
                          device="cpu")


def test_available_methods_follow_what_is_loaded(pipeline, style_mix_pipeline, photo_bundle,
                                                 tiny_backbone, style_mix):
    assert pipeline.available_methods() == ["lreorg", "laplace", "k-anonymity", "blur",
                                            "pixelate", "mask"]
    assert style_mix_pipeline.available_methods() == ["style-mix", "blur", "pixelate", "mask"]
    assert style_mix_pipeline.default_method == "style-mix"
    assert LReOrgPipeline(device="cpu").available_methods() == ["blur", "pixelate", "mask"]
    both = LReOrgPipeline(photo_bundle, tiny_backbone.encoder, tiny_backbone.generator,
                          tiny_backbone.latent_avg, style_mix=style_mix, device="cpu")
    assert both.available_methods() == ["lreorg", "style-mix", "laplace", "k-anonymity",
                                        "blur", "pixelate", "mask"]
    with pytest.raises(ValueError, match="method 'lreorg' needs an LReOrg bundle and a backbone"
                                         ".*this pipeline can run: style-mix, blur"):
        style_mix_pipeline.check(ProtectOptions(method="lreorg"))
    with pytest.raises(ValueError, match="choose a method: .* only blur, pixelate, mask"):
        LReOrgPipeline(device="cpu").check()


def test_style_mix_runs_through_the_same_call(style_mix_pipeline, astronaut, astronaut_face):
    result = style_mix_pipeline(astronaut, method="style-mix", seed=3, samples=2, epsilon=2.0)
    assert list(result.timings) == ["load", "detect", "align", "encode", "style-mix",
                                    "generate", "paste"]
    rec = result.record
    assert rec.method == "style-mix" and rec.identity == "style-mix"
    assert rec.method_label == "style-mix (training-free baseline)"
    assert "Training-free baseline (style-mix)" in rec.guarantee
    assert rec.anonymize == ["identity"] and rec.recover == []
    assert rec.extra["style_rows"] == [2, 4] and rec.samples == 2
    assert rec.epsilon == 2.0 and rec.mechanism == "window"
    assert rec.epsilon_total == 4.0 and rec.seed == 3 and rec.warnings
    assert rec.describe().startswith("Method: style-mix (training-free baseline).")
    assert "Identity anonymized by style-mix (training-free baseline: W+ rows [2, 4)" in \
        rec.describe() and "the group sampler (GIA" not in rec.describe()
    assert "rows [2, 4)" in rec.scope
    face = result.faces[0]
    assert len(face.samples) == 2 and face.anonymized is face.recovered
    outside, inside = outside_and_inside(astronaut, astronaut_face.transform)
    before, after = np.asarray(astronaut), np.asarray(result.image)
    assert np.array_equal(before[outside], after[outside])
    again = style_mix_pipeline(astronaut, method="style-mix", seed=3, samples=2, epsilon=2.0)
    assert np.array_equal(np.asarray(again.image), after)            # same seed, same photo
    # the default method of a style-mix-only pipeline is style-mix; OS-entropy seeds stay secret
    secret = style_mix_pipeline(astronaut).record
    assert secret.method == "style-mix"
    assert secret.seed is None and secret.seed_source == "os-entropy"


def test_style_mix_changes_only_the_chosen_rows_of_the_code(style_mix_pipeline, style_mix,
                                                            astronaut_face):
    from lreorg_hub.pipeline.options import ProtectOptions

    codes = style_mix_pipeline.encode([astronaut_face.aligned])
    runner = style_mix_pipeline.methods["style-mix"]
    opts = runner.check(ProtectOptions(seed=1, style_rows=(1, 3)))
    out = runner.protect_codes(codes, opts)
    assert out.recovered.shape == (1, 1, 10, 32) and out.anonymized is None
    assert torch.equal(out.recovered[0, :, :1], codes[:, :1])
    assert torch.equal(out.recovered[0, :, 3:], codes[:, 3:])
    assert out.record.extra["style_rows"] == [1, 3]


def test_keywords_the_loaded_weights_serve(pipeline, style_mix_pipeline, tiny_backbone):
    from lreorg_hub.bundle import LReOrg

    support = pipeline.keywords()
    assert support.anonymize[0] == "identity" and "gender" in support.anonymize
    assert "makeup" in support.recover and not support.unavailable
    sm = style_mix_pipeline.keywords()
    assert sm.anonymize == ("identity",) and sm.recover == ()
    assert "no CDFNet" in sm.unavailable["gender"]
    assert pipeline.keywords("blur").anonymize == ()
    # an unfitted bundle: every anonymizer is named by keyword, before any photo
    rows = tiny_backbone.generator.n_latent
    unfitted = LReOrg(keywords=["identity", "gender"], num_groups=8, num_members=64,
                      cdfnet=dict(latent_dim=32, num_rows=rows, cond_dim=16, num_blocks=2,
                                  hidden_dim=32, dense_growth=8, dense_layers=2))
    pipe = LReOrgPipeline(unfitted, tiny_backbone.encoder, tiny_backbone.generator,
                          tiny_backbone.latent_avg, device="cpu")
    support = pipe.keywords()
    assert support.anonymize == () and support.recover == ("identity", "gender")
    assert "GIA groups) is not fitted" in support.unavailable["identity"]
    assert support.unavailable["age"] == "the bundle has no condition embedding for it"
    with pytest.raises(ValueError, match="cannot anonymize 'identity' with this bundle: the "
                                         "identity anonymizer .* is not fitted"):
        pipe.check(pipe_options(method="lreorg"))
    with pytest.raises(ValueError, match="cannot anonymize 'gender' with this bundle: the "
                                         "'gender' attribute anonymizer"):
        pipe.check(pipe_options(method="laplace", anonymize="identity,gender"))
    with pytest.raises(ValueError, match="unknown keyword 'age'; valid keywords: identity, "
                                         "gender"):
        pipe.check(pipe_options(method="lreorg", recover="age"))


def pipe_options(**kwargs):
    from lreorg_hub.pipeline.options import ProtectOptions

    return ProtectOptions(**kwargs)


def test_every_option_is_checked_before_the_photo_is_read(pipeline, tmp_path):
    """A photo that does not exist is never reached: the options fail first."""
    missing = tmp_path / "never-read.png"
    for kwargs, message in [
        (dict(epsilon=-1), "epsilon must be >= 0"),
        (dict(samples=1000), r"samples must be in 1..16"),
        (dict(rank_window=(2, 9)), r"rank_window \(a=2, b=9\) must lie within 1..8"),
        (dict(method="blur", strength=1e9), r"strength for blur must be a number in \(0, 1\]"),
        (dict(method="pixelate", strength=1000),
         r"strength for pixelate must be a number in \(0, 1\]"),
        (dict(method="blur", epsilon=1.0), "epsilon does not apply to method 'blur'"),
        (dict(method="blur", aligned=True), "works on whole photos, not on aligned crops"),
        (dict(seed=-3), r"seed must be in 0..18446744073709551615"),
        (dict(faces=[-1]), "face indices count from 0"),
        (dict(style_rows=(1, 2)), "style_rows does not apply to method 'lreorg'"),
        (dict(method="style-mix"), "method 'style-mix' needs a backbone"),
    ]:
        with pytest.raises(ValueError, match=message):
            pipeline(missing, **kwargs)


def test_options_object_and_separate_arguments_are_one_or_the_other(pipeline, astronaut):
    from lreorg_hub.pipeline.options import ProtectOptions

    with pytest.raises(ValueError, match="pass either options= or the separate option"):
        pipeline(astronaut, options=ProtectOptions(seed=1), seed=1)
    a = pipeline(astronaut, options=ProtectOptions(seed=9, recover=""))
    b = pipeline(astronaut, seed=9, recover="")
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.record.recover == []


def test_pipeline_settings_are_checked(tiny_backbone):
    kwargs = dict(encoder=tiny_backbone.encoder, generator=tiny_backbone.generator,
                  latent_avg=tiny_backbone.latent_avg)
    for bad, message in [
        (dict(output_size=100), "output size must be a power of two >= 4"),
        (dict(output_size=128), "output size 128 is larger than the generator's 64 px"),
        (dict(device="cuda:7" if not torch.cuda.is_available() else "tpu"),
         "device"),
        (dict(batch_size=0), "batch_size must be an integer in 1..256"),
        (dict(feather=3), r"feather must be a number in \[0, 0.5\]"),
        (dict(min_face_size=0), "min_face_size must be an integer"),
    ]:
        with pytest.raises(ValueError, match=message):
            LReOrgPipeline(**kwargs, **bad)
    with pytest.raises(ValueError, match="needs both the encoder and the generator"):
        LReOrgPipeline(generator=tiny_backbone.generator)


@pytest.fixture(scope="module")
def crowd(astronaut):
    """The astronaut with a far smaller copy of her head pasted in a corner: a 15 px face the
    detector finds but no generator can regenerate faithfully."""
    (face,) = FaceDetector(min_face_size=12).locate(astronaut)
    x0, y0, x1, y1 = (int(v) for v in face.box)
    head = astronaut.crop((x0 - 40, y0 - 40, x1 + 40, y1 + 60))
    photo = astronaut.copy()
    photo.paste(head.resize((32, round(32 * head.height / head.width)), Image.LANCZOS),
                (420, 400))
    return photo, (420, 400, 452, 440)


@pytest.mark.parametrize("rule", ["blur", "mask", "keep"])
def test_small_faces_are_covered_and_counted(pipeline, crowd, rule):
    photo, (x0, y0, x1, y1) = crowd
    result = pipeline(photo, seed=0, samples=2, small_faces=rule)
    rec = result.record
    assert (rec.faces, rec.faces_found, rec.faces_covered) == (1, 2, {rule: 1})
    assert result.diagnostics["covered"][0]["rule"] == rule
    assert "too small to regenerate" in rec.describe()
    before = np.asarray(photo)[y0:y1, x0:x1].astype(int)
    for image in [*result.images, result.anonymized_image]:  # every output, every sample
        after = np.asarray(image)[y0:y1, x0:x1].astype(int)
        if rule == "keep":
            assert np.array_equal(after, before)
        elif rule == "mask":
            assert (after == 0).all(axis=-1).mean() > 0.5       # an opaque black box
        else:
            assert np.abs(after - before).mean() > 8             # blurred beyond recognition


def test_faces_below_the_regeneration_size_are_covered_not_refused(pipeline, astronaut):
    """A pipeline that regenerates only faces of 100 px or more still protects the 85 px
    astronaut: covered by the fallback, with nothing to regenerate (no error, no draw)."""
    strict = LReOrgPipeline(pipeline.model, pipeline.encoder, pipeline.generator,
                            pipeline.latent_avg, device="cpu", min_face_size=100)
    result = strict(astronaut, seed=1)
    assert (result.record.faces, result.record.faces_covered) == (0, {"blur": 1})
    assert result.faces == [] and len(result.images) == 1
    assert not np.array_equal(np.asarray(result.image), np.asarray(astronaut))
    batch = strict.run_batch([astronaut, astronaut], seeds=[1, 2])
    assert all(r.record.faces_covered == {"blur": 1} for r in batch)


def test_image_baselines_cover_small_faces_themselves(pipeline, crowd):
    photo, _ = crowd
    result = pipeline(photo, method="pixelate")
    assert (result.record.faces, result.record.faces_covered) == (2, {})


def test_too_many_faces_is_a_clear_error(pipeline, crowd):
    photo, _ = crowd
    few = LReOrgPipeline(pipeline.model, pipeline.encoder, pipeline.generator,
                         pipeline.latent_avg, device="cpu", min_face_size=12, max_faces=1)
    with pytest.raises(ValueError, match="this photo has 2 faces to regenerate, more than the "
                                         "limit of 1 per photo"):
        few(photo, seed=0)
