"""The batch API (many photos through shared encoder / generator passes) and the pipeline in
half precision."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from lreorg_hub.pipeline import LReOrgPipeline
from lreorg_hub.pipeline import NoFaceError


# These tests compare outputs, not speed; one thread is faster on a busy 2-core machine.
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def pixels(img):
    return np.asarray(img, dtype=int)


def test_run_batch_equals_one_call_per_photo_in_order(pipeline, astronaut):
    photos = [astronaut, Image.fromarray(data.coffee()), b"not an image",
              astronaut.transpose(Image.FLIP_LEFT_RIGHT)]
    results = pipeline.run_batch(photos, seeds=[3, 4, 5, 6], batch_size=3, samples=2)
    assert len(results) == 4
    assert isinstance(results[1], NoFaceError) and isinstance(results[2], ValueError)
    for i in (0, 3):
        single = pipeline(photos[i], seed=[3, 4, 5, 6][i], samples=2, anonymized_crops=False)
        assert np.abs(pixels(results[i].image) - pixels(single.image)).max() <= 1
        assert len(results[i].faces[0].samples) == 2
        assert results[i].record.faces == 1
        assert results[i].record.samples == 2
    assert {"encode", "reorganize", "generate", "paste"} <= set(results[0].timings)
    # each photo keeps its own seed: the two astronauts' draws are independent of batching
    again = pipeline.run_batch(photos[3:], seeds=[6], samples=2)
    assert np.abs(pixels(again[0].image) - pixels(results[3].image)).max() <= 1
    with pytest.raises(ValueError, match="4 images but 2 seeds"):
        pipeline.run_batch(photos, seeds=[1, 2])


def test_run_batch_on_aligned_crops(pipeline, astronaut):
    crop = pipeline(astronaut, seed=0).faces[0].aligned
    crops = [crop, crop.resize((96, 96)), crop.rotate(5)]
    results = pipeline.run_batch(crops, seeds=[1, 1, 2], aligned=True, batch_size=2)
    assert [r.image.size for r in results] == [(64, 64), (96, 96), (64, 64)]
    one = pipeline(crops[2], seed=2, aligned=True)
    assert np.abs(pixels(one.image) - pixels(results[2].image)).max() <= 1


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_pipeline_in_half_precision_end_to_end(photo_bundle, tiny_backbone, astronaut, dtype,
                                               record_property):
    import copy

    bb = copy.deepcopy(tiny_backbone)
    ref = LReOrgPipeline(photo_bundle, bb.encoder, bb.generator, bb.latent_avg, device="cpu")
    half = LReOrgPipeline(copy.deepcopy(photo_bundle), copy.deepcopy(bb.encoder),
                          copy.deepcopy(bb.generator), bb.latent_avg, device="cpu").to(dtype=dtype)
    assert half.dtype == dtype and half.encoder.dtype == dtype and ref.dtype == torch.float32
    assert half.model.compute_dtype == dtype                  # CDFNet in the chosen dtype
    stats = [t for name, t in half.model.state_dict().items() if "anonymizer" in name
             and t.is_floating_point()]
    assert stats and all(t.dtype == torch.float32 for t in stats)  # statistics stay float32
    assert ref.model.compute_dtype == torch.float32
    a, b = ref(astronaut, seed=7), half(astronaut, seed=7)
    diff = np.abs(pixels(a.faces[0].recovered) - pixels(b.faces[0].recovered))
    record_property(f"max_crop_diff_{dtype}", int(diff.max()))
    assert b.image.size == astronaut.size and diff.mean() < 12
    with pytest.raises(ValueError, match="dtype must be float32, bfloat16 or float16"):
        half.to(dtype=torch.int8)
    assert half.to(dtype="float32").dtype == torch.float32


def test_one_call_is_a_batch_of_one(pipeline, astronaut):
    """__call__ and run_batch share one flow: the same seed gives the same pixels, crops
    included, whether or not the anonymized crops are generated too."""
    single = pipeline(astronaut, seed=11, samples=2)
    (batched,) = pipeline.run_batch([astronaut], seeds=[11], samples=2, anonymized_crops=True)
    lean = pipeline.run_batch([astronaut], seeds=[11], samples=2)[0]
    for other in (batched, lean):
        assert np.array_equal(pixels(single.image), pixels(other.image))
        (a,), (b,) = single.faces, other.faces
        assert np.array_equal(pixels(a.aligned), pixels(b.aligned))
        assert np.array_equal(pixels(a.recovered), pixels(b.recovered))
        assert all(np.array_equal(pixels(x), pixels(y)) for x, y in zip(a.samples, b.samples))
        assert a.box == b.box and a.detection.score == b.detection.score
    assert np.array_equal(pixels(single.faces[0].anonymized), pixels(batched.faces[0].anonymized))
    assert lean.faces[0].anonymized is None
    assert single.record == batched.record
    assert list(single.timings) == list(batched.timings)


def test_a_photo_whose_codes_are_not_finite_fails_alone(pipeline, astronaut, monkeypatch):
    """Fault injection: the encoder returns NaN for the second crop only; that photo gets the
    clear error, the others are what a call per photo gives."""
    crop = pipeline(astronaut, seed=0).faces[0].aligned
    crops = [crop, crop.rotate(3), crop.rotate(6)]
    encode = pipeline.backbone.encode

    def poisoned(images):
        codes = encode(images).clone()
        codes[1::3] = float("nan")  # the second crop of the batch of three
        return codes

    monkeypatch.setattr(pipeline.backbone, "encode", poisoned)
    results = pipeline.run_batch(crops, seeds=[1, 2, 3], aligned=True, batch_size=3)
    monkeypatch.undo()
    assert isinstance(results[1], ValueError) and "NaN" in str(results[1])
    for i in (0, 2):
        one = pipeline(crops[i], seed=i + 1, aligned=True)
        assert np.abs(pixels(one.image) - pixels(results[i].image)).max() <= 1
