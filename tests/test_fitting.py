"""Anonymizer fitting (SPEC §4) on mapping-network samples: GIA groups, CLIP labels, KAA means,
the refusal of encoder codes, and `lreorg fit-anonymizers`."""

import json

import pytest
import torch

from lreorg_hub.method import keywords as kw
from lreorg_hub.bundle import LReOrg
from lreorg_hub.training.fitting import (SyntheticCodesError, check_synthetic_codes, fit_anonymizers, fit_attribute_anonymizer, fit_identity_anonymizer, sample_mapping_codes, zero_shot_labels)

from conftest import save_as_e4e_checkpoint
from training_setup import TINY_CLIP, TRAIN_CDFNET, build_tiny_clip

KEYWORDS = ["identity", "gender", "hair color"]


@pytest.fixture(scope="module")
def clip():
    return build_tiny_clip()


@pytest.fixture(scope="module")
def splitting_clip(tiny_backbone):
    """The tiny CLIP with prompt embeddings that split the generator's faces.

    A random CLIP has no idea of gender or hair colour: it gives every face the same label.
    Here each keyword's prompt embeddings are set (through the encoder's prompt cache) to
    the mean image embedding plus ± its main directions of variation across faces, so the
    zero-shot argmax splits the sampled faces into populated sub-categories.
    """
    clip = build_tiny_clip()
    codes = sample_mapping_codes(tiny_backbone.generator, 256, torch.Generator().manual_seed(5))
    with torch.no_grad():
        e = clip.encode_image(tiny_backbone.generator(codes).clamp(-1, 1))
    mean = e.mean(0)
    _, _, v = torch.linalg.svd(e - mean, full_matrices=False)
    directions = v[:2] - (v[:2] @ mean)[:, None] * mean / mean.dot(mean)  # ⟂ to the mean
    directions = directions / directions.norm(dim=1, keepdim=True) * 0.5 * mean.norm()
    for name in KEYWORDS[1:]:
        count = len(kw.KEYWORDS[name].subcategories)
        offsets = torch.cat([directions, -directions])[[0, 2, 1, 3][:count]]
        text = torch.nn.functional.normalize(mean + offsets, dim=-1)
        clip._prompt_cache[kw.KEYWORDS[name].prompts] = text
    return clip


def random_bundle(backbone):
    return LReOrg.with_random_weights(
        torch.Generator().manual_seed(0), std=0.05, keywords=KEYWORDS, num_groups=4,
        num_members=32, rank_window=[2, 3],
        cdfnet=dict(TRAIN_CDFNET, latent_dim=backbone.generator.style_dim,
                    num_rows=backbone.n_latent),
        backbone={"repo_id": "local/tiny", "filename": "tiny_e4e.pt", "size": 64})


def test_encoder_codes_are_refused(tiny_backbone):
    model = random_bundle(tiny_backbone)
    photo = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        encoded = tiny_backbone.encode(photo.expand(40, -1, -1, -1).contiguous())
    with pytest.raises(SyntheticCodesError, match="must hold synthetic identities only"):
        fit_identity_anonymizer(model, encoded)
    with pytest.raises(SyntheticCodesError, match="mapping network"):
        fit_attribute_anonymizer(model, "gender", encoded, torch.arange(40) % 2)
    w = sample_mapping_codes(tiny_backbone.generator, 5, torch.Generator().manual_seed(0))
    assert check_synthetic_codes(w) is w
    broadcast = w.unsqueeze(1).expand(-1, tiny_backbone.n_latent, -1)
    assert check_synthetic_codes(broadcast) is broadcast


def test_sampling_is_seeded_by_the_generator_only(tiny_backbone):
    g = tiny_backbone.generator
    a = sample_mapping_codes(g, 6, torch.Generator().manual_seed(4))
    b = sample_mapping_codes(g, 6, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and a.shape == (6, g.style_dim)
    with torch.no_grad():
        expected = g.mapping(torch.randn(6, g.style_dim, generator=torch.Generator().manual_seed(4)))
    torch.testing.assert_close(a, expected)


def test_zero_shot_labels_score_each_rendered_face(tiny_backbone, clip):
    codes = sample_mapping_codes(tiny_backbone.generator, 5, torch.Generator().manual_seed(1))
    probs = zero_shot_labels(tiny_backbone.generator, clip, codes, ["gender", "hair color"],
                             batch_size=2)
    assert probs["gender"].shape == (5, 2) and probs["hair color"].shape == (5, 4)
    with torch.no_grad():
        images = tiny_backbone.generator(codes).clamp(-1, 1)
        expected = clip.zero_shot(images, "hair color")
    torch.testing.assert_close(probs["hair color"], expected, rtol=1e-4, atol=1e-6)


def test_a_sub_category_nobody_gets_is_a_clear_error(tiny_backbone, clip):
    with pytest.raises(ValueError, match="CLIP labelled no sampled face as female for 'gender'"):
        fit_anonymizers(random_bundle(tiny_backbone), tiny_backbone.generator, clip,
                        num_samples=40, keywords=["gender"], seed=0, progress=False)


def test_fit_anonymizers_stores_groups_members_and_means(tiny_backbone, splitting_clip):
    model, clip = random_bundle(tiny_backbone), splitting_clip
    report = fit_anonymizers(model, tiny_backbone.generator, clip, num_samples=200,
                             seed=0, batch_size=50, progress=False)
    gia = model.identity_anonymizer
    assert bool(gia.fitted) and sum(report.group_sizes) == 200
    assert len(report.group_sizes) == 4 and min(report.group_sizes) >= 1
    assert sum(report.member_group_sizes) == 32
    assert report.member_group_sizes == torch.bincount(gia.member_group, minlength=4).tolist()
    # every member is the identity key feature of one of the sampled faces
    # recompute the samples as fit_anonymizers drew them (seed → latent generator)
    base = torch.Generator().manual_seed(0)
    latent_rng = torch.Generator().manual_seed(int(torch.randint(2 ** 62, (1,), generator=base)))
    codes = sample_mapping_codes(tiny_backbone.generator, 200, latent_rng)
    with torch.no_grad():
        f, _ = model.disentangle(codes, "identity")
    distance = torch.cdist(gia.members.flatten(1), f.flatten(1),
                           compute_mode="donot_use_mm_for_euclid_dist").min(dim=1).values
    assert distance.max() < 1e-4
    # KAA: the stored means are the per-label averages of the CLIP labels
    for name in ("gender", "hair color"):
        counts = report.label_counts[name]
        assert list(counts) == list(kw.KEYWORDS[name].subcategories)
        assert sum(counts.values()) == 200
        assert bool(model.attribute_anonymizer(name).fitted)
    probs = zero_shot_labels(tiny_backbone.generator, clip, codes, ["gender"], batch_size=50)
    labels = probs["gender"].argmax(-1)
    with torch.no_grad():
        fg, _ = model.disentangle(codes, "gender")
    torch.testing.assert_close(model.attribute_anonymizer("gender").means[1],
                               fg[labels == 1].mean(0), rtol=1e-4, atol=1e-5)
    assert "identity groups: 4" in report.describe() and "gender:" in report.describe()


def test_lreorg_fit_anonymizers_command(tiny_backbone, tmp_path, capsys):
    from lreorg_hub.cli import main

    random_bundle(tiny_backbone).save_pretrained(tmp_path / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, tmp_path / "tiny_e4e.pt")
    (tmp_path / "clip.json").write_text(json.dumps(TINY_CLIP))
    code = main(["fit-anonymizers", str(tmp_path / "bundle"), "--out", str(tmp_path / "fitted"),
                 "--backbone", str(tmp_path / "tiny_e4e.pt"), "--samples", "100",
                 "--clip-pretrained", "none", "--clip-config", str(tmp_path / "clip.json"),
                 "--seed", "0", "--batch-size", "50", "--device", "cpu", "--quiet",
                 "--keywords", "identity"])  # a random CLIP labels every face alike
    assert code == 0
    captured = capsys.readouterr()
    printed = json.loads(captured.out)
    assert sum(printed["group_sizes"]) == 100 and "identity groups: 4" in captured.err
    fitted = LReOrg.from_pretrained(tmp_path / "fitted")
    assert bool(fitted.identity_anonymizer.fitted)
    assert not any(bool(fitted.attribute_anonymizer(n).fitted) for n in KEYWORDS[1:])
    report = json.loads((tmp_path / "fitted" / "fitting.json").read_text())
    assert report["source"] == "mapping network" and report["num_samples"] == 100
    assert main(["fit-anonymizers", str(tmp_path / "bundle"), "--samples", "10", "--backbone",
                 str(tmp_path / "tiny_e4e.pt"), "--clip-pretrained", "none", "--clip-config",
                 str(tmp_path / "clip.json"), "--device", "cpu", "--quiet"]) == 2
    assert "below the bundle's member bank size 32" in capsys.readouterr().err
