"""`lreorg train --pilot N`: a short run that shows whether one loss term dominates.

Before and after N training steps, the objective of every trained keyword is evaluated on the
fixed held-out pairs; each term's *share* of an objective is |weight · term| divided by the
sum of |weight · term| over the objective's terms (absolute values, as L_I is negative when
the swap works). During the N steps, each term's *trend* is the mean over the first third of
the steps that ran its objective against the mean over the last third, and the round-trip
error is measured at 10 points. Nothing is checkpointed; the report is printed and written to
``OUT/pilot.json``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .losses import weighted_terms
from .monitor import MODE_TERMS

__all__ = ["term_shares", "PilotReport", "run_pilot"]


def term_shares(terms: dict[str, float], mode: str, config) -> dict[str, float]:
    """Each term's share of the objective: |weight·term| / Σ |weight·term|."""
    parts = {k: abs(float(v)) for k, v in weighted_terms(terms, mode, config.ios,
                                                          config.aos).items()}
    total = sum(parts.values())
    return {k: (v / total if total > 0 else 0.0) for k, v in parts.items()}


def _mode_means(results) -> dict[str, dict[str, float]]:
    """Held-out evaluations per keyword → mean term values per objective."""
    out: dict[str, dict[str, list[float]]] = {}
    for r in results:
        for name, value in r.terms.items():
            out.setdefault(r.mode, {}).setdefault(name, []).append(value)
    return {m: {t: sum(v) / len(v) for t, v in terms.items()} for m, terms in out.items()}


@dataclass
class PilotReport:
    """The pilot's numbers (plain values; ``table()`` is what the command prints)."""

    steps: int
    config: dict
    steps_per_mode: dict[str, int]
    before: dict[str, dict[str, float]]       # mode → term → value on the held-out pairs
    after: dict[str, dict[str, float]]
    shares_before: dict[str, dict[str, float]]
    shares_after: dict[str, dict[str, float]]
    trend: dict[str, dict[str, list[float]]]  # mode → term → [first third, last third]
    roundtrip: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    def dominant(self, limit: float = 0.5) -> list[str]:
        """Sentences naming each term above ``limit`` of its objective at the start."""
        return [f"{t} makes {s:.0%} of the {m} objective at the start"
                for m, shares in self.shares_before.items() for t, s in shares.items()
                if s > limit]

    def table(self) -> str:
        cfg = self.config
        lines = [f"pilot: {self.steps} steps ("
                 + ", ".join(f"{m} {n}" for m, n in self.steps_per_mode.items())
                 + f"), loss_reduction = {cfg['loss_reduction']}, latents = {cfg['latents']}, "
                 f"lr = {cfg['lr']:g}",
                 "",
                 f"{'objective':<10}{'term':<11}{'weight':>7}{'share@0':>9}"
                 f"{'share@N':>9}{'value@0':>11}{'value@N':>11}   trend in training "
                 f"(first third → last third)"]
        weights = {"IOS": cfg["ios_weights"], "AOS": cfg["aos_weights"]}
        names = {"IOS": ("identity", "perceptual", "latent", "information"),
                 "AOS": ("identity", "swap", "latent", "information")}
        for mode in self.before:
            for term, wname in zip(MODE_TERMS[mode], names[mode]):
                first, last = self.trend.get(mode, {}).get(term, [float("nan")] * 2)
                change = "" if first != first or first == 0 else \
                    f" ({(last - first) / abs(first):+.0%})"
                lines.append(
                    f"{mode:<10}{term:<11}{weights[mode][wname]:>7g}"
                    f"{self.shares_before[mode][term]:>9.1%}{self.shares_after[mode][term]:>9.1%}"
                    f"{self.before[mode][term]:>11.4g}{self.after[mode][term]:>11.4g}   "
                    f"{first:.4g} → {last:.4g}{change}")
        rt = self.roundtrip
        lines += ["", f"round-trip error: {rt[0]:.3g} at the start → {rt[-1]:.3g} after "
                      f"{self.steps} steps (max {max(rt):.3g})"]
        lines += [f"note: {d}" for d in self.dominant()]
        return "\n".join(lines)


def run_pilot(trainer, steps: int) -> PilotReport:
    """Run ``steps`` training steps of a fresh trainer and report the terms' shares."""
    if steps < 1:
        raise ValueError(f"--pilot needs a number of steps >= 1, got {steps}")
    s1, s2 = trainer.heldout_pairs()

    def held_out():
        return _mode_means([trainer.evaluate(k, s1, s2) for k in trainer.keywords])

    before = held_out()
    points = {round(i * steps / 10) for i in range(1, 11)}
    roundtrip = [trainer.measure_roundtrip()]
    history = []
    for i in range(1, steps + 1):
        history.append(trainer.train_step())
        if i in points:
            roundtrip.append(trainer.measure_roundtrip())
    after = held_out()
    trend: dict[str, dict[str, list[float]]] = {}
    per_mode: dict[str, list] = {}
    for r in history:
        per_mode.setdefault(r.mode, []).append(r)
    for mode, rows in per_mode.items():
        third = max(1, len(rows) // 3)
        for term in MODE_TERMS[mode]:
            values = [r.terms[term] for r in rows]
            trend.setdefault(mode, {})[term] = [sum(values[:third]) / third,
                                                sum(values[-third:]) / third]
    cfg = trainer.config
    return PilotReport(
        steps=steps, config=cfg.to_dict(),
        steps_per_mode={m: len(v) for m, v in per_mode.items()},
        before=before, after=after,
        shares_before={m: term_shares(v, m, cfg) for m, v in before.items()},
        shares_after={m: term_shares(v, m, cfg) for m, v in after.items()},
        trend=trend, roundtrip=roundtrip)
