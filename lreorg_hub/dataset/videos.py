"""Datasets of videos: a folder of clips (mp4, mov, m4v, mkv, webm, avi), one clip per task.

A clip is a shard of one, so both engines (this process, a Ray actor pool) hand out one clip
per task and the exactly-once rules of ``run.py`` hold unchanged: the clip is written
atomically (``VideoWriter``: a hidden temporary file, then a rename; a leftover temporary
file is removed when the run resumes), then its record, then its manifest line. A clip is
anonymized while it is written (it streams through twice, never whole in memory), so its
work runs in the source's ``write_shard``, in the same process as ``anonymize_shard``.

Outputs mirror the input tree: ``OUT/<id without its suffix>.mp4`` (``OUT/<id>.mp4`` when two
inputs would collide, e.g. ``a.mov`` and ``a.mp4``). Each clip's run secret is HMAC-SHA256 of
the master secret and the clip's id (its per-track coins are HMAC of that secret and the
track): a rerun with the key file reproduces the clip; nothing about it is written. A clip in
which no face is found is kept (metadata stripped, re-encoded) or dropped, as ``--no-face``
says. The video settings are the defaults (one draw per track, every frame detected, audio
copied, H.264 in MP4).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from pathlib import Path

from .options import DatasetOptions
from .sources import WORK, ShardInput

__all__ = ["VideoFolderSource", "VideoShardInput", "VideoJob", "anonymize_video_shard",
           "holds_videos_only", "video_secret"]

_SECRET_CONTEXT = b"lreorg-hub dataset video secret v1\x00"


def _suffixes() -> tuple[tuple[str, ...], set[str]]:
    from ..image.video import VIDEO_SUFFIXES
    from .sources import IMAGE_SUFFIXES

    return VIDEO_SUFFIXES, IMAGE_SUFFIXES


def holds_videos_only(folder: Path) -> bool:
    """Whether ``folder`` (recursively) holds video files and no image file; a folder with
    both is refused (one run would silently leave the other kind out)."""
    videos, images = _suffixes()
    kinds = {p.suffix.lower() for p in folder.rglob("*") if WORK not in p.parts}
    if kinds & set(videos) and kinds & images:
        raise ValueError(f"{folder} holds both images and videos: run them separately, with "
                         f"--format folder (the images) and --format videos (the clips)")
    return bool(kinds & set(videos))


def video_secret(key: bytes, item_id: str) -> bytes:
    """A clip's run secret: HMAC-SHA256(master secret, context ‖ id)."""
    return hmac.new(key, _SECRET_CONTEXT + item_id.encode("utf-8"), hashlib.sha256).digest()


@dataclass
class VideoShardInput(ShardInput):
    """One clip: where it is and where its output goes (relative to OUT)."""

    sources: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


class VideoFolderSource:
    """Video files under a folder (recursive, sorted); id = path relative to it (POSIX)."""

    def __init__(self, spec):
        videos, _ = _suffixes()
        self.spec, self.root = spec, Path(spec.path)
        self._ids = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                           if p.suffix.lower() in videos and not p.is_dir()
                           and WORK not in p.relative_to(self.root).parts)
        taken, self._outputs = set(self._ids), {}
        for item in self._ids:
            name = Path(item).with_suffix(".mp4").as_posix()
            if name in self._outputs.values() or (name != item and name in taken):
                name = f"{item}.mp4"
            self._outputs[item] = name

    def ids(self) -> list[str]:
        return self._ids

    def read(self, shard: int, start: int, stop: int) -> VideoShardInput:
        ids = self._ids[start:stop]
        errors = [None if (self.root / i).is_file() else
                  "not a regular file (a FIFO, socket, device or dangling link); not read"
                  for i in ids]
        return VideoShardInput(shard, ids, [None] * len(ids), errors,
                               sources=[str(self.root / i) for i in ids],
                               outputs=[self._outputs[i] for i in ids])

    @staticmethod
    def write_shard(out: Path, shard: VideoShardInput, results: list, records: list[dict]):
        """Run each clip's job: the clip is anonymized into OUT as it is written."""
        for job, record in zip(results, records):
            if job is not None:
                record.update(job.run(out))

    def finalize(self, out: Path, parts: list[Path]) -> None:
        """Nothing to assemble: every clip was written in place."""


@dataclass
class VideoJob:
    """One clip to anonymize into ``OUT/output`` (runs where the pipeline lives)."""

    pipe: object
    source: str
    output: str
    options: DatasetOptions
    secret: bytes

    def run(self, out: Path) -> dict:
        from ..pipeline.video import VideoOptions

        target = out / self.output
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            result = self.pipe.anonymize_video(
                self.source, target, self.options.protect, secret=self.secret,
                video=VideoOptions(batch_frames=min(self.options.batch_size, 256)))
        except Exception as e:  # one clip never ends the run: it is that clip's record
            return {"status": "error", "error": f"{type(e).__name__}: {e}"}
        if result.record.extra["video"]["tracks"] == 0:
            if self.options.no_face == "drop":
                target.unlink(missing_ok=True)
            return {"status": "no-face", "frames": result.frames,
                    "note": ("kept without faces to protect (re-encoded, metadata stripped)"
                             if self.options.no_face == "pass" else "dropped from the output")}
        return {"status": "anonymized", "output": self.output, "frames": result.frames,
                **result.record.to_dict()}


def anonymize_video_shard(pipe, shard: VideoShardInput, options: DatasetOptions,
                          key: bytes) -> tuple[list, list[dict]]:
    """(a job per readable clip, a record per clip): the jobs run in ``write_shard``."""
    jobs, records = [], []
    for item, source, output, error in zip(shard.ids, shard.sources, shard.outputs,
                                           shard.errors):
        if error is not None:
            jobs.append(None)
            records.append({"id": item, "status": "error", "error": error})
            continue
        jobs.append(VideoJob(pipe, source, output, options, video_secret(key, item)))
        records.append({"id": item})
    return jobs, records
