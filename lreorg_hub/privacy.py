"""The privacy record (what ran, with which budget and seed) and the seeding rule.

Every result carries a record so a user, a reviewer or a log can tell exactly what protection
was applied and what it does and does not guarantee.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field

import torch

__all__ = ["PrivacyRecord", "make_generator", "GUARANTEES", "SCOPE_NOTE"]

SCOPE_NOTE = ("The guarantee concerns only the identity key feature's replacement. It says "
              "nothing about pixels outside the face, the recovered attributes, or the residual "
              "code, which still carry information about the input.")

GUARANTEES = {
    "window": ("ε-DP within the rank window (paper): the exponential mechanism draws a group "
               "among ranks a..b only; because the window depends on the input, the ε bound "
               "holds relative to the window, not over all groups. The own group is never "
               "drawn when a > 1."),
    "strict": ("ε-local-DP over all groups: every group is a candidate with a utility in "
               "[0, 1], so the probability of any group differs by at most a factor e^ε "
               "between any two inputs."),
    "laplace": ("Baseline (IdentityDP style): ε-DP Laplace noise on the L1-clipped identity key "
                "feature; scale = 2·clip_norm / ε."),
    "k-anonymity": ("Baseline: the identity key feature is replaced by the farthest group "
                    "centre (an average of the group's members). Deterministic; no ε-DP."),
    "none": "No identity anonymization ran.",
}


def make_generator(seed: int | None) -> tuple[torch.Generator, int, str]:
    """A CPU torch.Generator seeded from the user's seed, or from OS entropy when None.

    Returns (generator, seed used, "user" | "os-entropy"); the seed is returned so a result can
    be reproduced when the user asks for it.
    """
    if seed is None:
        seed, source = secrets.randbits(63), "os-entropy"
    else:
        if isinstance(seed, bool) or int(seed) != seed or seed < 0:
            raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
        seed, source = int(seed), "user"
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    return generator, seed, source


@dataclass
class PrivacyRecord:
    """What was applied to a face's latent code, in order."""

    anonymize: list[str]
    recover: list[str]
    mechanism: str
    epsilon: float | None
    rank_window: list[int] | None
    seed: int
    seed_source: str
    samples: int
    guarantee: str = ""
    scope: str = SCOPE_NOTE
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.guarantee:
            self.guarantee = GUARANTEES.get(self.mechanism, "")

    def to_dict(self) -> dict:
        """JSON-ready: ε = ∞ is written as the string "inf"."""
        d = asdict(self)
        if d["epsilon"] is not None and math.isinf(d["epsilon"]):
            d["epsilon"] = "inf"
        return d
