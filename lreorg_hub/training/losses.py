"""The keyword-based swap-training losses (SPEC §5, paper §3.4 eqs. 5–10).

One function per term, each taking the scorers' outputs (embeddings, feature maps, zero-shot
probabilities) or latents, so every term can be checked on hand-made tensors. Every term is
the batch mean (the paper's E[·]) of a per-pair value. Notation: pair (s₁, s₂), key features
swapped: s₁′ = CDFNet⁻¹(f₂, r₁), s₂′ = CDFNet⁻¹(f₁, r₂); Iₓ = G(sₓ).

Reductions of the two latent terms (``reduction``, a training option; the decision is
written out in docs/METHOD.md):

- ``"mean"`` (default): L_f uses the L2 norm of each W+ row (a 512-d style vector), averaged
  over the L rows; L_r is the mean |Δr| per entry (PyTorch's ``l1_loss``). Both are then
  independent of L and of the latent width, so the paper's weights λ3 = α3 = 3 and
  λ4 = α4 = 10 keep one meaning for 18 × 512 and for small test codes, and L_r starts at the
  scale of the other terms instead of dominating.
- ``"sum"``: the literal reading: L_f the L2 norm of the flattened code (√L times the per-row
  norm of equal rows) and L_r the L1 norm summed over all L × 512 entries. Near the identity
  map Δr₁ ≈ f₂ − f₁, so λ4·L_r ≈ 10·2·‖f₁ − f₂‖₁ over 9216 entries: 88–91 % of the total at
  initialisation, pulling the key features together against L_I.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from .weights import REDUCTIONS, AOSWeights, IOSWeights

__all__ = ["cosine_distance", "identity_swap_loss", "identity_preservation_loss",
           "perceptual_distance", "perceptual_loss", "attribute_swap_loss", "latent_loss",
           "information_loss", "REDUCTIONS", "IOSWeights", "AOSWeights", "identity_oriented_loss",
           "attribute_oriented_loss", "weighted_terms"]


def cosine_distance(a: Tensor, b: Tensor) -> Tensor:
    """d(x, y) = 1 − cos(ρ(x), ρ(y)) per row, shape (N,) (inputs need not be normalised)."""
    return 1.0 - (F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).sum(dim=-1)


def identity_swap_loss(e1: Tensor, e2: Tensor, e1_swapped: Tensor, e2_swapped: Tensor) -> Tensor:
    """L_I = E[d(I₂, I₁′) + d(I₁, I₂′) − d(I₁, I₁′) − d(I₂, I₂′)] (eq. 6) on identity embeddings.

    Minimised: I₁′ (which carries f₂) must look like person 2 and unlike person 1, and the
    other way round. Range [−4, 4]; −4 is a perfect swap between opposite identities.
    """
    return (cosine_distance(e2, e1_swapped) + cosine_distance(e1, e2_swapped)
            - cosine_distance(e1, e1_swapped) - cosine_distance(e2, e2_swapped)).mean()


def identity_preservation_loss(e1: Tensor, e2: Tensor, e1_swapped: Tensor,
                               e2_swapped: Tensor) -> Tensor:
    """L_I′ = E[d(I₁, I₁′) + d(I₂, I₂′)]: an attribute swap must keep each identity."""
    return (cosine_distance(e1, e1_swapped) + cosine_distance(e2, e2_swapped)).mean()


def perceptual_distance(features_a: Sequence[Tensor], features_b: Sequence[Tensor]) -> Tensor:
    """η(x, y) = Σ_l mean_{c,h,w} (φ_l(x) − φ_l(y))², per row (N,).

    The feature-reconstruction loss of Johnson et al. (paper ref. [26]), summed over the face
    network's intermediate layers φ_l.
    """
    if len(features_a) != len(features_b) or not features_a:
        raise ValueError("perceptual_distance needs the same, non-empty list of layers for both")
    return sum((a - b).pow(2).flatten(1).mean(dim=1) for a, b in zip(features_a, features_b))


def perceptual_loss(features1: Sequence[Tensor], features2: Sequence[Tensor],
                    features1_swapped: Sequence[Tensor],
                    features2_swapped: Sequence[Tensor]) -> Tensor:
    """L_p = E[η(I₁, I₁′) + η(I₂, I₂′)] on face-network feature maps."""
    return (perceptual_distance(features1, features1_swapped)
            + perceptual_distance(features2, features2_swapped)).mean()


def attribute_swap_loss(p1: Tensor, p2: Tensor, p1_swapped: Tensor, p2_swapped: Tensor,
                        eps: float = 1e-12) -> Tensor:
    """L_s = E[−Σ_j (D(I₁, t_j)·log D(I₂′, t_j) + D(I₂, t_j)·log D(I₁′, t_j))] (eqs. 9–10).

    ``p*`` are CLIP's softmax over the keyword's sub-category prompts, (N, C). I₂′ carries f₁,
    so its attribute distribution is pulled towards I₁'s: a cross entropy in each direction.
    ``eps`` keeps log finite where a probability underflows to 0.
    """
    log1p, log2p = p1_swapped.clamp_min(eps).log(), p2_swapped.clamp_min(eps).log()
    return -(p1 * log2p + p2 * log1p).sum(dim=-1).mean()


#: The reductions of L_f and L_r (see the module docstring); the first is the default.
def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _row_norms(diff: Tensor, reduction: str) -> Tensor:
    """Per pair: mean over rows of the per-row L2 norm ("mean"), or the flattened L2 norm."""
    if reduction == "mean":
        return diff.norm(dim=-1).flatten(1).mean(dim=1)
    return diff.flatten(1).norm(dim=1)


def latent_loss(s1: Tensor, s2: Tensor, s1_swapped: Tensor, s2_swapped: Tensor,
                reduction: str = "mean") -> Tensor:
    """L_f = E[‖s₁ − s₁′‖₂ + ‖s₂ − s₂′‖₂] (eq. 7) on codes (N, L, D).

    "mean": ‖·‖₂ of each row, averaged over the L rows; "sum": ‖·‖₂ of the flattened code.
    """
    _check_reduction(reduction)
    return (_row_norms(s1 - s1_swapped, reduction)
            + _row_norms(s2 - s2_swapped, reduction)).mean()


def information_loss(delta_r1: Tensor, delta_r2: Tensor, reduction: str = "mean") -> Tensor:
    """L_r = E[‖Δr₁‖₁ + ‖Δr₂‖₁]: what the fusion could not put back (ideally 0).

    "mean": mean |Δr| per entry; "sum": |Δr| summed over every entry.
    """
    _check_reduction(reduction)
    if reduction == "mean":
        return (delta_r1.flatten(1).abs().mean(dim=1)
                + delta_r2.flatten(1).abs().mean(dim=1)).mean()
    return (delta_r1.flatten(1).abs().sum(dim=1) + delta_r2.flatten(1).abs().sum(dim=1)).mean()


def weighted_terms(terms: dict[str, Tensor | float], mode: str,
                   ios: "IOSWeights", aos: "AOSWeights") -> dict[str, Tensor | float]:
    """Each term times its weight in the objective of ``mode`` ("IOS" or "AOS"): the pieces
    whose sum is the total (what the pilot's shares are made of)."""
    if mode == "IOS":
        weights = {"L_I": ios.identity, "L_p": ios.perceptual, "L_f": ios.latent,
                   "L_r": ios.information}
    elif mode == "AOS":
        weights = {"L_I_prime": aos.identity, "L_s": aos.swap, "L_f": aos.latent,
                   "L_r": aos.information}
    else:
        raise ValueError(f"mode must be 'IOS' or 'AOS', got {mode!r}")
    return {name: weights[name] * value for name, value in terms.items()}


def identity_oriented_loss(l_identity: Tensor, l_perceptual: Tensor, l_latent: Tensor,
                           l_information: Tensor, weights: IOSWeights = IOSWeights()) -> Tensor:
    """L_IOS = λ1·L_I + λ2·L_p + λ3·L_f + λ4·L_r (eq. 5)."""
    return (weights.identity * l_identity + weights.perceptual * l_perceptual
            + weights.latent * l_latent + weights.information * l_information)


def attribute_oriented_loss(l_identity: Tensor, l_swap: Tensor, l_latent: Tensor,
                            l_information: Tensor, weights: AOSWeights = AOSWeights()) -> Tensor:
    """L_AOS = α1·L_I′ + α2·L_s + α3·L_f + α4·L_r (eq. 8)."""
    return (weights.identity * l_identity + weights.swap * l_swap
            + weights.latent * l_latent + weights.information * l_information)
