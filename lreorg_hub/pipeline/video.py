"""Videos in, anonymized videos out, one identity draw per track (SPEC §9).

A file is read twice, so memory does not grow with its length (only a few numbers per face
per frame are kept between the passes, never frames or codes):

1. **track and encode**: decode in batches; detect every ``detect_every``-th frame; link the
   detections into tracks (``tracking.py``: Hungarian matching, constant-velocity
   prediction, One Euro smoothing); encode the faces the detector saw and add each one's
   identity key feature to its track's sum. Then each track's identity replacement is drawn
   **once**, from the mean key feature over its frames, with the track's own coins
   ``SecretSeed(HMAC(run secret, track id))``.
2. **generate**: decode again; every frame's faces are aligned (smoothed landmarks), encoded,
   given their track's replacement (attributes and expression come from each frame's own
   residual), generated, pasted back, and frames are written as they come
   (``image.video.VideoWriter``: same timing, rotation and audio, no metadata, atomic).

``draw="per-frame"`` (a fresh draw for every face in every frame) exists only as the ablation
that shows why. The image baselines (blur, pixelate, mask) have no draw: every frame's tracked
boxes are obfuscated. A face the detector misses for a few frames keeps its track and is
covered by the fallback at its predicted box; the record counts those frames.

The run's secret is drawn from OS entropy and never written, unless the user typed a seed
(the secret is then derived from it, and the record keeps the seed with its warning) or the
caller passes one (a dataset run: the clip's item secret, HMAC of its key, the run's salt and
the clip's id, ``dataset.keys.item_secret``; the record says "derived").

The clip comes from a path or from its bytes in memory; it goes to a path (written
atomically) or into a file object the caller opened (``OutDir.writer``: the caller's own
atomic file).
"""

from __future__ import annotations

import os
import secrets
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO, Callable, Iterable, Iterator

import torch

from ..image.names import described
from ..image.video import VideoFrame, VideoLimits, VideoReader, probe_video
from ..image.video_writer import CONTAINERS, VideoWriter
from ..method.rng import derive_seed
from ..privacy import PrivacyRecord
from . import stages
from .frames import encode_faces, missed_rule, render_frames
from .methods import LatentMethod
from .options import ProtectOptions
from .results import NoFaceError, StageTimer
from .tracking import DETECTED, Tracker, TrackerSettings, unseen_before
from .video_record import TrackStats, track_diagnostics, video_record

__all__ = ["DRAWS", "VideoOptions", "VideoResult", "anonymize_video", "run_secret",
           "check_video_options", "base_record"]

DRAWS = ("per-track", "per-frame")
_SECRET_CONTEXT = b"lreorg-hub video track coins v1\x00"


@dataclass(frozen=True)
class VideoOptions:
    """How a clip is processed (what is done to each face is ``ProtectOptions``).

    detect_every: run the detector on every N-th frame, track in between. draw: "per-track"
    (one identity per track) or "per-frame" (the ablation). audio: copy the audio stream.
    container: "mp4" (H.264, default), "mkv" (H.264) or "webm" (VP9). batch_frames: frames
    per batch of the networks. tracker: matching, misses and smoothing. limits: the sizes,
    rates and lengths accepted. crf: the encoder's constant quality.
    """

    detect_every: int = 1
    draw: str = "per-track"
    audio: bool = True
    container: str = "mp4"
    batch_frames: int = 8
    tracker: TrackerSettings = field(default_factory=TrackerSettings)
    limits: VideoLimits = field(default_factory=VideoLimits)
    crf: int = 18

    def __post_init__(self):
        for name, top in (("detect_every", 1000), ("batch_frames", 256), ("crf", 51)):
            v = getattr(self, name)
            low = 0 if name == "crf" else 1
            if isinstance(v, bool) or not isinstance(v, int) or not low <= v <= top:
                raise ValueError(f"{name} must be a whole number in {low}..{top}, got {v!r}")
        if self.draw not in DRAWS:
            raise ValueError(f"draw must be 'per-track' or 'per-frame' (the ablation), got "
                             f"{self.draw!r}")
        if self.container not in CONTAINERS:
            raise ValueError(f"container must be one of {', '.join(CONTAINERS)}, got "
                             f"{self.container!r}")
        if not isinstance(self.audio, bool):
            raise ValueError(f"audio must be True or False, got {self.audio!r}")


@dataclass
class VideoResult:
    """One clip, anonymized: where it was written (None: into the caller's file object), its
    public record (the per-video summary is ``record.extra["video"]``), and the stage
    timings."""

    path: Path | None
    record: PrivacyRecord
    frames: int
    size: tuple[int, int]
    fps: float
    seconds: float
    timings: dict[str, float]
    #: private: each frame's tracked faces (boxes, landmarks), for evaluation; never published
    faces: list = field(default_factory=list, repr=False)

    @property
    def diagnostics(self) -> dict:
        """Private (the ``--private-log``, never published): per track its frames, where it
        was first seen and the detector's scores (``video_record.track_diagnostics``)."""
        return track_diagnostics(self.faces)

    def to_dict(self) -> dict:
        """What a run writes next to the clip: its size, frame count and the public record."""
        return {"size": list(self.size), "frames": self.frames, "fps": round(self.fps, 3),
                "record": self.record.to_dict()}


def run_secret(seed: int | None) -> tuple[bytes, int | None, str]:
    """(the run's secret, the seed to record, seed_source): from the user's seed (recorded,
    with its warning), else from OS entropy (kept only in memory, never written)."""
    if seed is None:
        return secrets.token_bytes(32), None, "os-entropy"
    return derive_seed(b"video-run", str(int(seed)), _SECRET_CONTEXT).to_bytes(8, "big"), \
        int(seed), "user"


def check_video_options(pipe, options: ProtectOptions | None) -> ProtectOptions:
    """The protect options, checked against the pipeline and for a video."""
    opts = pipe.check(options)
    if opts.aligned:
        raise ValueError("aligned does not apply to videos: frames are whole pictures")
    if opts.faces is not None:
        raise ValueError("faces does not apply to videos (faces are followed as tracks, all "
                         "of them are protected)")
    if (opts.samples or 1) != 1:
        raise ValueError("a video is anonymized once: samples must be 1")
    return opts


@torch.inference_mode()
def anonymize_video(pipe, src: str | os.PathLike | bytes, dst: str | os.PathLike | BinaryIO,
                    options: ProtectOptions | None = None,
                    video: VideoOptions = VideoOptions(), *, secret: bytes | None = None,
                    progress: Callable[[str, int, int], None] | None = None,
                    on_frame: Callable[[int, object], None] | None = None,
                    require_face: bool = False) -> VideoResult:
    """Anonymize the clip ``src`` (a path, or the file's bytes) into ``dst`` (a path, written
    atomically, its folder must exist; or a binary file object opened for writing and
    seeking, whose atomicity is the caller's).

    secret: the run's secret when the caller keeps one (per-track coins are HMAC(secret,
    track id); the record says "derived"); default: OS entropy, or the typed seed.
    progress(phase, frames done, frames expected): "track" then "generate".
    on_frame(index, frame): every output frame (upright (H, W, 3) uint8) as it is written.
    require_face: raise ``NoFaceError`` before anything is written when the detector finds no
    face in the whole clip (default: the clip is written, its record says 0 tracks).
    """
    opts = check_video_options(pipe, options)
    info = probe_video(src, video.limits)
    runner = pipe.methods[opts.method]
    latent = isinstance(runner, LatentMethod)
    draws = latent and runner.draws_identity(opts)
    if secret is not None and opts.seed is not None:
        raise ValueError("give a secret or a seed, not both")
    if secret is not None:
        seed_kept, source = None, "derived"
    else:
        secret, seed_kept, source = run_secret(opts.seed)
    opts = replace(opts, seed=None)
    timer, start = StageTimer(pipe.device), time.perf_counter()
    chunk = pipe.batch_size

    # Pass 1: track, and encode the detected faces for their track's mean key feature.
    plan, sums, seen = [], {}, set()
    tracker = Tracker(video.tracker)
    for batch in _batches(VideoReader(info), video.batch_frames):
        with timer("detect"):
            faces = [tracker.update(f.time, stages.detect(pipe.detector, f.image)
                                    if f.index % video.detect_every == 0 else None)
                     for f in batch]
        plan.extend(faces)
        for f, frame_faces in zip(batch, faces):
            for face in (x for x in frame_faces if x.track not in seen):
                seen.add(face.track)  # a new track: covered since the detector last looked
                for j in range(max(0, f.index - video.detect_every + 1), f.index):
                    plan[j].append(unseen_before(face))
        if draws and video.draw == "per-track":
            with timer("encode"):
                keys, codes = encode_faces(pipe, [f.image for f in batch], faces, chunk,
                                           only=lambda face: face.state == DETECTED)
                if keys:
                    features = runner.track_features(codes)
                    for (_, face), feature in zip(keys, features):
                        total, count = sums.get(face.track, (0, 0))
                        sums[face.track] = (total + feature, count + 1)
        if progress is not None:
            progress("track", len(plan), info.frames)

    if progress is not None:   # the header's frame count was an estimate (VFR): now known
        progress("track", len(plan), len(plan))
    if require_face and not seen:
        raise NoFaceError(f"No face was found in this clip: nothing was written. Try a clip "
                          f"where the face is clearly visible and at least "
                          f"{pipe.min_face_size} pixels wide.")
    identities = None
    if draws and video.draw == "per-track":
        with timer("draw"):
            ids = sorted(sums)
            means = torch.stack([sums[t][0] / sums[t][1] for t in ids]) if ids else None
            drawn = runner.draw_tracks(means, opts, [derive_seed(secret, f"track:{t}")
                                                     for t in ids]) if ids else []
            identities = dict(zip(ids, drawn))

    # Pass 2: generate every frame and write it.
    stats: dict[int, TrackStats] = {}
    base = base_record(pipe, runner, opts)
    with VideoWriter(dst, info, container=video.container, audio=video.audio,
                     crf=video.crf) as writer:
        for batch in _batches(VideoReader(info), video.batch_frames):
            if batch[-1].index >= len(plan):
                raise ValueError(f"{described(src)}: the second reading gave more frames than "
                                 f"the first")
            faces = [plan[f.index] for f in batch]
            seeds = None
            if draws and video.draw == "per-frame":
                def seeds(i, track, _batch=batch):
                    return derive_seed(secret, f"frame:{_batch[i].index}:track:{track}")
            with timer("generate"):
                frames, fates, _ = render_frames(pipe, runner, opts,
                                                      [f.image for f in batch], faces, chunk,
                                                      identities=identities, seeds=seeds)
            with timer("write"):
                for f, out, fate in zip(batch, frames, fates):
                    writer.write(out, f)
                    if on_frame is not None:
                        on_frame(f.index, out)
                    for track, what in fate.items():
                        stats.setdefault(track, TrackStats(track, f.index)).add(f.index, what)
            if progress is not None:
                progress("generate", batch[-1].index + 1, len(plan))
        if writer.frames != len(plan):
            raise ValueError(f"{described(src)}: the second reading gave {writer.frames} "
                             f"frames, the first {len(plan)}")
    for t in stats.values():
        t.draws = (1 if identities and t.track in identities else 0) if \
            video.draw == "per-track" else t.fates["regenerated"]
    if not draws:
        for t in stats.values():
            t.draws = 0
    record = video_record(base, [stats[k] for k in sorted(stats)], frames=len(plan),
                          draw=video.draw, draws_identity=draws, seed=seed_kept,
                          seed_source=source, detect_every=video.detect_every,
                          covered_rule=missed_rule(opts), audio_note=writer.audio_note)
    fps = len(plan) / info.duration if info.duration > 0 else info.fps   # counted, not claimed
    return VideoResult(Path(dst) if isinstance(dst, (str, os.PathLike)) else None, record,
                       len(plan), info.size, fps, time.perf_counter() - start,
                       timer.timings, plan)


def base_record(pipe, runner, opts: ProtectOptions) -> PrivacyRecord:
    """The method's record (what ran, ε, guarantee) before any face: from a run on no code
    (latent methods) or no face (image baselines)."""
    if isinstance(runner, LatentMethod):
        rows = (pipe.generator.n_latent, pipe.generator.style_dim)
        return runner.protect_codes(torch.zeros((0, *rows), device=pipe.device), opts).record
    from PIL import Image

    return runner.protect_photo(Image.new("RGB", (16, 16)), [], opts)[1]


def _batches(frames: Iterable[VideoFrame], size: int) -> Iterator[list[VideoFrame]]:
    batch = []
    for frame in frames:
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
