"""Writing a video (see ``video.py`` for the rules both halves keep): H.264 in MP4 by default,
the source's timing, rotation and audio, no metadata, atomic.

Layer 2 (with the rest of ``lreorg_hub.image``): numpy and PyAV only.
"""

from __future__ import annotations

import os
import uuid
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np

from .video import VideoFrame, VideoInfo, open_container

__all__ = ["CONTAINERS", "VideoWriter"]

#: Output containers: (video encoder, audio codecs that can be copied, audio re-encoder).
CONTAINERS = {
    "mp4": ("libx264", ("aac", "mp3", "ac3", "eac3", "alac", "opus", "flac"), "aac"),
    "mkv": ("libx264", None, "aac"),      # None: whatever FFmpeg's Matroska muxer accepts
    "webm": ("libvpx-vp9", ("opus", "vorbis"), "libopus"),
}
_FORMATS = {"mp4": "mp4", "mkv": "matroska", "webm": "webm"}


class VideoWriter:
    """Frames in (upright), a playable video out: H.264 in MP4 by default (yuv420p, plays in
    Chromium), the source's timing, rotation and audio, no metadata. Use as a context manager:
    the file appears at ``target`` only when the block ends without an error.

    Args:
        target: the output file (its folder must exist), or a binary file object opened for
            writing and seeking (MP4 goes back to its header): the caller's own atomic file
            (``OutDir.writer``), which then answers for what an error leaves.
        info: the source video (timing, rotation, audio).
        container: "mp4" (H.264), "mkv" (H.264) or "webm" (VP9).
        audio: copy the source's first audio stream (False: no audio).
        crf: the encoder's constant quality (lower = better; 18 is visually lossless for
            H.264).
    """

    def __init__(self, target: str | os.PathLike | BinaryIO, info: VideoInfo, *,
                 container: str = "mp4", audio: bool = True, crf: int = 18):
        if container not in CONTAINERS:
            raise ValueError(f"container must be one of {', '.join(CONTAINERS)}, got "
                             f"{container!r}")
        self.info, self.kind = info, container
        self.audio, self.crf = audio, int(crf)
        self.audio_note: str | None = None
        self.frames = 0
        if isinstance(target, (str, os.PathLike)):
            self.target = Path(target)
            self._tmp = self.target.with_name(f".{self.target.name}.tmp-"
                                              f"{uuid.uuid4().hex[:8]}{self.target.suffix}")
        else:
            self.target, self._tmp = target, None
        self._out = self._video = self._source = self._audio_in = self._audio_out = None
        self._packets = None
        self._pending = None      # the next source audio packet not yet muxed
        self._reencode = False
        self._held = None         # the last video packet, muxed once its duration is known

    # -- context -----------------------------------------------------------------------------
    def __enter__(self) -> "VideoWriter":
        import av

        self._out = av.open(str(self._tmp) if self._tmp is not None else self.target, "w",
                            format=_FORMATS[self.kind], options={"fflags": "+bitexact"})
        try:
            self._add_video()
            if self.info.audio is None:
                self.audio_note = "the clip has no audio"
            elif not self.audio:
                self.audio_note = "left out, as asked"
            else:
                self._add_audio()
        except BaseException:
            self._abort()
            raise
        return self

    def __exit__(self, kind, error, tb) -> None:
        if kind is not None:
            self._abort()
            return
        try:
            self._finish()
        except BaseException:
            self._abort()
            raise
        if self._tmp is not None:
            os.replace(self._tmp, self.target)

    # -- streams -----------------------------------------------------------------------------
    def _add_video(self) -> None:
        info = self.info
        rate = Fraction(info.fps).limit_denominator(1001)
        stream = self._out.add_stream(CONTAINERS[self.kind][0], rate=rate)
        self._even = self.kind != "webm"          # H.264 4:2:0 needs even sides
        stream.width = info.width + (info.width % 2 if self._even else 0)
        stream.height = info.height + (info.height % 2 if self._even else 0)
        stream.pix_fmt = "yuv420p"
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        # No B-frames: packets then come in presentation order (see _mux_video).
        stream.options = ({"crf": str(self.crf), "preset": "fast", "bf": "0"}
                          if self.kind != "webm" else
                          {"crf": str(self.crf + 13), "b": "0", "row-mt": "1", "deadline":
                           "good", "cpu-used": "4"})
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        self._video = stream

    def _add_audio(self) -> None:
        self._source = open_container(self.info.source, self.info.identity)
        self._audio_in = self._source.streams.audio[0]
        allowed = CONTAINERS[self.kind][1]
        name = self._audio_in.codec_context.name
        try:
            if allowed is not None and name not in allowed:
                raise ValueError(name)
            self._audio_out = self._out.add_stream_from_template(self._audio_in)
            self.audio_note = f"the audio ({name}) was copied unchanged"
        except ValueError:
            encoder = CONTAINERS[self.kind][2]
            self._audio_out = self._out.add_stream(encoder, rate=self._audio_in.rate or 48000)
            self._reencode = True
            self.audio_note = (f"the audio ({name}) was re-encoded to "
                               f"{encoder.replace('lib', '')}: the {self.kind} container cannot "
                               f"hold {name}")
        self._packets = self._source.demux(self._audio_in)

    # -- frames ------------------------------------------------------------------------------
    def write(self, image: np.ndarray, frame: VideoFrame) -> None:
        """One upright (H, W, 3) uint8 frame with the source frame's timing."""
        import av

        k = (self.info.rotation // 90) % 4
        stored = np.rot90(image, -k) if k else image
        if stored.shape[:2] != (self.info.height, self.info.width):
            raise ValueError(f"frame {frame.index} is {stored.shape[1]}x{stored.shape[0]}, "
                             f"the video is {self.info.width}x{self.info.height}")
        if self._even and (stored.shape[0] % 2 or stored.shape[1] % 2):
            stored = np.pad(stored, ((0, stored.shape[0] % 2), (0, stored.shape[1] % 2),
                                     (0, 0)), mode="edge")
        out = av.VideoFrame.from_ndarray(np.ascontiguousarray(stored), format="rgb24")
        out.pts, out.time_base = frame.pts, self.info.time_base
        self._mux_audio_until(frame.time)
        self._mux_video(self._video.encode(out))
        self.frames += 1

    def _mux_video(self, packets, last: bool = False) -> None:
        # Encoders stamp every packet with 1/rate. Without B-frames packets come in
        # presentation order, so each one lasts until the next one's pts and the last one
        # until the source's end: a variable-rate clip keeps every frame's length, and the
        # clip its duration.
        for packet in packets:
            if self._held is not None:
                self._held.duration = max(1, packet.pts - self._held.pts)
                self._out.mux(self._held)
            self._held = packet
        if last and self._held is not None:
            end = self.info.end
            if end is not None and end > self._held.pts:
                self._held.duration = end - self._held.pts
            self._out.mux(self._held)
            self._held = None

    def _mux_audio_until(self, seconds: float | None) -> None:
        """Copy (or re-encode) the source's audio packets up to ``seconds`` (None: all), so
        the two streams stay interleaved by time."""
        if self._packets is None:
            return
        while True:
            packet = self._pending if self._pending is not None else next(self._packets, None)
            self._pending = None
            if packet is None:
                self._packets = None
                return
            if packet.dts is None and packet.pts is None:
                continue  # the demuxer's final empty packet
            when = float((packet.dts if packet.dts is not None else packet.pts) *
                         packet.time_base)
            if seconds is not None and when > seconds:
                self._pending = packet
                return
            if self._reencode:
                for decoded in packet.decode():
                    decoded.pts = None
                    self._out.mux(self._audio_out.encode(decoded))
            else:
                packet.stream = self._audio_out
                self._out.mux(packet)

    def _finish(self) -> None:
        self._mux_video(self._video.encode(), last=True)
        self._mux_audio_until(None)
        if self._reencode:
            self._out.mux(self._audio_out.encode())
        self._close()

    def _close(self) -> None:
        for c in (self._out, self._source):
            if c is not None:
                c.close()
        self._out = self._source = None

    def _abort(self) -> None:
        try:
            self._close()
        except Exception:  # the temporary file goes whatever state the muxer is in
            pass
        if self._tmp is not None:
            self._tmp.unlink(missing_ok=True)
