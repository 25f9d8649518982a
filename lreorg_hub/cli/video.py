"""Videos in `lreorg anonymize`: the flags, their check before anything is read, and one clip
in, ``OUT/NAME.mp4`` (or .mkv / .webm) and ``OUT/NAME.json`` out, with a progress bar
(frames, frames per second, time left) for each of the two passes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path, PurePosixPath

__all__ = ["add_video_arguments", "video_options", "check_video_inputs", "anonymize_clip"]


def add_video_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("videos (mp4, mov, m4v, mkv, webm, avi)")
    g.add_argument("--detect-every", type=int, default=1, metavar="N",
                   help="run the face detector on every N-th frame and track the faces in "
                        "between (default 1: every frame)")
    g.add_argument("--draw", default="per-track", choices=["per-track", "per-frame"],
                   help="per-track (default): one identity draw per tracked face, used in "
                        "every frame of it; per-frame: a fresh draw in every frame, only as "
                        "the ablation that shows the flicker (n frames spend n·ε)")
    g.add_argument("--no-audio", action="store_true",
                   help="leave the audio out (default: the audio stream is copied unchanged)")
    g.add_argument("--video-format", default="mp4", choices=["mp4", "mkv", "webm"],
                   help="output container: mp4 (H.264, plays in browsers; default), mkv "
                        "(H.264) or webm (VP9)")


def video_options(args: argparse.Namespace):
    """The flags as ``VideoOptions`` (checked: one sentence on a bad value)."""
    from ..pipeline.video import VideoOptions

    return VideoOptions(detect_every=args.detect_every, draw=args.draw,
                        audio=not args.no_audio, container=args.video_format)


def check_video_inputs(pipe, options, inputs) -> None:
    """When a video is among the inputs, the options must fit a video too (checked before
    the first input is read)."""
    from ..image.video import is_video
    from ..pipeline.video import check_video_options

    if any(is_video(file) for file, _ in inputs):
        check_video_options(pipe, options)


def anonymize_clip(pipe, file: Path, stem: PurePosixPath, folder, options, video,
                   quiet: bool):
    """One clip: OUT/STEM.<format> and OUT/STEM.json (the public record), each written
    atomically into ``folder`` (an ``OutDir``: no link followed), the JSON after the clip; on
    any failure neither is left. Returns (the summary entry, the result)."""
    target, meta = f"{stem}.{video.container}", f"{stem}.json"
    bars = _Bars(file.name, quiet)
    try:
        with folder.writer(target) as f:
            # A clip in which no face was found is skipped and listed, as a photo is.
            result = pipe.anonymize_video(file, f, options, video=video, progress=bars,
                                          require_face=True)
    finally:
        bars.close()
    # The public record only (PrivacyRecord.to_dict): no input path, no box, no score.
    record = {"output": target, **result.to_dict()}
    try:
        folder.write(meta, json.dumps(record, indent=2).encode())
    except BaseException:
        folder.remove(target)  # a clip without its record is not left behind
        raise
    video_summary = result.record.extra["video"]
    return {"input": str(file), "output": target, "frames": result.frames,
            "tracks": video_summary["tracks"], "draws": video_summary["draws"]}, result


class _Bars:
    """One tqdm bar per pass ("tracking", then "generating"): frames, fps, time left."""

    def __init__(self, name: str, quiet: bool):
        from ..image.names import shown

        # escaped: a newline or a terminal escape in a file name is shown, never acted on
        self.name, self.quiet, self.bar, self.phase = shown(name), quiet, None, None

    def __call__(self, phase: str, done: int, total: int) -> None:
        if self.quiet:
            return
        from tqdm.auto import tqdm

        if phase != self.phase:
            self.close()
            label = {"track": "tracking", "generate": "generating"}.get(phase, phase)
            self.bar = tqdm(total=total, desc=f"{self.name}: {label}", unit="frame",
                            file=sys.stderr, leave=False)
            self.phase = phase
        self.bar.total = max(total, done)   # the header's count may have been an estimate
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
