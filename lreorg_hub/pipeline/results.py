"""What one protected photo gives back: the composed photo, every face's crops, the record
and the stage timings."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from PIL import Image

__all__ = ["FaceResult", "PipelineResult", "NoFaceError", "StageTimer"]

class NoFaceError(ValueError):
    """The photo has no face the detector could find (a user-readable message)."""


@dataclass
class FaceResult:
    """One processed face: crops in the aligned frame, and where it was in the photo."""

    index: int                      # position in the detector's order (left to right)
    box: list[float] | None         # x0, y0, x1, y1 in photo pixels (None for aligned input)
    score: float | None             # detector confidence
    aligned: Image.Image            # the aligned input crop
    anonymized: Image.Image | None  # G(s^M), sample 0 (the baseline's crop for baselines)
    recovered: Image.Image | None   # G(s^N), sample 0: what is pasted into the photo
    diverse: list[Image.Image] = field(default_factory=list)  # G(s^N) of every sample


@dataclass
class PipelineResult:
    """The composed photo, the per-face crops, what ran, and how long each stage took."""

    image: Image.Image
    faces: list[FaceResult]
    record: dict
    timings: dict[str, float]
    faces_found: int = 0

    def to_dict(self) -> dict:
        """JSON-ready summary (no pixels): what a CLI run writes next to each output."""
        return {
            "size": list(self.image.size),
            "faces_found": self.faces_found,
            "faces": [{"index": f.index, "box": f.box, "score": f.score,
                       "samples": len(f.diverse)} for f in self.faces],
            "record": self.record,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


class _Timer:
    def __init__(self, device: torch.device | None = None):
        self.timings: dict[str, float] = {}
        # CUDA kernels run asynchronously: a stage's time is only real after a sync.
        self._cuda = device if device is not None and device.type == "cuda" else None

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self._cuda is not None:
            torch.cuda.synchronize(self._cuda)
        start = time.perf_counter()
        try:
            yield
        finally:
            if self._cuda is not None:
                torch.cuda.synchronize(self._cuda)
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start
