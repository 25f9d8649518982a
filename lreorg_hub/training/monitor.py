"""What a training run shows while it runs: the CSV log, TensorBoard and the progress bar.

Each log row covers the window of steps since the previous row. Every term has its own
column per objective ("IOS/L_I", "AOS/L_s", …) and per keyword ("gender/L_s", …), averaged
over the steps of the window that ran that objective or keyword (empty when none did), so a
keyword's terms are visible in every row, not only in the rows whose last step drew it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from .objective import mode_of

__all__ = ["StepResult", "MODE_TERMS", "log_columns", "Window", "CsvLog"]

#: The terms of each objective, in the order of the paper's equations.
MODE_TERMS = {"IOS": ("L_I", "L_p", "L_f", "L_r"), "AOS": ("L_I_prime", "L_s", "L_f", "L_r")}


@dataclass
class StepResult:
    """One step's objective: the keyword, "IOS" or "AOS", the total and each term."""

    step: int
    keyword: str
    mode: str
    total: float
    terms: dict[str, float] = field(default_factory=dict)


def _groups(keywords: list[str]) -> list[tuple[str, str]]:
    """(column prefix, mode) for each objective used, then for each keyword."""
    modes = [m for m in MODE_TERMS if any(mode_of(k) == m for k in keywords)]
    return [(m, m) for m in modes] + [(k, mode_of(k)) for k in keywords]


def log_columns(keywords: list[str]) -> list[str]:
    """The CSV header for a run on these keywords."""
    columns = ["step", "window_steps"]
    for prefix, mode in _groups(keywords):
        columns += [f"{prefix}/total"] + [f"{prefix}/{t}" for t in MODE_TERMS[mode]]
    return columns + ["roundtrip_error", "seconds_per_step"]


class Window:
    """Sums and counts of every term since the last row, per objective and per keyword."""

    def __init__(self, keywords: list[str]):
        self.keywords = list(keywords)
        self.reset()

    def reset(self) -> None:
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0

    def add(self, result: StepResult) -> None:
        self.steps += 1
        for prefix in (result.mode, result.keyword):
            for name, value in (("total", result.total), *result.terms.items()):
                key = f"{prefix}/{name}"
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def means(self) -> dict[str, float]:
        return {k: self.sums[k] / self.counts[k] for k in self.sums}


class CsvLog:
    """``OUT/log.csv``, appended to; after a resume the rows past the checkpoint are dropped
    (they will be written again)."""

    def __init__(self, path: str | Path, keywords: list[str], resume_step: int):
        self.path = Path(path)
        self.columns = log_columns(keywords)
        rows = []
        if self.path.is_file():
            with self.path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                if reader.fieldnames == self.columns:  # a log of another layout is replaced
                    rows = [r for r in reader if int(r["step"]) <= resume_step]
        self.fh = self.path.open("w", newline="")
        self.writer = csv.DictWriter(self.fh, fieldnames=self.columns)
        self.writer.writeheader()
        self.writer.writerows(rows)
        self.fh.flush()

    def write(self, step: int, window: Window, roundtrip: float, seconds: float) -> dict:
        means = window.means()
        row = {c: "" for c in self.columns}
        row.update({k: f"{v:.6g}" for k, v in means.items() if k in row})
        row.update(step=step, window_steps=window.steps, roundtrip_error=f"{roundtrip:.3g}",
                   seconds_per_step=f"{seconds:.4g}")
        self.writer.writerow(row)
        self.fh.flush()
        return means

    def close(self) -> None:
        self.fh.close()
