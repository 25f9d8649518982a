"""style-mix (SPEC §8): the training-free baseline on the tiny generator, nothing mocked."""

import math

import pytest

from lreorg_hub.bundle import BundleError
import torch

from lreorg_hub.demo import build_demo_style_mix
from lreorg_hub.bundle import StyleMixAnonymizer
from lreorg_hub.method.stylemix import check_style_rows, default_style_rows
from test_anonymizers import chi_square_p_value

DRAWS = 20_000


@pytest.fixture(scope="module")
def style_mix(tiny_backbone):
    return build_demo_style_mix(tiny_backbone, seed=3, num_groups=8, num_members=64,
                                fit_samples=512)


@pytest.fixture(scope="module")
def codes(tiny_backbone):
    """W+ codes as the encoder gives them: every row different."""
    g = torch.Generator().manual_seed(11)
    w = tiny_backbone.generator.sample_w(4 * tiny_backbone.n_latent, generator=g)
    return w.reshape(4, tiny_backbone.n_latent, -1).detach()


def closed_form(f, centres, epsilon, a, b, mode):
    """P(j) from SPEC §4's formula, written independently of the library's vectorised code."""
    m = centres.shape[0]
    d = torch.cdist(f.reshape(1, -1).double(), centres.double())[0]
    rank = torch.empty(m, dtype=torch.long)
    rank[torch.argsort(d)] = torch.arange(1, m + 1)
    cand = [j for j in range(m) if a <= rank[j] <= b]
    weights = torch.zeros(m, dtype=torch.float64)
    for j in range(m):
        if mode == "window":
            if j not in cand:
                continue
            dc = d[cand]
            span = dc.max() - dc.min()
            u = float((dc.max() - d[j]) / span) if span > 0 else 1.0
        else:
            r = int(rank[j])
            u = 1.0 - (max(a - r, 0) + max(r - b, 0)) / m
        weights[j] = math.exp(epsilon * u / 2.0)
    return weights / weights.sum(), rank


def test_default_rows_are_the_middle_rows():
    assert default_style_rows(18) == (4, 8)        # 1024 px StyleGAN2 FFHQ
    assert default_style_rows(14) == (3, 6)        # 256 px
    assert default_style_rows(10) == (2, 4)        # the tiny test generator
    r0, r1 = default_style_rows(1)
    assert 0 <= r0 < r1 <= 1


def test_fit_uses_mapping_network_samples_only(style_mix, tiny_backbone):
    assert style_mix.fitted and style_mix.groups.members.shape == (64, 32)
    # every member is exactly a mapping-network output for the fit's seed
    g = torch.Generator().manual_seed(3)
    w = tiny_backbone.generator.sample_w(512, generator=g)
    d = torch.cdist(style_mix.groups.members.double(), w.double()).min(-1).values
    assert d.max() < 1e-5
    counts = torch.bincount(style_mix.groups.member_group, minlength=8)
    assert counts.min() >= 1


def test_fit_refuses_codes(tiny_backbone, codes):
    sm = StyleMixAnonymizer(8, 64, 32, tiny_backbone.n_latent)
    with pytest.raises(TypeError, match="fitted on the generator itself .* never codes "
                                        "encoded from photos"):
        sm.fit(codes)
    with pytest.raises(ValueError, match=r"generator gives \(10, 32\) codes but this "
                                         r"style-mix works on \(18, 32\)"):
        StyleMixAnonymizer(8, 64, 32, 18).fit(tiny_backbone.generator)
    assert not sm.fitted
    with pytest.raises(RuntimeError, match="style-mix groups are not fitted"):
        sm(codes)


@pytest.mark.parametrize("rows", [None, (0, 1), (3, 10), (5, 6)])
def test_rows_outside_the_range_are_bit_identical(style_mix, codes, rows):
    out = style_mix(codes, epsilon=1.0, rows=rows,
                    generator=torch.Generator().manual_seed(0))
    r0, r1 = rows or style_mix.rows
    assert out.rows == (r0, r1)
    keep = [i for i in range(codes.shape[1]) if not r0 <= i < r1]
    assert torch.equal(out.codes[:, keep], codes[:, keep])        # bit for bit
    member = style_mix.groups.members[out.draw.member]
    assert torch.equal(out.codes[:, r0:r1], member.unsqueeze(1).expand(-1, r1 - r0, -1))
    assert not torch.equal(out.codes[:, r0:r1], codes[:, r0:r1])
    assert torch.equal(codes, codes.clone())  # the input is not changed in place


def test_feature_is_the_mean_of_the_rows(style_mix, codes):
    assert torch.allclose(style_mix.feature(codes, (2, 5)), codes[:, 2:5].mean(1))


@pytest.mark.parametrize("mode", ["window", "strict"])
@pytest.mark.parametrize("epsilon", [0.1, 1.0, 10.0])
def test_group_distribution_matches_the_exponential_mechanism(style_mix, codes, epsilon, mode):
    a, b = 2, 6
    one = codes[:1]
    f = style_mix.feature(one)[0]
    expected, rank = closed_form(f, style_mix.groups.centres, epsilon, a, b, mode)
    got = style_mix.probabilities(one, epsilon, (a, b), mode)[0]
    assert torch.allclose(got, expected, atol=1e-12)
    out = style_mix(one.expand(DRAWS, -1, -1), epsilon, (a, b), mode,
                    generator=torch.Generator().manual_seed(7))
    observed = torch.bincount(out.draw.group, minlength=style_mix.num_groups)
    assert chi_square_p_value(observed, expected) > 0.001
    assert torch.equal(style_mix.groups.member_group[out.draw.member], out.draw.group)
    if mode == "window":
        assert observed[(rank < a) | (rank > b)].sum() == 0


def test_strict_mode_ratios_are_bounded_by_e_epsilon(style_mix, tiny_backbone):
    g = torch.Generator().manual_seed(5)
    many = tiny_backbone.generator.sample_w(200 * tiny_backbone.n_latent, generator=g)
    many = many.reshape(200, tiny_backbone.n_latent, -1).detach()
    for epsilon in (0.1, 1.0, 3.0):
        p = style_mix.probabilities(many, epsilon, (2, 4), "strict")
        assert (p > 0).all()
        assert (p.unsqueeze(0) / p.unsqueeze(1)).max() <= math.exp(epsilon) * (1 + 1e-9)


def test_same_seed_reproduces_and_global_rng_is_untouched(style_mix, codes):
    state = torch.get_rng_state()
    a = style_mix(codes, 1.0, generator=torch.Generator().manual_seed(42)).codes
    b = style_mix(codes, 1.0, generator=torch.Generator().manual_seed(42)).codes
    c = style_mix(codes.repeat(8, 1, 1), 1.0, generator=torch.Generator().manual_seed(43)).codes
    assert torch.equal(a, b)
    assert not torch.equal(a.repeat(8, 1, 1), c)
    assert torch.equal(state, torch.get_rng_state())


def test_save_and_load_round_trip(style_mix, codes, tmp_path):
    style_mix.save_pretrained(tmp_path / "sm")
    assert sorted(p.name for p in (tmp_path / "sm").iterdir()) == [
        "README.md", "config.json", "model.safetensors"]  # the bundle's Hub format
    loaded = StyleMixAnonymizer.from_pretrained(tmp_path / "sm")
    assert loaded.get_config() == style_mix.get_config()
    for k, v in style_mix.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    x = style_mix(codes, 2.0, generator=torch.Generator().manual_seed(1)).codes
    y = loaded(codes, 2.0, generator=torch.Generator().manual_seed(1)).codes
    assert torch.equal(x, y)


def test_loading_broken_folders_is_a_clear_error(style_mix, tmp_path):
    with pytest.raises(BundleError, match="is not a style-mix group folder: config.json is "
                                          "missing"):
        StyleMixAnonymizer.from_pretrained(tmp_path)
    style_mix.save_pretrained(tmp_path / "sm")
    config = tmp_path / "sm" / "config.json"
    config.write_text('{"num_groups": 9, "num_members": 64, "style_dim": 32, "num_rows": 10}')
    with pytest.raises(BundleError, match=r"shape mismatch: groups.centres is \[8, 32\] in the "
                                          r"weights but \[9, 32\] per config.json"):
        StyleMixAnonymizer.from_pretrained(tmp_path / "sm")
    config.write_text('{"num_groups": 8, "num_members": 64, "style_dim": 1000000}')
    with pytest.raises(BundleError, match="style_dim = 1000000 is out of range"):
        StyleMixAnonymizer.from_pretrained(tmp_path / "sm")
    config.write_text("not json")
    with pytest.raises(BundleError, match="config.json is not valid JSON"):
        StyleMixAnonymizer.from_pretrained(tmp_path / "sm")
    with pytest.raises(RuntimeError, match="refusing to save unfitted"):
        StyleMixAnonymizer(8, 64, 32, 10).save_pretrained(tmp_path / "x")


@pytest.mark.parametrize("rows, message", [
    ((4, 4), r"style rows \[4, 4\) are empty"),
    ((-1, 3), "are empty or negative"),
    ((2, 11), r"go past the code's 10 W\+ rows"),
    ((1.5, 3), "must be integers"),
    ("2,4", "must be a pair"),
])
def test_bad_rows_are_clear_errors(rows, message):
    with pytest.raises(ValueError, match=message):
        check_style_rows(rows, 10)
