"""The app's Video tab without Gradio: the clip limits stated on the page, the upload checked
against them, anonymized (one new face per person followed through the clip) into a file in
the app's temporary folder, and its record in a visitor's words.

The clip arrives as bytes: the app reads the upload once and deletes it (``files``), exactly
as for a photo, so the clip is decoded from memory and never read from a file again. The
result is an MP4 file that the app hands to ``VisitorFiles.add_result``, so that it is
deleted on the results' schedule.

Layer 4 (beside the rest of ``serving``): the pipeline and below, never Gradio.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..image.video import VideoLimits, VideoLoadError, probe_video
from ..method import keywords as kw
from ..pipeline.registry import METHODS
from ..pipeline.results import NoFaceError
from ..pipeline.video import VideoOptions, check_video_options
from .form import method_form
from .requests import check_options, options_from_form
from .runtime import Runtime
from .text import (SHORT_NAMES, RequestError, _number, _sentence, page_sentence, record_details,
                   seed_sentence)

__all__ = ["ClipLimits", "CLIP_LIMITS", "ClipResult", "check_clip", "clip_gpu_seconds",
           "protect_clip", "clip_summary", "stream_options"]


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
    path: str          # the anonymized clip, in the app's temporary folder
    record: dict       # the public record (record["extra"]["video"]: the per-video summary)
    summary: str       # the record in a visitor's words
    details: str       # its technical side (for the page's fold)
    frames: int
    seconds: float


def check_clip(clip: bytes | None, limits: ClipLimits = CLIP_LIMITS):
    """The upload's header against the page's limits, one sentence per refusal."""
    if clip is None:
        raise RequestError("Please upload a video clip first.")
    try:
        return probe_video(clip, limits.video_limits())
    except VideoLoadError as exc:
        raise RequestError(_clip_message(str(exc), limits)) from None


def _clip_message(text: str, limits: ClipLimits) -> str:
    """The library's sentence in the page's words (it names no file: the clip is bytes)."""
    if " lasts " in text:
        seconds = text.split(" lasts ", 1)[1].split(" s", 1)[0]
        return (f"This clip lasts {seconds} s; this page takes clips of at most "
                f"{limits.max_seconds:g} s. Cut it and try again.")
    if "pixels per frame" in text or "frame sides" in text:
        return ("This clip's frames are too large or too small for this page (at most "
                "1280×720, at least 16 pixels a side); resize it and try again.")
    if "frames per second" in text:
        return (f"This clip's frame rate is outside what this page takes (up to "
                f"{limits.max_fps:g} frames per second).")
    reason = text.split(">: ", 1)[1] if ">: " in text else text
    if reason == "the file is empty":
        return "The uploaded file is empty."
    return _sentence(f"This file cannot be used as a video: {reason}")


def clip_gpu_seconds(clip, limits: ClipLimits = CLIP_LIMITS) -> int:
    """ZeroGPU duration for one clip, from its frame count (a bad clip: the fixed part; it
    is refused before any GPU work)."""
    try:
        frames = probe_video(clip, limits.video_limits()).frames
    except (VideoLoadError, OSError, TypeError):
        return GPU_SECONDS_FIXED
    return int(GPU_SECONDS_FIXED + math.ceil(frames * GPU_SECONDS_PER_FRAME))


def protect_clip(runtime: Runtime, clip: bytes | None, options, out_dir: str | Path,
                 progress=None, limits: ClipLimits = CLIP_LIMITS) -> ClipResult:
    """Anonymize one uploaded clip (its bytes) into a new folder of ``out_dir`` (the app's
    temporary folder); options are the form's, checked here for a video."""
    options = check_options(runtime, options)
    try:
        options = check_video_options(runtime.pipeline, options)
    except ValueError as exc:
        raise RequestError(page_sentence(str(exc), runtime.limits.max_epsilon,
                                         runtime.limits.max_samples)) from None
    check_clip(clip, limits)
    folder = Path(out_dir) / f"lreorg-video-{uuid.uuid4().hex}"
    folder.mkdir(parents=True)
    target = folder / "anonymized.mp4"
    start = time.perf_counter()

    def report(phase: str, done: int, total: int) -> None:
        if progress is not None:
            half = 0.5 if phase == "generate" else 0.0
            label = "finding and following faces" if phase == "track" else "replacing faces"
            progress(half + 0.5 * min(done / max(total, 1), 1.0), desc=label)

    try:
        result = runtime.pipeline.anonymize_video(
            clip, target, options, video=VideoOptions(limits=limits.video_limits()),
            progress=report, require_face=True)
    except VideoLoadError as exc:
        folder.rmdir()
        raise RequestError(_clip_message(str(exc), limits)) from None
    except NoFaceError:
        folder.rmdir()
        raise RequestError(f"No face was found in this clip. Try one where the face is clearly "
                           f"visible and at least {runtime.pipeline.min_face_size} pixels "
                           f"wide.") from None
    except BaseException:
        folder.rmdir()   # the writer removed its temporary file
        raise
    record = result.record.to_dict()
    return ClipResult(str(target), record, clip_summary(record), record_details(record),
                      result.frames, time.perf_counter() - start)


def stream_options(runtime: Runtime, method: str, epsilon=None):
    """The Video and Webcam tabs' options: identity replaced once per face followed, and what
    the Anonymize tab keeps by default for this method; the image baselines take none of
    these (``options_from_form`` drops them)."""
    if method not in runtime.methods:
        return options_from_form(runtime, method)   # its one sentence
    recover = method_form(runtime, method).recover_value
    return options_from_form(runtime, method, (kw.IDENTITY,), recover, epsilon)


def clip_summary(record: dict) -> str:
    """A clip's public record in a visitor's words (the technical side: ``record_details``)."""
    video = record["extra"]["video"]
    method = record.get("method", "?")
    name = SHORT_NAMES.get(method, method)
    faces = f"{video['tracks']} face(s) followed through {video['frames']} frames"
    if METHODS.get(method) is not None and METHODS[method].kind == "image":
        lines = [f"**Done:** {faces}, each covered in every frame ({name})."]
    else:
        lines = [f"**Replaced:** {faces}; each got one new face ({name}), the same in every "
                 f"frame, with the pose and expression of each frame."]
    if record.get("recover"):
        lines.append(f"**Kept from your clip:** {', '.join(record['recover'])}.")
    if video["face_frames_covered"]:
        lines.append(f"**Covered instead:** {video['face_frames_covered']} time(s) a face was "
                     f"missed for a moment or too small to replace, it was covered by "
                     f"{video['covered_by']}.")
    per_face = video["epsilon_per_draw"]
    if per_face is None:
        lines.append(f"**Privacy budget:** none used; {name} gives no formal guarantee.")
    else:
        lines.append(f"**Privacy budget:** {_number(per_face)} per face followed, "
                     f"{_number(video['epsilon_all_draws'])} for the whole clip. Someone who "
                     f"leaves the picture and comes back counts as a new face, so twice.")
    if seed_sentence(record):
        lines.append(seed_sentence(record))
    lines.append("**Not covered:** everything outside the faces, the sound, and what you chose "
                 "to keep.")
    return "\n\n".join(lines)
