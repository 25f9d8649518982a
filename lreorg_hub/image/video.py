"""Video files in and out through PyAV (its wheel ships FFmpeg with libx264, VP9, AAC and Opus;
no system ffmpeg is needed).

Rules kept by this module, as ``io.py`` keeps them for photos:

- **Every frame, its timing, the duration and the rotation.** Frames are read in decoding
  order with their own timestamps (pts in the stream's time base) and durations, and written
  back with the same ones, so a variable-frame-rate clip keeps its rhythm and its length. Phone
  clips store frames sideways with a display matrix: :class:`VideoReader` hands them out
  upright (faces are found upright), :class:`VideoWriter` turns them back and writes the same
  display matrix, so the output is stored and shown exactly like the input.
- **No metadata out.** Nothing of the input's container or stream metadata (location tags such
  as ``©xyz``, device make and model, titles, handler names) is copied: the output's streams
  are new, the audio is remuxed packet by packet with its codec parameters only, and the
  container is written ``bitexact`` (no encoder tag either).
- **Audio unchanged.** The first audio stream's packets are copied as they are, interleaved by
  time; only a codec the output container cannot hold (PCM in MP4, AAC in WebM) is re-encoded
  (AAC, or Opus for WebM), and :attr:`VideoWriter.audio_note` says so.
- **Nothing half-written.** The output is written to a hidden temporary file in the output's
  folder and moved into place with ``os.replace`` only when complete; an error or Ctrl-C
  removes it. (Or into a file object the caller opened, which then answers for it: the
  command line's ``OutDir.writer``.)
- **A source on disk or in memory.** A path, or the clip's bytes (the app reads an upload
  once and deletes it: the clip is then read from memory, never from a file again).
- **Clear refusals.** A damaged, empty, audio-only or zero-frame file, a codec FFmpeg cannot
  decode, and sizes or frame rates outside :class:`VideoLimits` raise :class:`VideoLoadError`
  with one sentence naming the file (escaped: ``names.described``).

This module reads (probe, frames); ``video_writer.py`` writes.

Layer 2 (with the rest of ``lreorg_hub.image``): numpy and PyAV only.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from .names import described

__all__ = ["VIDEO_SUFFIXES", "UNTESTED_VIDEO_SUFFIXES", "UNTESTED_VIDEO", "VideoLoadError",
           "VideoLimits", "VideoInfo", "VideoFrame", "probe_video", "VideoReader", "is_video"]

#: What ``lreorg anonymize`` and the dataset runner treat as a video.
VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi")

#: Video containers FFmpeg reads but this project has not tested (transport streams start late,
#: 3GP/FLV/WMV carry old codecs): refused with :data:`UNTESTED_VIDEO`, never read as photos.
UNTESTED_VIDEO_SUFFIXES = (".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".flv", ".wmv", ".asf",
                           ".mpg", ".mpeg", ".vob", ".ogv")
UNTESTED_VIDEO = ("a video in a container this tool does not take ({suffix}): remux or convert "
                  "it to .mp4 or .mkv first (taken: " + ", ".join(VIDEO_SUFFIXES) + ")")


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoLoadError(ValueError):
    """The file cannot be used as a video (one sentence naming the file)."""


@dataclass(frozen=True)
class VideoLimits:
    """What a video may be: frame sides in [min_side, max_side], at most ``max_pixels`` per
    frame, an average frame rate in (0, max_fps], and optionally at most ``max_duration``
    seconds and ``max_frames`` frames (the app's limits; the CLI has none)."""

    min_side: int = 16
    max_side: int = 8192
    max_pixels: int = 4096 * 2304
    max_fps: float = 480.0
    max_duration: float | None = None
    max_frames: int | None = None


@dataclass(frozen=True)
class VideoInfo:
    """A video stream as the header and its first frame describe it."""

    source: str | bytes = field(repr=False)   # the path, or the file's bytes in memory
    width: int                  # stored size (before rotation)
    height: int
    rotation: int               # degrees counter-clockwise that turn a stored frame upright
    frames: int                 # from the header, or estimated from duration × rate
    fps: float                  # average frame rate
    duration: float             # seconds
    codec: str
    time_base: Fraction
    audio: str | None           # the first audio stream's codec, if any
    end: int | None = None      # where the last frame ends, in time_base ticks (if known)
    #: the file as probed (device, inode, size, modification time): every later reading must
    #: find the same file, so a clip swapped between the passes is refused, never published
    identity: tuple | None = field(default=None, repr=False)

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of an upright frame."""
        return (self.height, self.width) if self.rotation % 180 else (self.width, self.height)


@dataclass
class VideoFrame:
    """One decoded frame: ``image`` upright (H, W, 3) uint8, its pts (stream time base), its
    duration (same unit, 0 when unknown), its time in seconds and its index."""

    image: np.ndarray
    pts: int
    duration: int
    time: float
    index: int


def open_container(source, identity: tuple | None = None):
    """The file (a path, or its bytes) opened by PyAV for reading, with one sentence for a
    missing, empty or unreadable file. ``identity``: what :func:`file_identity` said of the
    file when it was probed; a file that is no longer the same one is refused."""
    what = described(source)
    if isinstance(source, (bytes, bytearray)):
        if not source:
            raise VideoLoadError(f"cannot read video {what}: the file is empty")
        return _open(io.BytesIO(source), what)
    p = Path(source)
    if not p.is_file():
        raise VideoLoadError(f"cannot read video {what}: no such file")
    with open(p, "rb") as handle:
        if identity is not None and file_identity(handle) != identity:
            raise VideoLoadError(f"cannot read video {what}: the file changed while it was "
                                 f"being anonymized; nothing was written for it")
        if os.fstat(handle.fileno()).st_size == 0:
            raise VideoLoadError(f"cannot read video {what}: the file is empty")
        # FFmpeg opens the file this handle holds (/dev/fd/N), so the file checked is the one
        # read, whatever is renamed over the path meanwhile.
        by_handle = f"/dev/fd/{handle.fileno()}"
        return _open(by_handle if os.path.exists(by_handle) else str(p), what)


def _open(opened, what: str):
    import av

    try:
        return av.open(opened, "r")
    except av.FFmpegError as e:
        raise VideoLoadError(f"cannot read video {what}: not a video FFmpeg can open, or the "
                             f"file is damaged or incomplete ({_reason(e)})") from None


def file_identity(handle) -> tuple:
    """(device, inode, size, modification time) of an open file: equal only for the same,
    unchanged file."""
    st = os.fstat(handle.fileno())
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _reason(error: Exception) -> str:
    return " ".join(str(getattr(error, "strerror", None) or error).split())


def _video_stream(container, what: str):
    streams = [s for s in container.streams.video
               if not s.disposition & 0x400]   # AV_DISPOSITION_ATTACHED_PIC: cover art
    if not streams:
        if container.streams.audio:
            raise VideoLoadError(f"cannot read video {what}: it holds audio only, no video "
                                 f"stream")
        raise VideoLoadError(f"cannot read video {what}: no video stream could be read from "
                             f"it (a damaged or incomplete file, e.g. cut short)")
    stream = streams[0]
    if stream.codec_context is None or stream.codec_context.name in (None, "", "none"):
        raise VideoLoadError(f"cannot read video {what}: its video codec is not supported "
                             f"(FFmpeg has no decoder for it)")
    return stream


def probe_video(source: str | os.PathLike | bytes, limits: VideoLimits = VideoLimits()
                ) -> VideoInfo:
    """The video's size, rotation, rate, duration and frame count, checked against ``limits``
    (decodes the first frame to read the rotation and to prove the stream decodes).
    ``source``: a path, or the file's bytes."""
    import av

    what = described(source)
    identity = None
    if not isinstance(source, (bytes, bytearray)) and Path(source).is_file():
        with open(source, "rb") as handle:
            identity = file_identity(handle)
    with open_container(source, identity) as container:
        stream = _video_stream(container, what)
        ctx = stream.codec_context
        width, height = int(ctx.width or 0), int(ctx.height or 0)
        _check_size(width, height, limits, what)
        tb = stream.time_base or Fraction(1, 1)
        duration = float(stream.duration * tb) if stream.duration else \
            (container.duration or 0) / 1e6
        end = (stream.start_time or 0) + (stream.duration or round(duration / tb)) \
            if duration else None
        rate = stream.average_rate or stream.guessed_rate or stream.base_rate
        fps = float(rate) if rate else (stream.frames / duration if stream.frames and duration
                                        else 0.0)
        frames = int(stream.frames or round(duration * fps))
        audio = container.streams.audio[0].codec_context.name if container.streams.audio \
            else None
        kept = bytes(source) if isinstance(source, (bytes, bytearray)) else os.fspath(source)
        info = VideoInfo(kept, width, height, 0, max(frames, 1), fps, duration,
                         ctx.name, Fraction(tb), audio, end, identity)
        _check_timing(info, limits, what)   # from the header, before decoding anything
        try:
            first = next(container.decode(stream), None)
        except (av.FFmpegError, UnicodeDecodeError) as e:
            raise VideoLoadError(f"cannot read video {what}: its first frame does not decode "
                                 f"(damaged file or unsupported codec: {_reason(e)})") from None
        if first is None:
            raise VideoLoadError(f"cannot read video {what}: it holds no video frames (a "
                                 f"zero-length clip)")
        rotation = int(round(first.rotation or 0))
        if rotation % 90:
            raise VideoLoadError(f"cannot read video {what}: its display matrix rotates by "
                                 f"{rotation}°; only multiples of 90° are supported")
    return replace(info, rotation=rotation % 360)


def _check_size(width: int, height: int, limits: VideoLimits, what: str) -> None:
    if min(width, height) < limits.min_side or max(width, height) > limits.max_side:
        raise VideoLoadError(f"video {what} is {width}x{height} pixels: frame sides must be in "
                             f"{limits.min_side}..{limits.max_side}")
    if width * height > limits.max_pixels:
        raise VideoLoadError(f"video {what} is {width}x{height} = {width * height:,} pixels per "
                             f"frame, more than the limit of {limits.max_pixels:,}; downscale "
                             f"it first")


def _check_timing(info: VideoInfo, limits: VideoLimits, what: str) -> None:
    if not (0 < info.fps <= limits.max_fps) or not math.isfinite(info.fps):
        raise VideoLoadError(f"video {what} claims {info.fps:g} frames per second: the rate "
                             f"must be in (0, {limits.max_fps:g}]")
    if limits.max_duration is not None and info.duration > limits.max_duration:
        raise VideoLoadError(f"video {what} lasts {info.duration:.1f} s, longer than the limit "
                             f"of {limits.max_duration:g} s; cut it first")
    if limits.max_frames is not None and info.frames > limits.max_frames:
        raise VideoLoadError(f"video {what} has about {info.frames} frames, more than the "
                             f"limit of {limits.max_frames}")


class VideoReader:
    """The frames of a probed video, upright, with their timing.

    Timestamps are made strictly increasing (a missing pts follows the previous frame by its
    duration), so every decoded frame is kept and the writer can reuse them as they are."""

    def __init__(self, info: VideoInfo):
        self.info = info
        self.count = 0

    def __iter__(self) -> Iterator[VideoFrame]:
        import av

        what = described(self.info.source)
        k = (self.info.rotation // 90) % 4
        step = max(1, int(round(1 / (self.info.fps * self.info.time_base))))
        with open_container(self.info.source, self.info.identity) as container:
            stream = _video_stream(container, what)
            stream.thread_type = "AUTO"
            last = None
            try:
                for frame in container.decode(stream):
                    pts = frame.pts if frame.pts is not None else (
                        last + step if last is not None else 0)
                    if last is not None and pts <= last:
                        pts = last + 1
                    image = frame.to_ndarray(format="rgb24")
                    if k:
                        image = np.ascontiguousarray(np.rot90(image, k))
                    yield VideoFrame(image, int(pts), int(frame.duration or 0),
                                     float(pts * self.info.time_base), self.count)
                    last = pts
                    self.count += 1
            except (av.FFmpegError, UnicodeDecodeError) as e:
                raise VideoLoadError(f"cannot read video {what}: decoding stopped at frame "
                                     f"{self.count} (damaged or incomplete file: "
                                     f"{_reason(e)})") from None
            listed = int(stream.frames or 0)
            if listed and self.count < listed - max(2, listed // 100):
                # A file cut short after its index (MP4 "faststart") decodes without an
                # error, just fewer frames than its index lists.
                raise VideoLoadError(f"cannot read video {what}: it ends early, only "
                                     f"{self.count} of the {listed} frames its index lists "
                                     f"could be decoded (the file was cut short)")
