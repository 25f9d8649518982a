"""The privacy record: what ran, with which budget and seed, and what it guarantees.

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
- The record is *public*: it holds what a reader needs to judge the output (method, keywords,
  ε and its total, mechanism, the seed rule, the guarantee, how many faces were protected and
  how many were only covered by the fallback) and nothing that could single out the input
  (no input path, no detector box or score, no diagnostics: those go to an opt-in private
  log, see ``PipelineResult.diagnostics``). ``to_dict`` is the one place that builds it.

The bottom layer: plain Python, imported by ``lreorg_hub.method`` and everything above it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

__all__ = ["PrivacyRecord", "GUARANTEES", "SCOPE_NOTE", "NO_DP_NOTE", "OS_ENTROPY_NOTE",
           "DERIVED_SEED_NOTE", "USER_SEED_WARNING", "DP_IDENTITY", "IDENTITY_METHODS",
           "SEED_SOURCES"]

#: How the identity key feature can be replaced: GIA's group draw, the training-free
#: style-mix draw, the Laplace and k-anonymity baselines, or not at all.
IDENTITY_METHODS = ("gia", "style-mix", "laplace", "k-anonymity", "none")

#: Identity methods whose ε is a differential-privacy budget.
DP_IDENTITY = ("gia", "style-mix", "laplace")

#: Where a draw's coins came from: a seed the user typed, OS entropy (never kept), a secret
#: the caller keeps (a dataset's key file, a video run's secret; never recorded), or no draw.
SEED_SOURCES = ("user", "os-entropy", "derived", "none")


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

DERIVED_SEED_NOTE = ("The random seed was derived from a secret key kept by whoever ran this "
                     "(HMAC of the key, a salt of the run and the item); neither the key nor "
                     "the seed is in this record, so the draw cannot be replayed from the "
                     "output.")


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
    """What was applied to one photo's faces, in order, and what it guarantees (public).

    method: the method that ran ("lreorg", "style-mix", "laplace", "k-anonymity", "blur", …)
        and ``method_label`` its short label.
    identity: how the identity key feature was replaced (``IDENTITY_METHODS``); mechanism:
        "window" or "strict" for the group draws (GIA, style-mix), else None.
    epsilon: the budget of one draw; ``epsilon_total`` of all ``samples`` draws released
        together (k·ε); both None when no ε-DP draw ran.
    seed: only a seed the user chose (``seed_source == "user"``); None otherwise, whatever the
        caller passed.
    faces: faces protected by the method; faces_found: every face the detector found (the
        rest were not selected); faces_covered: faces found but too small to regenerate,
        covered by a classical fallback, per rule (e.g. {"blur": 2}).
    warnings: what a user must know before sharing the output (a chosen seed, ε = ∞).
    """

    method: str
    anonymize: list[str]
    recover: list[str]
    identity: str
    mechanism: str | None
    epsilon: float | None
    rank_window: list[int] | None
    seed: int | None
    seed_source: str
    samples: int
    faces: int = 0
    faces_found: int = 0
    faces_covered: dict[str, int] = field(default_factory=dict)
    method_label: str = ""
    guarantee: str = ""
    scope: str = SCOPE_NOTE
    extra: dict = field(default_factory=dict)
    epsilon_total: float | None = None
    composition: str = ""
    seed_note: str = ""
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.seed_source not in SEED_SOURCES:
            raise ValueError(f"seed_source must be one of {', '.join(SEED_SOURCES)}, got "
                             f"{self.seed_source!r}")
        if self.identity not in IDENTITY_METHODS:
            raise ValueError(f"identity must be one of {', '.join(IDENTITY_METHODS)}, got "
                             f"{self.identity!r}")
        if self.seed_source != "user":
            self.seed = None  # secret coins: never kept, whatever the caller passed
        if self.seed_source == "none":  # deterministic methods (image baselines): no draw
            self.seed_note = self.seed_note or "No random draw: no seed was used."
        elif self.seed_source == "os-entropy":
            self.seed_note = self.seed_note or OS_ENTROPY_NOTE
        elif self.seed_source == "derived":
            self.seed_note = self.seed_note or DERIVED_SEED_NOTE
        elif self.identity in DP_IDENTITY:
            self.seed_note = self.seed_note or "The seed was chosen by the user."
            if USER_SEED_WARNING not in self.warnings:
                self.warnings.append(USER_SEED_WARNING)
        else:  # k-anonymity / KAA only: deterministic, the seed changes nothing
            self.seed_note = self.seed_note or ("The seed was chosen by the user; no random "
                                                "draw depended on it.")
        infinite = self.epsilon is not None and math.isinf(self.epsilon)
        if not self.guarantee:
            key = self.mechanism if self.identity in ("gia", "style-mix") else self.identity
            self.guarantee = NO_DP_NOTE if infinite else GUARANTEES.get(key, "")
        self.epsilon_total = None
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
        """Rebuild a record from :meth:`to_dict` output, "inf" read back as ∞."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in d.items() if k in names}
        for key in ("epsilon", "epsilon_total"):
            if values.get(key) == "inf":
                values[key] = math.inf
        return cls(**values)

    def to_dict(self) -> dict:
        """The public record, JSON-ready: ε = ∞ (per draw and in total) written as "inf"."""
        d = asdict(self)
        for key in ("epsilon", "epsilon_total"):
            if d[key] is not None and math.isinf(d[key]):
                d[key] = "inf"
        return d

    def describe(self) -> str:
        """The record in plain words, for the app, the CLI and logs (no seed from OS entropy)."""
        lines = [f"Method: {self.method_label or self.method}."]
        eps = None if self.epsilon is None else _number(self.epsilon)
        if self.identity == "none":
            lines.append("Identity was not anonymized." if self.anonymize or self.recover
                         else "The face regions were obfuscated; no latent code was changed.")
        elif self.identity in ("gia", "style-mix"):
            a, b = self.rank_window or ("?", "?")
            rows = self.extra.get("style_rows")
            sampler = (f"style-mix (training-free baseline: W+ rows [{rows[0]}, {rows[1]}) "
                       f"replaced by a synthetic identity whose group was drawn with the "
                       f"{self.mechanism} mechanism, ranks {a}..{b})" if rows else
                       f"the group sampler (GIA, {self.mechanism} mechanism, ranks {a}..{b})")
            lines.append(f"Identity anonymized by {sampler} with ε = {eps} per draw.")
        elif self.identity == "laplace":
            lines.append(f"Identity anonymized by the Laplace baseline with ε = {eps} per "
                         f"draw.")
        else:
            lines.append(f"Identity anonymized by the {self.identity} baseline (no ε).")
        attributes = [k for k in self.anonymize if k != "identity"]
        if attributes:
            lines.append("Attributes anonymized (farthest sub-category, KAA): "
                         + ", ".join(attributes) + ".")
        if self.identity != "none" or self.anonymize:
            lines.append(("Recovered from the input: " + ", ".join(self.recover) + ".")
                         if self.recover else "No attribute was recovered from the input.")
            lines.append(f"Samples per face: {self.samples}.")
        lines.append(f"Faces protected: {self.faces}.")
        for rule, count in self.faces_covered.items():
            lines.append(f"Faces found but too small to regenerate, covered by {rule} instead: "
                         f"{count}." if rule != "keep" else
                         f"Faces found but too small to regenerate and left as they are "
                         f"(--small-faces keep): {count}.")
        if self.composition:
            lines.append(self.composition)
        lines.append("Guarantee: " + self.guarantee if self.guarantee else "Guarantee: none.")
        lines.append("Scope: " + self.scope)
        lines.append(self.seed_note if self.seed is None
                     else f"Seed: {self.seed} (chosen by the user).")
        lines.extend(f"Warning: {w}" for w in self.warnings)
        return "\n".join(lines)
