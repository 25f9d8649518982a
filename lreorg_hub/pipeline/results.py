"""What one protected photo gives back, for every surface: the composed photo of every sample,
every face with its detection, alignment and crops, the public record, the private
diagnostics and the stage timings. Whoever shows a result reads it; nobody re-detects or
re-pastes."""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from PIL import Image

from ..image.faces import AlignTransform, Detection
from ..privacy import PrivacyRecord

__all__ = ["FaceResult", "PipelineResult", "NoFaceError", "StageTimer"]


class NoFaceError(ValueError):
    """The photo has no face the detector could find (a user-readable message)."""


@dataclass
class FaceResult:
    """One face the method protected.

    index: its position among the faces found (left to right, from 0).
    detection: what the detector found (box, landmarks, score); None for an aligned input.
    transform: the alignment between the crops and the photo; None for an aligned input.
    aligned: the aligned input crop.
    anonymized: G(s^M) of sample 0 (after anonymization, before recovery), when asked for
        and when it differs from the recovered face; for an image baseline, its crop.
    samples: the protected crop of every sample (G(s^N)); ``samples[0]`` is what the
        composed photo ``PipelineResult.image`` shows.
    """

    index: int
    detection: Detection | None
    transform: AlignTransform | None
    aligned: Image.Image
    anonymized: Image.Image | None
    samples: list[Image.Image] = field(default_factory=list)

    @property
    def recovered(self) -> Image.Image:
        """The protected crop of sample 0."""
        return self.samples[0]

    @property
    def box(self) -> list[float] | None:
        return None if self.detection is None else [float(v) for v in self.detection.box]


@dataclass
class PipelineResult:
    """One photo, protected.

    images: the composed photo of every sample (same size as the input, no metadata).
    anonymized_image: the photo with every face's anonymized crop (G(s^M)) pasted, when the
        anonymized crops were asked for and recovery changed them; else None.
    faces: the protected faces, in detection order.
    record: the public privacy record (``record.to_dict()`` is what may be published).
    diagnostics: private details (detector boxes and scores, faces covered by the fallback,
        the CDFNet information loss): for an opt-in log, never for publishing.
    timings: seconds per stage (for a batch: the whole batch's shared work).
    faces_found: every face the detector found (protected, covered or not selected).
    """

    images: list[Image.Image]
    faces: list[FaceResult]
    record: PrivacyRecord
    timings: dict[str, float]
    faces_found: int = 0
    anonymized_image: Image.Image | None = None
    diagnostics: dict = field(default_factory=dict)

    @property
    def image(self) -> Image.Image:
        """The protected photo (sample 0)."""
        return self.images[0]

    def to_dict(self) -> dict:
        """What a run writes next to each output: the image size and the public record."""
        return {"size": list(self.image.size), "record": self.record.to_dict()}


class StageTimer:
    """Seconds per stage; on CUDA a stage's time is only real after a sync, so it syncs."""

    def __init__(self, device: torch.device | None = None):
        self.timings: dict[str, float] = {}
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
