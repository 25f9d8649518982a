import math

import pytest
import torch

from lreorg_hub.method.anonymizers import (AttributeAnonymizer, IdentityAnonymizer, KAnonymityIdentityAnonymizer, LaplaceIdentityAnonymizer, kmeans)
from lreorg_hub.method.mechanisms import (exponential_mechanism_probabilities, strict_utilities, window_utilities)

M = 10          # groups
SHAPE = (3, 8)  # a small key-feature shape (rows, width)
DRAWS = 20_000


def chi_square_p_value(observed: torch.Tensor, expected_probs: torch.Tensor) -> float:
    """Pearson's test over the cells with non-zero expected probability."""
    keep = expected_probs > 0
    n = observed.sum().double()
    expected = expected_probs[keep].double() * n
    stat = ((observed[keep].double() - expected) ** 2 / expected).sum()
    dof = int(keep.sum()) - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64), stat / 2))


@pytest.fixture
def groups(gen):
    """GIA fitted on 10 well-separated clusters of key features."""
    centres = torch.randn(M, *SHAPE, generator=gen) * 5
    labels = torch.arange(400) % M
    features = centres[labels] + 0.3 * torch.randn(400, *SHAPE, generator=gen)
    return IdentityAnonymizer(num_groups=M, num_members=120, feature_shape=SHAPE).fit(
        features, generator=gen)


def test_fit_keeps_every_group_populated(groups):
    counts = torch.bincount(groups.member_group, minlength=M)
    assert counts.sum() == 120 and counts.min() >= 1
    assert bool(groups.fitted)
    # every member sits closest to its own group's centre (well-separated clusters)
    d = torch.cdist(groups.members.reshape(120, -1), groups.centres.reshape(M, -1))
    assert torch.equal(d.argmin(-1), groups.member_group)


def test_kmeans_finds_separated_clusters(gen):
    truth = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = truth.repeat(50, 1) + 0.1 * torch.randn(150, 2, generator=gen)
    centres, labels = kmeans(x, 3, generator=gen)
    assert torch.cdist(truth, centres).min(-1).values.max() < 0.1
    assert torch.bincount(labels, minlength=3).tolist() == [50, 50, 50]


def closed_form(f, groups, epsilon, a, b, mode):
    """P(j) from the formula, computed independently of the library's vectorised code."""
    d = torch.cdist(f.reshape(1, -1).double(), groups.centres.reshape(M, -1).double())[0]
    order = torch.argsort(d)
    rank = torch.empty(M, dtype=torch.long)
    rank[order] = torch.arange(1, M + 1)
    weights = torch.zeros(M, dtype=torch.float64)
    cand = [j for j in range(M) if a <= rank[j] <= b]
    for j in range(M):
        if mode == "window":
            if j not in cand:
                continue
            dc = d[cand]
            span = dc.max() - dc.min()
            u = (dc.max() - d[j]) / span if span > 0 else 1.0
        else:
            r = int(rank[j])
            u = 1.0 - (max(a - r, 0) + max(r - b, 0)) / M
        weights[j] = math.exp(epsilon * float(u) / 2.0)
    return weights / weights.sum(), rank


@pytest.mark.parametrize("mode", ["window", "strict"])
@pytest.mark.parametrize("epsilon", [0.1, 1.0, 10.0])
def test_group_frequencies_match_the_exponential_mechanism(groups, gen, epsilon, mode):
    f = groups.members[:1]
    a, b = 2, 6
    expected, rank = closed_form(f[0], groups, epsilon, a, b, mode)
    assert torch.allclose(groups.probabilities(f, epsilon, (a, b), mode)[0], expected,
                          atol=1e-12)
    draw = groups.draw(f.expand(DRAWS, *SHAPE), epsilon, (a, b), mode, generator=gen)
    observed = torch.bincount(draw.group, minlength=M)
    assert chi_square_p_value(observed, expected) > 0.001
    # the member really belongs to the drawn group
    assert torch.equal(groups.member_group[draw.member], draw.group)
    if mode == "window":
        drawn_ranks = rank[draw.group]
        assert drawn_ranks.min() >= a and drawn_ranks.max() <= b
        assert observed[rank < a].sum() == 0 and observed[rank > b].sum() == 0


def test_members_are_drawn_uniformly_within_the_group(groups, gen):
    f = groups.members[:1].expand(DRAWS, *SHAPE)
    draw = groups.draw(f, 0.0, (1, 1), "window", generator=gen)  # always the nearest group
    group = int(draw.group[0])
    assert torch.all(draw.group == group)
    members = torch.nonzero(groups.member_group == group).flatten()
    observed = torch.bincount(draw.member, minlength=120)[members]
    uniform = torch.full((members.numel(),), 1.0 / members.numel(), dtype=torch.float64)
    assert chi_square_p_value(observed, uniform) > 0.001


def test_epsilon_zero_is_uniform_over_the_candidates(groups):
    f = groups.members[:5]
    p = groups.probabilities(f, 0.0, (3, 7), "window")
    assert torch.allclose(p.sum(-1), torch.ones(5, dtype=torch.float64))
    nonzero = p[p > 0]
    assert nonzero.numel() == 5 * 5 and torch.allclose(nonzero, torch.full_like(nonzero, 0.2))
    p_strict = groups.probabilities(f, 0.0, (3, 7), "strict")
    assert torch.allclose(p_strict, torch.full_like(p_strict, 1 / M))


def test_large_epsilon_concentrates_on_the_nearest_allowed_group(groups):
    f = groups.members[:5]
    p = groups.probabilities(f, math.inf, (2, 6), "window")
    ranks = groups.ranks(groups.distances(f))
    assert torch.equal(p.argmax(-1), torch.nonzero(ranks == 2)[:, 1])
    assert torch.allclose(p.max(-1).values, torch.ones(5, dtype=torch.float64))


def test_strict_mode_every_group_drawable_and_ratios_bounded_by_e_epsilon(groups, gen):
    inputs = torch.randn(200, *SHAPE, generator=gen) * 5
    for epsilon in (0.1, 1.0, 3.0):
        p = groups.probabilities(inputs, epsilon, (2, 4), "strict")
        assert (p > 0).all()
        ratio = (p.unsqueeze(0) / p.unsqueeze(1)).max()  # over all pairs of inputs and groups
        assert ratio <= math.exp(epsilon) * (1 + 1e-9)
    # the own (nearest) group can be drawn in strict mode
    draw = groups.draw(inputs[:1].expand(DRAWS, *SHAPE), 0.5, (2, 4), "strict", generator=gen)
    own = int(groups.ranks(groups.distances(inputs[:1]))[0].argmin())
    assert (draw.group == own).any()
    assert torch.bincount(draw.group, minlength=M).min() > 0


def test_window_mode_can_break_the_bound_for_excluded_groups(groups, gen):
    """Honesty check for the docs: in `window` mode a group may be impossible for one input
    and likely for another, so no e^ε bound holds over all groups."""
    inputs = groups.centres[:2]
    p = groups.probabilities(inputs, 1.0, (2, 4), "window")
    assert ((p[0] == 0) & (p[1] > 0)).any() or ((p[1] == 0) & (p[0] > 0)).any()


def test_same_seed_same_draw_and_generator_only(groups):
    f = groups.members[:7]
    draws = [groups(f, 1.0, (2, 5), generator=torch.Generator().manual_seed(42))
             for _ in range(2)]
    assert torch.equal(draws[0], draws[1])
    other = groups(f, 1.0, (2, 5), generator=torch.Generator().manual_seed(43))
    assert not torch.equal(draws[0], other)
    state = torch.get_rng_state()
    groups(f, 1.0, (2, 5), generator=torch.Generator().manual_seed(1))
    assert torch.equal(state, torch.get_rng_state())  # the global RNG is never touched


@pytest.mark.parametrize("epsilon, window, message", [
    (-0.5, (2, 5), "epsilon must be >= 0"),
    (float("nan"), (2, 5), "epsilon must be >= 0"),
    ("lots", (2, 5), "epsilon must be a number"),
    (1.0, (5, 2), r"rank_window \(a=5, b=2\) is empty: a must be <= b"),
    (1.0, (0, 3), r"must lie within 1..10"),
    (1.0, (3, 11), r"must lie within 1..10"),
    (1.0, (2.5, 4), "must be an integer"),
    (1.0, (2,), "must be a pair"),
])
def test_bad_budget_or_window_is_a_clear_error(groups, epsilon, window, message):
    with pytest.raises(ValueError, match=message):
        groups.probabilities(groups.members[:1], epsilon, window)


def test_unknown_mechanism_and_unfitted_state_are_clear_errors(groups):
    with pytest.raises(ValueError, match="mechanism must be one of window, strict"):
        groups.probabilities(groups.members[:1], 1.0, (2, 3), "fancy")
    fresh = IdentityAnonymizer(num_groups=M, num_members=20, feature_shape=SHAPE)
    with pytest.raises(RuntimeError, match="IdentityAnonymizer is not fitted"):
        fresh(groups.members[:1], 1.0, (2, 3))


def test_utilities_formulas():
    ranks = torch.tensor([[1, 2, 3, 4, 5]])
    u = strict_utilities(ranks, 2, 3, num_groups=5)
    assert torch.allclose(u, torch.tensor([[0.8, 1, 1, 0.8, 0.6]], dtype=torch.float64))
    d = torch.tensor([[0.0, 1.0, 2.0, 4.0, 9.0]])
    cand, u = window_utilities(d, ranks, 2, 4)
    assert cand.tolist() == [[False, True, True, True, False]]
    assert torch.allclose(u, torch.tensor([[0, 1.0, 2 / 3, 0, 0]], dtype=torch.float64))
    p = exponential_mechanism_probabilities(u, cand, 2.0)
    w = torch.tensor([0, math.e ** 1.0, math.e ** (2 / 3), 1.0, 0], dtype=torch.float64)
    assert torch.allclose(p[0], w / w.sum())


def test_attribute_anonymizer_picks_the_farthest_mean(gen):
    kaa = AttributeAnonymizer(num_subcategories=3, feature_shape=SHAPE)
    features = torch.randn(30, *SHAPE, generator=gen)
    labels = torch.arange(30) % 3
    kaa.fit(features, labels)
    for j in range(3):
        assert torch.allclose(kaa.means[j], features[labels == j].mean(0), atol=1e-6)
    f = torch.randn(6, *SHAPE, generator=gen)
    d = torch.cdist(f.reshape(6, -1), kaa.means.reshape(3, -1))
    assert torch.equal(kaa(f), kaa.means[d.argmax(-1)])
    with pytest.raises(ValueError, match="every sub-category needs at least one labelled face"):
        AttributeAnonymizer(3, SHAPE).fit(features, torch.zeros(30, dtype=torch.long))


def test_laplace_baseline_matches_its_formula(gen):
    lap = LaplaceIdentityAnonymizer(clip_norm=5.0)
    f = torch.randn(1, *SHAPE, generator=gen) * 10
    clipped = lap.clip(f)
    assert torch.isclose(clipped.abs().sum(), torch.tensor(5.0))
    noise = lap(f.expand(DRAWS, *SHAPE), epsilon=2.0, generator=gen) - clipped
    scale = 2 * 5.0 / 2.0                     # Δ/ε with Δ = 2C
    assert abs(noise.abs().mean().item() / scale - 1) < 0.02       # E|X| = b
    assert abs(noise.var().item() / (2 * scale ** 2) - 1) < 0.05   # Var = 2b²
    assert abs(noise.median().item()) < 0.05 * scale
    with pytest.raises(ValueError, match="needs epsilon > 0"):
        lap(f, 0.0)
    assert torch.equal(lap(f, math.inf), clipped)


def test_k_anonymity_baseline_takes_the_farthest_centre(groups):
    f = groups.members[:4]
    out = KAnonymityIdentityAnonymizer()(f, groups)
    far = groups.distances(f).argmax(-1)
    assert torch.equal(out, groups.centres[far])
