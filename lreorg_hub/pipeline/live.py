"""A live stream (a webcam), frame by frame, with the rules of SPEC §9 for streams.

There is no second pass on a stream, so a track's identity is drawn when the track is
*confirmed*: after ``confirm_frames`` frames in which the detector saw it, from the mean key
feature over those frames, with the track's coins HMAC(session secret, track id). Until then
the face is covered by the classical fallback (blur), never shown. The session's secret comes
from OS entropy and lives only in this object: it is never returned, shown or written.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import replace

import numpy as np

from ..method.rng import derive_seed
from . import stages
from .frames import encode_faces, render_frames
from .methods import LatentMethod
from .options import ProtectOptions
from .tracking import DETECTED, Tracker, TrackerSettings

__all__ = ["LiveSession"]


class LiveSession:
    """One stream's state: tracker, per-track feature sums and draws, the secret, the rate.

    Args:
        pipe: the pipeline. options: what is done to each face (checked; a seed is refused:
            a stream's coins are the session's secret). confirm_frames: detections before a
            track is drawn. detect_every: detector every N-th frame, tracking in between.
    """

    def __init__(self, pipe, options: ProtectOptions | None = None, *, confirm_frames: int = 5,
                 detect_every: int = 1, tracker: TrackerSettings = TrackerSettings()):
        from .video import base_record, check_video_options

        opts = check_video_options(pipe, options)
        if opts.seed is not None:
            raise ValueError("a live stream takes no seed: its coins come from a secret kept "
                             "by the session only")
        if isinstance(confirm_frames, bool) or not isinstance(confirm_frames, int) or \
                not 1 <= confirm_frames <= 300:
            raise ValueError(f"confirm_frames must be a whole number in 1..300, got "
                             f"{confirm_frames!r}")
        self.pipe, self.options = pipe, opts
        self.runner = pipe.methods[opts.method]
        self.record = base_record(pipe, self.runner, opts)   # what runs, ε per draw
        self.draws = isinstance(self.runner, LatentMethod) and self.runner.draws_identity(opts)
        self.confirm_frames, self.detect_every = confirm_frames, max(1, int(detect_every))
        self.tracker = Tracker(tracker)
        self._secret = secrets.token_bytes(32)
        self._sums: dict[int, tuple] = {}
        self.identities: dict[int, object] = {}
        self.frames, self.drawn = 0, 0
        self.fps: float | None = None        # frames processed per second (recent average)
        self._start = None

    def __repr__(self) -> str:  # never the secret, not even in a log line
        return (f"LiveSession(method={self.options.method!r}, frames={self.frames}, "
                f"tracks drawn={self.drawn})")

    def __deepcopy__(self, memo):  # Gradio may copy session state: share, never duplicate
        return self

    def process(self, image: np.ndarray, now: float | None = None) -> np.ndarray:
        """One frame (H, W, 3) uint8 in, the protected frame out."""
        started = time.perf_counter()
        now = started if now is None else now
        self._start = now if self._start is None else self._start
        detections = stages.detect(self.pipe.detector, image) \
            if self.frames % self.detect_every == 0 else None
        faces = self.tracker.update(now - self._start, detections)
        if self.draws:
            self._confirm(image, faces)
        frames, _, _ = render_frames(self.pipe, self.runner, self.options, [image], [faces],
                                     self.pipe.batch_size,
                                     identities=self.identities if self.draws else None)
        live = {f.track for f in faces}
        for t in [t for t in self._sums if t not in live]:   # ended tracks: forget them
            self._sums.pop(t, None)
        self.frames += 1
        seconds = time.perf_counter() - started
        rate = 1.0 / max(seconds, 1e-6)
        self.fps = rate if self.fps is None else 0.8 * self.fps + 0.2 * rate
        return frames[0]

    def _confirm(self, image: np.ndarray, faces) -> None:
        """Add the detected, not yet drawn faces' key features; draw the confirmed ones."""
        keys, codes = encode_faces(self.pipe, [image], [faces], self.pipe.batch_size,
                                   only=lambda f: f.state == DETECTED and
                                   f.track not in self.identities)
        if not keys:
            return
        for (_, face), feature in zip(keys, self.runner.track_features(codes)):
            total, count = self._sums.get(face.track, (0, 0))
            self._sums[face.track] = (total + feature, count + 1)
        ready = [t for t, (_, n) in self._sums.items() if n >= self.confirm_frames]
        if ready:
            import torch

            means = torch.stack([self._sums[t][0] / self._sums[t][1] for t in ready])
            drawn = self.runner.draw_tracks(
                means, replace(self.options, seed=None),
                [derive_seed(self._secret, f"track:{t}") for t in ready])
            for t, identity in zip(ready, drawn):
                self.identities[t] = identity
                self._sums.pop(t)
            self.drawn += len(ready)

    def summary(self) -> dict:
        """What the page shows: frames, tracks drawn, ε per track, frames per second."""
        return {"frames": self.frames, "tracks_drawn": self.drawn,
                "epsilon_per_track": self.record.epsilon if self.draws else None,
                "fps": None if self.fps is None else round(self.fps, 2)}
