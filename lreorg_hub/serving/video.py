"""The app's Video tab without Gradio: the clip limits stated on the page, the upload checked
against them, anonymized (one identity draw per track) into a file inside the app's own cache
folder (so Gradio serves it and its ``delete_cache`` removes it), and its record in words.

Layer 4 (beside the rest of ``serving``): the pipeline and below, never Gradio.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..image.video import VideoLimits, VideoLoadError, probe_video
from ..pipeline.video import VideoOptions, check_video_options
from .requests import check_options, options_from_form
from .runtime import Runtime
from .text import RequestError, _sentence, describe_record

__all__ = ["ClipLimits", "CLIP_LIMITS", "ClipResult", "check_clip", "clip_gpu_seconds",
           "protect_clip", "describe_clip", "stream_options"]


@dataclass(frozen=True)
class ClipLimits:
    """What the Video tab accepts (stated on the page): length, frame size, rate."""

    max_seconds: float = 10.0
    max_side: int = 1280
    max_pixels: int = 1280 * 720
    max_fps: float = 60.0

    def video_limits(self) -> VideoLimits:
        return VideoLimits(max_side=self.max_side, max_pixels=self.max_pixels,
                           max_fps=self.max_fps, max_duration=self.max_seconds)

    def text(self) -> str:
        return (f"Clips of at most {self.max_seconds:g} s, {self.max_pixels:,} pixels per "
                f"frame (720p: 1280×720) and {self.max_fps:g} frames per second; MP4, MOV, MKV, "
                f"WebM or AVI. Every frame, the timing, the rotation and the sound are kept; "
                f"the file's metadata (location, device) is not.")


CLIP_LIMITS = ClipLimits()

#: GPU seconds per frame for ZeroGPU's duration (two passes at 1024 px on a shared GPU slice)
#: and the fixed part (weights to the GPU, writing).
GPU_SECONDS_PER_FRAME, GPU_SECONDS_FIXED = 0.15, 20


@dataclass
class ClipResult:
    path: str          # the anonymized clip, inside the app's cache folder
    record: dict       # the public record (record["extra"]["video"]: the per-video summary)
    text: str          # the record in words
    frames: int
    seconds: float


def check_clip(path: str | Path | None, limits: ClipLimits = CLIP_LIMITS):
    """The upload's header against the page's limits, one sentence per refusal."""
    if path is None:
        raise RequestError("Please upload a video clip first.")
    try:
        return probe_video(path, limits.video_limits())
    except VideoLoadError as exc:
        raise RequestError(_clip_message(str(exc), limits)) from None


def _clip_message(text: str, limits: ClipLimits) -> str:
    """The library's sentence in the page's words, without the server's file path."""
    if "lasts" in text:
        seconds = text.split("lasts ", 1)[1].split(" s", 1)[0]
        return (f"This clip lasts {seconds} s; this page takes clips of at most "
                f"{limits.max_seconds:g} s. Cut it and try again.")
    if "pixels per frame" in text or "frame sides" in text:
        return ("This clip's frames are too large or too small for this page (at most "
                "1280×720, at least 16 pixels a side); resize it and try again.")
    if "frames per second" in text:
        return (f"This clip's frame rate is outside what this page takes (up to "
                f"{limits.max_fps:g} frames per second).")
    reason = text.split("': ", 1)[1] if "': " in text else text
    if reason == "the file is empty":
        return "The uploaded file is empty."
    return _sentence(f"This file cannot be used as a video: {reason}")


def clip_gpu_seconds(path, limits: ClipLimits = CLIP_LIMITS) -> int:
    """ZeroGPU duration for one clip, from its frame count (a bad clip: the fixed part; it
    is refused before any GPU work)."""
    try:
        frames = probe_video(path, limits.video_limits()).frames
    except (VideoLoadError, OSError, TypeError):
        return GPU_SECONDS_FIXED
    return int(GPU_SECONDS_FIXED + math.ceil(frames * GPU_SECONDS_PER_FRAME))


def protect_clip(runtime: Runtime, path, options, out_dir: str | Path, progress=None,
                 limits: ClipLimits = CLIP_LIMITS) -> ClipResult:
    """Anonymize one uploaded clip into ``out_dir`` (the app's cache folder); options are
    the form's, checked here for a video."""
    options = check_options(runtime, options)
    try:
        options = check_video_options(runtime.pipeline, options)
    except ValueError as exc:
        raise RequestError(_sentence(str(exc))) from None
    check_clip(path, limits)
    folder = Path(out_dir) / f"lreorg-video-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    target = folder / "anonymized.mp4"
    start = time.perf_counter()

    def report(phase: str, done: int, total: int) -> None:
        if progress is not None:
            half = 0.5 if phase == "generate" else 0.0
            label = "finding and tracking faces" if phase == "track" else "anonymizing frames"
            progress(half + 0.5 * min(done / max(total, 1), 1.0), desc=label)

    try:
        result = runtime.pipeline.anonymize_video(
            path, target, options, video=VideoOptions(limits=limits.video_limits()),
            progress=report)
    except VideoLoadError as exc:
        folder.rmdir()
        raise RequestError(_clip_message(str(exc), limits)) from None
    except BaseException:
        folder.rmdir()   # the writer removed its temporary file
        raise
    record = result.record.to_dict()
    return ClipResult(str(target), record, describe_clip(record), result.frames,
                      time.perf_counter() - start)


def stream_options(runtime: Runtime, method: str, epsilon=None):
    """The Video and Webcam tabs' options: identity replaced once per tracked face (ε), and
    for the bundle's methods the paper's attributes recovered from each frame; the image
    baselines take none of these (``options_from_form`` drops them)."""
    from ..method import keywords as kw
    from ..pipeline.registry import METHODS

    info = METHODS.get(method)
    recover = tuple(k for k in kw.DEFAULT_RECOVER if k in runtime.recoverable) \
        if info is not None and info.needs == "bundle" else ()
    return options_from_form(runtime, method, (kw.IDENTITY,), recover, epsilon)


def describe_clip(record: dict) -> str:
    """The record in words, with what the clip adds (tracks, draws, covered frames)."""
    text = describe_record(record)
    if record.get("epsilon") is None and record.get("composition"):
        text += f"\n\n**Clip:** {record['composition']}"
    return text
