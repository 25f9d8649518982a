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
from dataclasses import asdict, dataclass, field, fields

#: Largest seed a torch.Generator accepts (manual_seed takes 64-bit unsigned values).
SEED_MAX = 2**64 - 1

__all__ = ["SEED_MAX", "PrivacyRecord", "GUARANTEES", "SCOPE_NOTE", "NO_DP_NOTE", "OS_ENTROPY_NOTE",
           "USER_SEED_WARNING", "DP_MECHANISMS"]

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
