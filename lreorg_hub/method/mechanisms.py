"""The exponential mechanism of GIA (SPEC §4): the utilities of the `window` and `strict`
modes and the closed-form group probabilities (ε and the window are checked by
``lreorg_hub.method.checks``)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["MECHANISMS", "window_utilities", "strict_utilities",
           "exponential_mechanism_probabilities"]

MECHANISMS = ("window", "strict")


def window_utilities(distances: Tensor, ranks: Tensor, a: int, b: int) -> tuple[Tensor, Tensor]:
    """`window` mode: candidates are ranks a..b; u = −d normalised to [0, 1] over them (Δu = 1).

    Returns (candidates (N, m) bool, utility (N, m) float64, 0 outside the candidates).
    A single candidate, or candidates at equal distance, get u = 1.
    """
    candidates = (ranks >= a) & (ranks <= b)
    d = distances.double()
    inf = torch.full_like(d, math.inf)
    d_min = torch.where(candidates, d, inf).amin(-1, keepdim=True)
    d_max = torch.where(candidates, d, -inf).amax(-1, keepdim=True)
    span = d_max - d_min
    utility = torch.where(span > 0, (d_max - d) / span.clamp(min=1e-300), torch.ones_like(d))
    return candidates, torch.where(candidates, utility, torch.zeros_like(utility))


def strict_utilities(ranks: Tensor, a: int, b: int, num_groups: int) -> Tensor:
    """`strict` mode: u = 1 inside [a, b], 1 − (rank distance to the window) / m outside."""
    below = (a - ranks).clamp(min=0)
    above = (ranks - b).clamp(min=0)
    return 1.0 - (below + above).to(torch.float64) / num_groups


def exponential_mechanism_probabilities(utility: Tensor, candidates: Tensor,
                                        epsilon: float, sensitivity: float = 1.0) -> Tensor:
    """P(j) ∝ exp(ε·u(j) / (2Δu)) over the candidates, 0 elsewhere (rows sum to 1).

    ε = ∞ puts all mass, uniformly, on the candidates of highest utility.
    """
    utility = utility.to(torch.float64)
    if math.isinf(epsilon):
        best = torch.where(candidates, utility, torch.full_like(utility, -math.inf))
        mask = candidates & (utility >= best.amax(dim=-1, keepdim=True))
        return mask.double() / mask.sum(dim=-1, keepdim=True)
    logits = epsilon * utility / (2.0 * sensitivity)
    logits = logits.masked_fill(~candidates, -math.inf)
    return torch.softmax(logits, dim=-1)
