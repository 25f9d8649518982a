"""The privacy record (what ran, with which budget and seed) and the seeding rule.

Every result carries a record so a user, a reviewer or a log can tell exactly what protection
was applied and what it does and does not guarantee. The record is meant to be published next
to the output, so it must not weaken the guarantee it states (SPEC §8):

- ε-DP assumes the draw's coins are secret. A seed drawn from OS entropy is therefore never
  kept: not in the record, not returned, not printed. A seed the user chose is recorded (they
  asked for reproducibility) with a warning that sharing it with the output lets anyone replay
  the draw for candidate photos and recognise the true one.
- Releasing k samples of one face spends k·ε (sequential composition): the record states the
  total beside the per-draw ε.
- ε = ∞ is a deterministic choice: the record says that no DP guarantee holds.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import asdict, dataclass, field, fields

import torch

__all__ = ["PrivacyRecord", "make_generator", "fresh_generator", "uniform", "normal", "randint",
           "randperm", "categorical", "GUARANTEES", "SCOPE_NOTE", "NO_DP_NOTE",
           "OS_ENTROPY_NOTE", "USER_SEED_WARNING", "SEED_MAX", "DP_MECHANISMS"]

#: Largest seed a torch.Generator accepts (manual_seed takes 64-bit unsigned values).
SEED_MAX = 2**64 - 1

#: Identity methods whose ε is a differential-privacy budget.
DP_MECHANISMS = ("window", "strict", "laplace")

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

NO_DP_NOTE = ("No differential-privacy guarantee holds: ε = ∞ makes the choice deterministic "
              "(always the best-scored candidates), so the output can depend on the input "
              "without any bound.")

OS_ENTROPY_NOTE = ("The random seed was drawn from OS entropy and not kept: it is not in this "
                   "record and cannot be recovered, as the ε-DP guarantee requires.")

USER_SEED_WARNING = ("This output was drawn with a seed you chose, recorded here. Anyone who "
                     "has the seed, the output and the public bundle can replay the draw for "
                     "candidate photos and recognise the true one: sharing the seed with the "
                     "output voids the privacy guarantee. Keep the seed secret, or leave it "
                     "unset (OS entropy) for outputs you publish.")


def fresh_generator() -> torch.Generator:
    """A CPU generator seeded from OS entropy: what every function that draws uses when it is
    given no generator (the one randomness policy; torch's global RNG is never used)."""
    return make_generator(None)[0]


def make_generator(seed: int | None) -> tuple[torch.Generator, int | None, str]:
    """A CPU torch.Generator seeded from the user's seed, or from OS entropy when None.

    Returns (generator, seed or None, "user" | "os-entropy"). An OS-entropy seed is *not*
    returned: it only lives inside the generator, so nothing downstream can record or show it.
    """
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.manual_seed(secrets.randbits(63))
        return generator, None, "os-entropy"
    if isinstance(seed, bool) or not isinstance(seed, (int, float)) or int(seed) != seed:
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be a non-negative integer up to 2^64 - 1 = {SEED_MAX}, "
                         f"got {seed!r}")
    generator.manual_seed(int(seed))
    return generator, int(seed), "user"


# -- random draws on any device -------------------------------------------------------------
# The rule that makes one seed work whatever the model's device: random numbers are only ever
# *created* on the generator's own device (a creation op with generator=) and then moved to
# where they are used. No op is given a generator together with input tensors, because CUDA
# kernels refuse a CPU generator (and a CUDA generator cannot drive CPU kernels). The same
# CPU generator therefore gives the same draws on CPU and on CUDA.


def _placed(t: torch.Tensor, device) -> torch.Tensor:
    return t if device is None else t.to(device)


def uniform(shape, generator: torch.Generator, device=None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U[0, 1) samples drawn on ``generator``'s device, placed on ``device`` (default: there)."""
    return _placed(torch.rand(shape, generator=generator, device=generator.device, dtype=dtype),
                   device)


def normal(shape, generator: torch.Generator, device=None,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, 1) samples drawn on ``generator``'s device, placed on ``device``."""
    return _placed(torch.randn(shape, generator=generator, device=generator.device, dtype=dtype),
                   device)


def randint(high: int, shape, generator: torch.Generator, device=None) -> torch.Tensor:
    """Integers uniform in [0, high) drawn on ``generator``'s device, placed on ``device``."""
    return _placed(torch.randint(high, shape, generator=generator, device=generator.device),
                   device)


def randperm(n: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """A uniform permutation of 0..n-1 drawn on ``generator``'s device, placed on ``device``."""
    return _placed(torch.randperm(n, generator=generator, device=generator.device), device)


def categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs`` (…, m) with P(j) ∝ probs[…, j], on ``probs``' device.

    Inverse-CDF sampling from one float64 uniform per row: u·Σp falls in [c_{j−1}, c_j) with
    probability p_j / Σp (c = cumulative sums). Entries with p = 0 have an empty interval and
    are never drawn. The uniform comes from :func:`uniform`, so any generator device works.
    """
    p = probs.to(torch.float64)
    cdf = torch.cumsum(p, dim=-1)
    u = uniform(p.shape[:-1] + (1,), generator, device=p.device, dtype=torch.float64)
    index = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
    # u·Σp rounds to Σp at most: fall back to the last index with positive probability.
    last = p.shape[-1] - 1 - torch.argmax((p.flip(-1) > 0).to(torch.uint8), dim=-1,
                                          keepdim=True)
    return torch.minimum(index, last).squeeze(-1)


def _number(x: float) -> str:
    """ε in words: 'inf' → '∞', integers without '.0'."""
    if math.isinf(x):
        return "∞"
    return f"{x:g}"


@dataclass
class PrivacyRecord:
    """What was applied to a face's latent code, in order, and what it guarantees.

    ``seed`` is None whenever ``seed_source == "os-entropy"`` (it is dropped here even if a
    caller passes one). ``epsilon`` is the budget of one draw and ``epsilon_total`` the budget
    of all ``samples`` draws released together (k·ε); both None when no ε-DP mechanism ran.
    ``warnings`` carry what a user must know before sharing the output (a chosen seed, ε = ∞).
    """

    anonymize: list[str]
    recover: list[str]
    mechanism: str
    epsilon: float | None
    rank_window: list[int] | None
    seed: int | None
    seed_source: str
    samples: int
    guarantee: str = ""
    scope: str = SCOPE_NOTE
    extra: dict = field(default_factory=dict)
    epsilon_total: float | None = None
    composition: str = ""
    seed_note: str = ""
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.seed_source not in ("user", "os-entropy", "none"):
            raise ValueError(f"seed_source must be 'user', 'os-entropy' or 'none', got "
                             f"{self.seed_source!r}")
        if self.seed_source == "none":  # deterministic methods (image baselines): no draw
            self.seed = None
            self.seed_note = self.seed_note or "No random draw: no seed was used."
        elif self.seed_source == "os-entropy":
            self.seed = None  # secret coins: never kept, whatever the caller passed
            self.seed_note = self.seed_note or OS_ENTROPY_NOTE
        elif self.mechanism in DP_MECHANISMS:
            self.seed_note = self.seed_note or "The seed was chosen by the user."
            if USER_SEED_WARNING not in self.warnings:
                self.warnings.append(USER_SEED_WARNING)
        else:  # k-anonymity / KAA only: deterministic, the seed changes nothing
            self.seed_note = self.seed_note or ("The seed was chosen by the user; no random "
                                                "draw depended on it.")
        infinite = self.epsilon is not None and math.isinf(self.epsilon)
        if not self.guarantee:
            self.guarantee = NO_DP_NOTE if infinite else GUARANTEES.get(self.mechanism, "")
        if self.epsilon is not None:
            self.epsilon_total = self.samples * self.epsilon
            k, eps = self.samples, _number(self.epsilon)
            self.composition = self.composition or (
                "No DP budget applies (ε = ∞)." if infinite else
                f"One draw spends ε = {eps}. " + (
                    f"{k} samples of each face are released together, so by sequential "
                    f"composition they spend {k}·ε = {_number(self.epsilon_total)} in total."
                    if k > 1 else "One sample is released: the total budget is ε = "
                                  f"{eps}."))
            if infinite and NO_DP_NOTE not in self.warnings:
                self.warnings.append(NO_DP_NOTE)

    @classmethod
    def from_dict(cls, d: dict) -> "PrivacyRecord":
        """Rebuild a record from ``to_dict()`` output (e.g. a pipeline result's ``record``,
        whose extra keys such as ``method`` are ignored), "inf" read back as ∞."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        for key in ("epsilon", "epsilon_total"):
            if values.get(key) == "inf":
                values[key] = math.inf
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-ready: ε = ∞ (per draw and in total) is written as the string "inf"."""
        d = asdict(self)
        for key in ("epsilon", "epsilon_total"):
            if d[key] is not None and math.isinf(d[key]):
                d[key] = "inf"
        return d

    def describe(self) -> str:
        """The record in plain words, for the app, the CLI and logs (no seed from OS entropy)."""
        lines = []
        if self.mechanism == "none":
            lines.append("Identity was not anonymized.")
        elif self.mechanism in ("window", "strict"):
            a, b = self.rank_window or ("?", "?")
            rows = self.extra.get("style_rows")
            sampler = (f"style-mix (training-free baseline: W+ rows [{rows[0]}, {rows[1]}) "
                       f"replaced by a synthetic identity whose group was drawn with the "
                       f"{self.mechanism} mechanism, ranks {a}..{b})" if rows else
                       f"the group sampler (GIA, {self.mechanism} mechanism, ranks {a}..{b})")
            lines.append(f"Identity anonymized by {sampler} with ε = {_number(self.epsilon)} "
                         f"per draw.")
        elif self.mechanism == "laplace":
            lines.append(f"Identity anonymized by the Laplace baseline with ε = "
                         f"{_number(self.epsilon)} per draw.")
        else:
            lines.append(f"Identity anonymized by the {self.mechanism} baseline (no ε).")
        attributes = [k for k in self.anonymize if k != "identity"]
        if attributes:
            lines.append("Attributes anonymized (farthest sub-category, KAA): "
                         + ", ".join(attributes) + ".")
        lines.append(("Recovered from the input: " + ", ".join(self.recover) + ".")
                     if self.recover else "No attribute was recovered from the input.")
        lines.append(f"Samples per face: {self.samples}.")
        if self.composition:
            lines.append(self.composition)
        lines.append("Guarantee: " + self.guarantee if self.guarantee else "Guarantee: none.")
        lines.append("Scope: " + self.scope)
        lines.append(self.seed_note if self.seed is None
                     else f"Seed: {self.seed} (chosen by the user).")
        lines.extend("Warning: " + w for w in self.warnings)
        return "\n".join(lines)
