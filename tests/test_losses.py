"""Swap-training losses (SPEC §5) on tiny tensors with values worked out by hand."""

import math

import pytest
import torch

from lreorg_hub.training import losses as L

E1 = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
E2 = torch.tensor([[0.0, 1.0], [1.0, 1.0]])
# Row 0: a perfect swap between orthogonal identities. Row 1: nothing moved for person 1, and
# I₂′ points where I₁ does (the embedding is unnormalised on purpose: d normalises).
E1_SWAPPED = torch.tensor([[0.0, 1.0], [1.0, 0.0]])
E2_SWAPPED = torch.tensor([[1.0, 0.0], [2.0, 0.0]])
D45 = 1.0 - 1.0 / math.sqrt(2.0)  # cosine distance of vectors 45° apart


def test_cosine_distance():
    torch.testing.assert_close(L.cosine_distance(E1, E2), torch.tensor([1.0, D45]))
    torch.testing.assert_close(L.cosine_distance(E2_SWAPPED, E1), torch.zeros(2))


def test_identity_swap_loss_sign_convention():
    # row 0: d(I2,I1')=0 + d(I1,I2')=0 − d(I1,I1')=1 − d(I2,I2')=1 = −2
    # row 1: d(I2,I1')=D45 + d(I1,I2')=0 − d(I1,I1')=0 − d(I2,I2')=D45 = 0
    value = L.identity_swap_loss(E1, E2, E1_SWAPPED, E2_SWAPPED)
    torch.testing.assert_close(value, torch.tensor(-1.0))
    # No swap at all (s' = s) costs +2·d(I1, I2): the loss is minimised by swapping.
    torch.testing.assert_close(L.identity_swap_loss(E1, E2, E1, E2),
                               torch.tensor((2.0 + 2 * D45) / 2))


def test_identity_swap_loss_gradient_pulls_the_swapped_face_towards_the_other_person():
    e1p = torch.tensor([[0.8, 0.6]], requires_grad=True)
    before = L.cosine_distance(E2[:1], e1p).item()
    L.identity_swap_loss(E1[:1], E2[:1], e1p, E2_SWAPPED[:1]).backward()
    with torch.no_grad():
        stepped = e1p - 0.1 * e1p.grad
    assert L.cosine_distance(E2[:1], stepped).item() < before


def test_identity_preservation_loss():
    # row 0: 1 + 1; row 1: 0 + D45
    torch.testing.assert_close(L.identity_preservation_loss(E1, E2, E1_SWAPPED, E2_SWAPPED),
                               torch.tensor((2.0 + D45) / 2))


def test_perceptual_loss():
    a = [torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]]), torch.tensor([[1.0, 1.0]])]
    b = [torch.zeros(1, 1, 2, 2), torch.tensor([[0.0, 3.0]])]
    # layer 1: (1 + 4 + 9 + 16) / 4 = 7.5; layer 2: (1 + 4) / 2 = 2.5
    torch.testing.assert_close(L.perceptual_distance(a, b), torch.tensor([10.0]))
    torch.testing.assert_close(L.perceptual_loss(a, a, b, a), torch.tensor(10.0))
    with pytest.raises(ValueError, match="same, non-empty list of layers"):
        L.perceptual_distance(a, b[:1])


def test_attribute_swap_loss_is_the_cross_entropy_of_the_swapped_prompts():
    p1, p2 = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 1.0]])
    p1_swapped, p2_swapped = torch.tensor([[0.25, 0.75]]), torch.tensor([[0.5, 0.5]])
    # −(1·log 0.5 + 0·log 0.5) − (0·log 0.25 + 1·log 0.75) = log 2 + log 4/3
    torch.testing.assert_close(L.attribute_swap_loss(p1, p2, p1_swapped, p2_swapped),
                               torch.tensor(math.log(2) + math.log(4 / 3)))
    # a perfect attribute swap (I2' has I1's attribute and vice versa) costs 0
    torch.testing.assert_close(L.attribute_swap_loss(p1, p2, p2, p1), torch.tensor(0.0))


def test_latent_loss():
    s1, s2 = torch.zeros(1, 2, 2), torch.zeros(1, 2, 2)
    s1_swapped = torch.tensor([[[3.0, 4.0], [0.0, 0.0]]])  # rows 5 and 0; flattened 5
    s2_swapped = torch.ones(1, 2, 2)  # rows √2 and √2; flattened 2
    # "mean" (default): per-row L2 norms averaged over the rows: (5 + 0)/2 + (√2 + √2)/2
    torch.testing.assert_close(L.latent_loss(s1, s2, s1_swapped, s2_swapped),
                               torch.tensor(2.5 + math.sqrt(2.0)))
    # "sum": the L2 norm of the flattened code
    torch.testing.assert_close(L.latent_loss(s1, s2, s1_swapped, s2_swapped, "sum"),
                               torch.tensor(7.0))
    # equal rows: the flattened norm is √L times the per-row one
    w = torch.randn(3, 1, 8).expand(-1, 18, -1)
    zero = torch.zeros(3, 18, 8)
    torch.testing.assert_close(L.latent_loss(w, zero, zero, zero, "sum"),
                               math.sqrt(18) * L.latent_loss(w, zero, zero, zero, "mean"))
    with pytest.raises(ValueError, match="reduction must be one of"):
        L.latent_loss(s1, s2, s1, s2, "max")


def test_information_loss():
    dr1, dr2 = torch.tensor([[1.0, -2.0]]), torch.tensor([[-3.0, 0.0]])
    # "mean" (default): mean |Δr| per entry, (1 + 2)/2 + (3 + 0)/2; "sum": 1 + 2 + 3
    torch.testing.assert_close(L.information_loss(dr1, dr2), torch.tensor(3.0))
    torch.testing.assert_close(L.information_loss(dr1, dr2, "sum"), torch.tensor(6.0))


def test_weighted_terms_sum_to_the_total():
    terms = {"L_I": torch.tensor(-1.0), "L_p": torch.tensor(2.0), "L_f": torch.tensor(3.0),
             "L_r": torch.tensor(4.0)}
    parts = L.weighted_terms(terms, "IOS", L.IOSWeights(), L.AOSWeights())
    assert {k: float(v) for k, v in parts.items()} == pytest.approx(
        {"L_I": -24.0, "L_p": 2.4, "L_f": 9.0, "L_r": 40.0})
    torch.testing.assert_close(sum(parts.values()), L.identity_oriented_loss(*terms.values()))


def test_weighted_totals_use_the_papers_weights():
    terms = torch.tensor(-1.0), torch.tensor(2.0), torch.tensor(3.0), torch.tensor(4.0)
    # 24·(−1) + 1.2·2 + 3·3 + 10·4
    torch.testing.assert_close(L.identity_oriented_loss(*terms), torch.tensor(27.4))
    # 0.2·(−1) + 30·2 + 3·3 + 10·4
    torch.testing.assert_close(L.attribute_oriented_loss(*terms), torch.tensor(108.8))
    custom = L.IOSWeights(identity=1.0, perceptual=0.0, latent=0.0, information=0.0)
    torch.testing.assert_close(L.identity_oriented_loss(*terms, weights=custom),
                               torch.tensor(-1.0))
