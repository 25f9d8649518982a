"""Key-feature anonymizers (SPEC §4, paper §3.3) and the latent baselines beside them.

All fitted state lives in persistent buffers, so it is saved with the bundle's safetensors and
only shapes go in config.json. Randomness comes in as a ``torch.Generator``; without one, a
fresh generator seeded from OS entropy is used. Nothing touches torch's global RNG.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .checks import check_epsilon, check_rank_window
from .mechanisms import (MECHANISMS, exponential_mechanism_probabilities, strict_utilities,
                         window_utilities)
from .rng import categorical, fresh_generator, randint, randperm, uniform

__all__ = ["GroupDraw", "kmeans", "IdentityAnonymizer", "AttributeAnonymizer",
           "LaplaceIdentityAnonymizer", "KAnonymityIdentityAnonymizer"]


def _flat(x: Tensor) -> Tensor:
    return x.reshape(x.shape[0], math.prod(x.shape[1:]))  # also for 0 rows


@dataclass
class GroupDraw:
    """What one GIA draw chose, per input row (kept for tests and analysis, not the record)."""

    group: Tensor   # (N,) index of the drawn group
    member: Tensor  # (N,) index into the member bank
    probabilities: Tensor  # (N, m) the mechanism's distribution the group was drawn from


def kmeans(x: Tensor, num_clusters: int, iterations: int = 50,
           generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means with k-means++ seeding on the rows of x (N, D).

    Returns (centres (k, D), labels (N,)). Empty clusters are re-seeded with the point farthest
    from its centre, so every cluster ends with at least one member.
    """
    generator = generator if generator is not None else fresh_generator()
    n = x.shape[0]
    if not 1 <= num_clusters <= n:
        raise ValueError(f"k-means needs 1 <= num_clusters <= number of points ({n}), "
                         f"got {num_clusters}")
    x = x.double()
    distinct = torch.unique(x, dim=0).shape[0]
    if distinct < num_clusters:
        raise ValueError(f"only {distinct} distinct feature(s) for {num_clusters} clusters: the "
                         f"key features are degenerate (an untrained CDFNet maps every code to "
                         f"the key feature 0)")
    first = randint(n, (1,), generator)
    centres = [x[first[0]]]
    d2 = ((x - centres[0]) ** 2).sum(-1)
    for _ in range(1, num_clusters):
        idx = categorical(d2, generator)
        centres.append(x[idx])
        d2 = torch.minimum(d2, ((x - x[idx]) ** 2).sum(-1))
    c = torch.stack(centres)
    labels = torch.cdist(x, c).argmin(-1)
    for _ in range(iterations):
        counts = torch.bincount(labels, minlength=num_clusters)
        empty = torch.nonzero(counts == 0).flatten()
        if empty.numel():
            # Re-seed each empty cluster with one of the points farthest from their centre.
            spread = ((x - c[labels]) ** 2).sum(-1)
            far = torch.topk(spread, empty.numel()).indices
            c[empty] = x[far]
            labels[far] = empty
        sums = torch.zeros_like(c).index_add_(0, labels, x)
        c = sums / torch.bincount(labels, minlength=num_clusters).clamp(min=1).unsqueeze(-1)
        new = torch.cdist(x, c).argmin(-1)
        if torch.equal(new, labels):
            break
        labels = new
    return c.float(), labels


class _FittedModule(nn.Module):
    """Shared `fitted` flag, saved with the weights, and the error for an unfitted module."""

    def __init__(self):
        super().__init__()
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def _require_fitted(self):
        if not bool(self.fitted):
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit(...) on key "
                               f"features first, or load a fitted bundle with from_pretrained")


class IdentityAnonymizer(_FittedModule):
    """GIA: the group-based identity anonymizer with the exponential mechanism (ε-DP).

    Fitted state: ``centres`` (m, *feature_shape), the member bank ``members``
    (num_members, *feature_shape) and ``member_group`` (num_members,) naming each member's group.

    Use: rank the groups by the distance of their centre to f (rank 1 = nearest); draw a group
    with P(j) ∝ exp(ε·u(j)/2) (Δu = 1), then one of its members uniformly; that member is f̂.
    ``mechanism="window"`` (the paper) only lets ranks a..b be drawn, with u = −d normalised to
    [0, 1] over them; ``mechanism="strict"`` lets every group be drawn and scores ranks (SPEC §4),
    which bounds every probability ratio between two inputs by e^ε.
    """

    def __init__(self, num_groups: int = 64, num_members: int = 1024,
                 feature_shape: tuple[int, ...] | list[int] = (18, 512)):
        super().__init__()
        if num_groups < 1 or num_members < num_groups:
            raise ValueError("IdentityAnonymizer needs num_groups >= 1 and "
                             "num_members >= num_groups (every group needs a member)")
        self.num_groups, self.num_members = num_groups, num_members
        self.feature_shape = tuple(feature_shape)
        self.register_buffer("centres", torch.zeros(num_groups, *self.feature_shape))
        self.register_buffer("members", torch.zeros(num_members, *self.feature_shape))
        self.register_buffer("member_group", torch.zeros(num_members, dtype=torch.long))

    # -- fitting ----------------------------------------------------------------------------
    @torch.no_grad()
    def fit(self, features: Tensor, iterations: int = 50,
            generator: torch.Generator | None = None) -> "IdentityAnonymizer":
        """k-means the identity key features (N, *feature_shape) into the configured m groups.

        Keeps ``num_members`` of them as the member bank (a stratified subset when N is larger,
        so each group keeps members in proportion, at least one).
        """
        if tuple(features.shape[1:]) != self.feature_shape:
            raise ValueError(f"features must have shape (N, {', '.join(map(str, self.feature_shape))}),"
                             f" got {tuple(features.shape)}")
        if features.shape[0] < self.num_members:
            raise ValueError(f"need at least num_members={self.num_members} features, "
                             f"got {features.shape[0]}")
        generator = generator if generator is not None else fresh_generator()
        centres, labels = kmeans(_flat(features), self.num_groups, iterations, generator)
        keep = self._stratified_subset(labels, generator)
        self.centres.copy_(centres.reshape(self.centres.shape))
        self.members.copy_(features[keep])
        self.member_group.copy_(labels[keep])
        self.fitted.fill_(True)
        return self

    def _stratified_subset(self, labels: Tensor, generator: torch.Generator | None) -> Tensor:
        counts = torch.bincount(labels, minlength=self.num_groups)
        quota = torch.clamp((counts.double() * self.num_members / labels.numel()).floor().long(),
                            min=1)
        quota = torch.minimum(quota, counts)
        # Hand out what rounding left over to the largest groups with spare members.
        while int(quota.sum()) < self.num_members:
            spare = counts - quota
            quota[int(torch.argmax(spare))] += 1
        while int(quota.sum()) > self.num_members:
            quota[int(torch.argmax(quota))] -= 1
        picks = []
        for j in range(self.num_groups):
            idx = torch.nonzero(labels == j).flatten()
            order = randperm(idx.numel(), generator, device=idx.device)
            picks.append(idx[order[: int(quota[j])]])
        return torch.cat(picks)

    def state_problems(self) -> list[str]:
        """Loaded state that cannot be right: a member naming a group that does not exist, or
        a group without members (the draw would then return one member for every input)."""
        if not bool(self.fitted):
            return []
        groups = self.member_group
        problems = []
        bad = (groups < 0) | (groups >= self.num_groups)
        if bool(bad.any()):
            problems.append(f"member_group holds {int(bad.sum())} group index(es) outside "
                            f"0..{self.num_groups - 1} (e.g. {int(groups[bad][0])})")
        else:
            empty = torch.bincount(groups, minlength=self.num_groups) == 0
            if bool(empty.any()):
                problems.append(f"member_group leaves {int(empty.sum())} of {self.num_groups} "
                                f"group(s) without members (e.g. group "
                                f"{int(torch.nonzero(empty)[0])})")
        return problems

    # -- the mechanism ------------------------------------------------------------------------
    def distances(self, f: Tensor) -> Tensor:
        """d(f, centre_j): Euclidean distance over the whole key feature, shape (N, m)."""
        return torch.cdist(_flat(f).double(), _flat(self.centres).double())

    def ranks(self, distances: Tensor) -> Tensor:
        """Rank 1 = nearest centre (ties broken by group index, deterministically)."""
        order = torch.argsort(distances, dim=-1, stable=True)
        ranks = torch.empty_like(order)
        ranks.scatter_(-1, order, torch.arange(1, distances.shape[-1] + 1,
                                               device=order.device).expand_as(order))
        return ranks

    def probabilities(self, f: Tensor, epsilon: float, rank_window: tuple[int, int],
                      mechanism: str = "window") -> Tensor:
        """The closed-form group distribution P(j | f), shape (N, m)."""
        self._require_fitted()
        eps = check_epsilon(epsilon)
        a, b = check_rank_window(rank_window, self.num_groups)
        if mechanism not in MECHANISMS:
            raise ValueError(f"mechanism must be one of {', '.join(MECHANISMS)}, "
                             f"got {mechanism!r}")
        d = self.distances(f.reshape(-1, *self.feature_shape))
        ranks = self.ranks(d)
        if mechanism == "strict":
            utility = strict_utilities(ranks, a, b, self.num_groups)
            candidates = torch.ones_like(ranks, dtype=torch.bool)
        else:
            candidates, utility = window_utilities(d, ranks, a, b)
        return exponential_mechanism_probabilities(utility, candidates, eps)

    def draw(self, f: Tensor, epsilon: float, rank_window: tuple[int, int],
             mechanism: str = "window", generator: torch.Generator | None = None) -> GroupDraw:
        """Draw a group per row with the mechanism, then one of its members uniformly."""
        generator = generator if generator is not None else fresh_generator()
        probs = self.probabilities(f, epsilon, rank_window, mechanism)
        group = categorical(probs, generator)
        # Uniform member of the drawn group: members sorted by group, pick offset ⌊u·count⌋.
        order = torch.argsort(self.member_group, stable=True).to(group.device)
        counts = torch.bincount(self.member_group, minlength=self.num_groups).to(group.device)
        starts = torch.cumsum(counts, 0) - counts
        u = uniform(group.shape, generator, device=group.device, dtype=torch.float64)
        offset = torch.minimum((u * counts[group]).floor().long(), counts[group] - 1)
        member = order[starts[group] + offset]
        return GroupDraw(group=group, member=member, probabilities=probs)

    def forward(self, f: Tensor, epsilon: float, rank_window: tuple[int, int],
                mechanism: str = "window", generator: torch.Generator | None = None) -> Tensor:
        """f̂: the drawn member for each row of f (N, *feature_shape)."""
        chosen = self.draw(f, epsilon, rank_window, mechanism, generator)
        return self.members[chosen.member.to(self.members.device)].to(f.dtype)

    @property
    def config(self) -> dict:
        return {"num_groups": self.num_groups, "num_members": self.num_members,
                "feature_shape": list(self.feature_shape)}


class AttributeAnonymizer(_FittedModule):
    """KAA: replace an attribute's key feature with the farthest sub-category mean.

    Fitted state: ``means`` (num_subcategories, *feature_shape), the average key feature of the
    faces that CLIP labels with each sub-category.
    """

    def __init__(self, num_subcategories: int = 2,
                 feature_shape: tuple[int, ...] | list[int] = (18, 512)):
        super().__init__()
        if num_subcategories < 2:
            raise ValueError("an attribute needs at least 2 sub-categories")
        self.num_subcategories = num_subcategories
        self.feature_shape = tuple(feature_shape)
        self.register_buffer("means", torch.zeros(num_subcategories, *self.feature_shape))

    @torch.no_grad()
    def fit(self, features: Tensor, labels: Tensor) -> "AttributeAnonymizer":
        """Average the key features (N, *feature_shape) per sub-category label (N,)."""
        if tuple(features.shape[1:]) != self.feature_shape or labels.shape != features.shape[:1]:
            raise ValueError("features must be (N, *feature_shape) and labels (N,)")
        counts = torch.bincount(labels, minlength=self.num_subcategories)
        if counts.numel() > self.num_subcategories or bool((counts == 0).any()):
            raise ValueError(f"every sub-category needs at least one labelled face "
                             f"(counts per sub-category: {counts.tolist()})")
        sums = torch.zeros_like(self.means).index_add_(0, labels.to(self.means.device),
                                                       features.to(self.means))
        self.means.copy_(sums / counts.to(sums).reshape(-1, *[1] * len(self.feature_shape)))
        self.fitted.fill_(True)
        return self

    def farthest(self, f: Tensor) -> Tensor:
        """Index of the farthest sub-category mean for each row, shape (N,)."""
        self._require_fitted()
        return torch.cdist(_flat(f).double(), _flat(self.means).double()).argmax(-1)

    def forward(self, f: Tensor) -> Tensor:
        return self.means[self.farthest(f)].to(f.dtype)

    @property
    def config(self) -> dict:
        return {"num_subcategories": self.num_subcategories,
                "feature_shape": list(self.feature_shape)}


class LaplaceIdentityAnonymizer(nn.Module):
    """Baseline (IdentityDP style): clip the key feature's L1 norm to C, add Laplace(0, Δ/ε).

    With every feature clipped to ‖f‖₁ ≤ C, the L1 sensitivity of f is Δ = 2C, so
    f̂ = clip(f) + Laplace(2C/ε) per coordinate is ε-DP for the feature (Laplace mechanism).
    """

    def __init__(self, clip_norm: float = 100.0):
        super().__init__()
        if not clip_norm > 0:
            raise ValueError("clip_norm must be > 0")
        self.clip_norm = float(clip_norm)

    @property
    def sensitivity(self) -> float:
        return 2.0 * self.clip_norm

    def clip(self, f: Tensor) -> Tensor:
        norms = _flat(f).abs().sum(-1).clamp(min=1e-12)
        scale = torch.clamp(self.clip_norm / norms, max=1.0)
        return f * scale.reshape(-1, *[1] * (f.dim() - 1))

    def forward(self, f: Tensor, epsilon: float,
                generator: torch.Generator | None = None) -> Tensor:
        eps = check_epsilon(epsilon)
        clipped = self.clip(f)
        if math.isinf(eps):
            return clipped
        if eps == 0:
            raise ValueError("the Laplace mechanism needs epsilon > 0 (ε = 0 is infinite noise)")
        scale = self.sensitivity / eps
        generator = generator if generator is not None else fresh_generator()
        # Laplace by inverse CDF from a uniform draw, so the passed generator controls it.
        u = uniform(f.shape, generator, device=f.device, dtype=torch.float64) - 0.5
        noise = -scale * torch.sign(u) * torch.log1p(-2.0 * u.abs())
        return clipped + noise.to(f)

    @property
    def config(self) -> dict:
        return {"clip_norm": self.clip_norm}


class KAnonymityIdentityAnonymizer(nn.Module):
    """Baseline: k-anonymity with the farthest group centre (paper Table 4).

    Uses the fitted GIA groups: every face is replaced by the centre (the average of at least
    k members) farthest from its key feature. Deterministic.
    """

    def forward(self, f: Tensor, groups: IdentityAnonymizer) -> Tensor:
        groups._require_fitted()
        far = groups.distances(f).argmax(-1)
        return groups.centres[far].to(f.dtype)
