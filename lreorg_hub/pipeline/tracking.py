"""Faces linked across the frames of a clip into tracks (SPEC §9), with their boxes and
landmarks smoothed over time.

- **Matching**: a small Hungarian matcher on box overlap (``scipy.optimize.
  linear_sum_assignment`` on 1 − IoU between each track's predicted box and each detection;
  a pair counts only above ``iou_threshold``). Why not a tracking package: the trackers that
  are maintained (ByteTrack, BoT-SORT, norfair, DeepSORT) either bring a detector framework
  with them or an appearance model — and an appearance model of *real faces* is exactly the
  identity comparison the SPEC rules out. A few faces per frame with constant-velocity
  prediction need 60 lines, and scipy is already installed (scikit-image depends on it).
- **Prediction**: each track keeps a constant-velocity model of its box (the velocity is an
  average of its last measured motions). Frames where the detector does not run
  (``--detect-every N``) get the predicted box and the last smoothed landmarks moved and
  scaled with it (``PREDICTED``: regenerated as usual).
- **Misses**: when the detector runs and does not find a live track, the track keeps going for
  ``max_missed`` frames at its predicted box, without landmarks (``MISSED``, also in the
  frames between detector runs: a face the detector lost is never redrawn there): the video
  runner covers it with the classical fallback, never leaves it clear; the record counts those
  frames. A face that stays away longer ends its track; when it comes back it is a new track
  (a new draw: the record says what that costs).
- **Smoothing**: a One Euro filter (Casiez et al., CHI 2012) per track on the box and on the
  landmarks: an exponential average whose cut-off frequency rises with speed, so a still face
  does not jitter and a moving face does not lag. Speeds are taken relative to the face's size,
  so the settings hold for small and large faces; times are the frames' own timestamps, so
  a variable frame rate is handled. A constant input is returned exactly (a still photo
  repeated gives identical crops).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..image.faces import Detection, box_iou

__all__ = ["DETECTED", "PREDICTED", "MISSED", "TrackedFace", "TrackerSettings", "Tracker",
           "OneEuroFilter", "unseen_before"]

DETECTED, PREDICTED, MISSED = "detected", "predicted", "missed"


@dataclass
class TrackedFace:
    """A track in one frame: its smoothed box and landmarks (None when ``MISSED``)."""

    track: int
    box: np.ndarray
    landmarks: np.ndarray | None
    score: float | None
    state: str

    @property
    def size(self) -> float:
        """The shorter side of the box (the small-face rule's measure)."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))

    def detection(self) -> Detection:
        """As a ``Detection`` for the stages (align needs landmarks; cover only the box)."""
        lm = self.landmarks if self.landmarks is not None else np.zeros((5, 2))
        return Detection(box=self.box.copy(), landmarks=lm.copy(), score=self.score or 0.0)


@dataclass(frozen=True)
class TrackerSettings:
    """iou_threshold: least overlap between a track's predicted box and a detection to link
    them. max_missed: frames a track survives after the detector ran and did not find it
    (every frame counts, whether the detector runs on it or not).
    min_cutoff (Hz) and beta (per face size per second): the One Euro filter's settings
    (lower min_cutoff: steadier at rest; higher beta: less lag in motion)."""

    iou_threshold: float = 0.2
    max_missed: int = 8
    min_cutoff: float = 1.0
    beta: float = 5.0

    def __post_init__(self):
        if not 0 < self.iou_threshold <= 1:
            raise ValueError(f"iou_threshold must be in (0, 1], got {self.iou_threshold!r}")
        if isinstance(self.max_missed, bool) or not isinstance(self.max_missed, int) or \
                not 0 <= self.max_missed <= 10_000:
            raise ValueError(f"max_missed must be a whole number of frames in 0..10000, got "
                             f"{self.max_missed!r}")
        for name in ("min_cutoff", "beta"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")


def unseen_before(face: TrackedFace, margin: float = 0.25) -> TrackedFace:
    """A new track's face in the frames since the detector's previous run (``--detect-every``
    N > 1), where it may already have been while nobody looked: covered (no landmarks) at its
    first box, widened by ``margin`` of its size on each side since it may have moved."""
    w, h = face.box[2] - face.box[0], face.box[3] - face.box[1]
    box = np.asarray(face.box, dtype=np.float64) + np.array([-w, -h, w, h]) * margin
    return TrackedFace(face.track, box, None, None, MISSED)


class OneEuroFilter:
    """x̂ₜ = x̂ₜ₋₁ + α(fc)·(xₜ − x̂ₜ₋₁), fc = min_cutoff + beta·|ẋ̂|/scale,
    α(fc) = 1 / (1 + 1/(2π·fc·Δt)), ẋ̂ itself smoothed at d_cutoff."""

    def __init__(self, min_cutoff: float, beta: float, d_cutoff: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff, beta, d_cutoff
        self.value: np.ndarray | None = None
        self.speed: np.ndarray | None = None
        self.time: float | None = None

    @staticmethod
    def _alpha(cutoff, dt: float):
        return 1.0 / (1.0 + 1.0 / (2 * math.pi * np.maximum(cutoff, 1e-9) * dt))

    def __call__(self, x: np.ndarray, time: float, scale: float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if self.value is None or self.time is None or time <= self.time:
            if self.value is None:
                self.value, self.speed = x.copy(), np.zeros_like(x)
            self.time = time if self.time is None else max(self.time, time)
            return self.value.copy()
        dt = time - self.time
        step = x - self.value            # 0 for a still input: the value stays exactly
        self.speed = self.speed + self._alpha(self.d_cutoff, dt) * (step / dt - self.speed)
        cutoff = self.min_cutoff + self.beta * np.abs(self.speed) / max(scale, 1e-6)
        self.value = self.value + self._alpha(cutoff, dt) * step
        self.time = time
        return self.value.copy()


@dataclass
class _Track:
    id: int
    box: np.ndarray                  # smoothed, at ``time``
    landmarks: np.ndarray            # smoothed, at ``time``
    time: float
    score: float
    box_filter: OneEuroFilter
    landmark_filter: OneEuroFilter
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))   # box units / s
    missed: int = 0
    hits: int = 1

    def predict(self, time: float) -> tuple[np.ndarray, np.ndarray]:
        """(box, landmarks) moved on by the constant-velocity model to ``time``."""
        box = self.box + self.velocity * (time - self.time)
        box = np.array([box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1)])
        centre, old = (box[:2] + box[2:]) / 2, (self.box[:2] + self.box[2:]) / 2
        scale = (box[2] - box[0]) / max(self.box[2] - self.box[0], 1e-6)
        return box, centre + (self.landmarks - old) * scale


class Tracker:
    """Links the detections of successive frames into tracks; one ``update`` per frame."""

    def __init__(self, settings: TrackerSettings = TrackerSettings()):
        self.settings = settings
        self.tracks: list[_Track] = []
        self.next_id = 0

    def update(self, time: float, detections: Sequence[Detection] | None) -> list[TrackedFace]:
        """The live tracks in the frame at ``time`` (seconds), in track order.

        detections: what the detector found in this frame, or None when it did not run
        (the tracks are then predicted)."""
        if detections is None:
            out = []
            for t in self.tracks:
                box, landmarks = t.predict(time)
                if t.missed:  # not found where the detector last ran: covered, not redrawn
                    t.missed += 1
                    if t.missed <= self.settings.max_missed:
                        out.append(TrackedFace(t.id, box, None, None, MISSED))
                else:
                    out.append(TrackedFace(t.id, box, landmarks, None, PREDICTED))
            self.tracks = [t for t in self.tracks if t.missed <= self.settings.max_missed]
            return out
        predicted = [t.predict(time) for t in self.tracks]
        pairs = self._match([p[0] for p in predicted], detections)
        out, matched = [], set()
        for k, t in enumerate(self.tracks):
            j = pairs.get(k)
            if j is None:
                t.missed += 1
                if t.missed <= self.settings.max_missed:
                    out.append(TrackedFace(t.id, predicted[k][0], None, None, MISSED))
                continue
            matched.add(j)
            self._measure(t, detections[j], time)
            out.append(TrackedFace(t.id, t.box.copy(), t.landmarks.copy(), t.score, DETECTED))
        self.tracks = [t for t in self.tracks if t.missed <= self.settings.max_missed]
        for j, d in enumerate(detections):
            if j not in matched:
                t = self._start(d, time)
                out.append(TrackedFace(t.id, t.box.copy(), t.landmarks.copy(), t.score,
                                       DETECTED))
        return sorted(out, key=lambda f: f.track)

    def _match(self, boxes: list[np.ndarray], detections: Sequence[Detection]) -> dict:
        """track index → detection index, by the Hungarian method on 1 − IoU."""
        if not boxes or not detections:
            return {}
        from scipy.optimize import linear_sum_assignment

        iou = box_iou(boxes, [d.box for d in detections])
        rows, cols = linear_sum_assignment(1.0 - iou)
        return {int(r): int(c) for r, c in zip(rows, cols)
                if iou[r, c] >= self.settings.iou_threshold}

    def _filters(self) -> tuple[OneEuroFilter, OneEuroFilter]:
        s = self.settings
        return OneEuroFilter(s.min_cutoff, s.beta), OneEuroFilter(s.min_cutoff, s.beta)

    def _start(self, d: Detection, time: float) -> _Track:
        box_filter, landmark_filter = self._filters()
        scale = max(d.size, 1.0)
        t = _Track(self.next_id, box_filter(d.box, time, scale),
                   landmark_filter(d.landmarks, time, scale), time, d.score, box_filter,
                   landmark_filter)
        self.next_id += 1
        self.tracks.append(t)
        return t

    def _measure(self, t: _Track, d: Detection, time: float) -> None:
        scale = max(d.size, 1.0)
        box = t.box_filter(d.box, time, scale)
        if time > t.time:  # velocity: an average of the measured (smoothed) motions
            motion = (box - t.box) / (time - t.time)
            t.velocity = motion if t.hits == 1 else 0.5 * t.velocity + 0.5 * motion
        t.box, t.landmarks = box, t.landmark_filter(d.landmarks, time, scale)
        t.time, t.score, t.missed, t.hits = time, d.score, 0, t.hits + 1
