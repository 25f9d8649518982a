"""Datasets of videos: a folder of clips (mp4, mov, m4v, mkv, webm, avi), one clip per task.

A clip is a shard of one, so both engines (this process, a Ray actor pool) hand out one clip
per task and the exactly-once rules of ``run.py`` hold unchanged: the clip is written
atomically through ``OutDir.writer`` (a hidden temporary file in its folder, reached without
following a link, renamed over its name when complete; a leftover temporary file is removed
when the run resumes), then its record, then its manifest line. A clip is anonymized while it
is written (it streams through twice, never whole in memory), so its work runs in the
source's ``write_shard``, in the same process as ``anonymize_shard``.

Outputs mirror the input tree: ``OUT/<id without its suffix>.mp4``, or ``OUT/<id>.mp4`` where
that name, compared ignoring case, is another clip's output or input (``a.mov`` beside
``a.mp4``). A clip's run secret is its item secret, HMAC-SHA256(key, context ‖ run salt ‖
id) (``keys.item_secret``: the same rule as a photo's seed), and its per-track coins are HMAC
of that secret and the track: a rerun with the key file reproduces the clip; nothing about it
is written. A clip in which no face is found is dropped (never written) or kept (re-encoded,
metadata stripped), as ``--no-face`` says. The video settings are the defaults (one draw per
track, every frame detected, audio copied, H.264 in MP4).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..image.names import shown
from .keys import item_secret
from .items import IMAGE_SUFFIXES, ShardInput
from .options import NO_FACE_NOTES, DatasetOptions
from .outdir import WORK, OutDir, OutputFolderError

__all__ = ["VideoFolderSource", "VideoShardInput", "VideoJob", "anonymize_video_shard",
           "holds_videos_only"]


def _video_suffixes() -> set[str]:
    from ..image.video import VIDEO_SUFFIXES

    return set(VIDEO_SUFFIXES)


def holds_videos_only(folder: Path) -> bool:
    """Whether ``folder`` (recursively) holds video files and no image file; a folder with
    both is refused (one run would silently leave the other kind out)."""
    kinds = {p.suffix.lower() for p in folder.rglob("*") if WORK not in p.parts}
    if kinds & _video_suffixes() and kinds & IMAGE_SUFFIXES:
        raise ValueError(f"{folder} holds both images and videos: run them separately, with "
                         f"--format folder (the images) and --format videos (the clips)")
    return bool(kinds & _video_suffixes())


def _not_a_clip(path: Path, item: str) -> str | None:
    """Why ``path`` is not read (never opened here: a FIFO would block), or None."""
    if item.split("/", 1)[0] == WORK:  # its output would land in the bookkeeping
        return (f"it lies in a folder named {WORK}, the name the output uses for its "
                f"bookkeeping; rename that folder; not read")
    try:
        st = os.stat(path)  # a link to a file is followed, as for photos
    except FileNotFoundError:
        return "a link to nothing; not read" if os.path.islink(path) else "no such file"
    except OSError as e:
        return f"cannot be read ({e.strerror or e})"
    if not stat.S_ISREG(st.st_mode):
        return "not a regular file (a FIFO, socket or device); not read"
    return None


@dataclass
class VideoShardInput(ShardInput):
    """One clip: where it is and where its output goes (relative to OUT)."""

    sources: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


class VideoFolderSource:
    """Video files under a folder (recursive, sorted); id = path relative to it (POSIX)."""

    def __init__(self, spec):
        self.spec, self.root = spec, Path(spec.path)
        videos = _video_suffixes()
        # Every video-named entry but folders is an item, so that a FIFO or a dangling link is
        # recorded as failed rather than silently missing.
        self._ids = sorted(p.relative_to(self.root).as_posix() for p in self.root.rglob("*")
                           if p.suffix.lower() in videos and not p.is_dir())
        taken = {i.casefold() for i in self._ids}
        used: set[str] = set()
        self._outputs = {}
        for item in self._ids:
            name = Path(item).with_suffix(".mp4").as_posix()
            if name.casefold() in used or (name != item and name.casefold() in taken):
                name = f"{item}.mp4"
            used.add(name.casefold())
            self._outputs[item] = name

    def ids(self) -> list[str]:
        return self._ids

    def read(self, shard: int, start: int, stop: int) -> VideoShardInput:
        ids = self._ids[start:stop]
        errors = [_not_a_clip(self.root / i, i) for i in ids]
        errors = [None if e is None else f"cannot read file: {e}" for e in errors]
        return VideoShardInput(shard, ids, [None] * len(ids), errors,
                               origins=[{"input": str(self.root / i)} for i in ids],
                               sources=[str(self.root / i) for i in ids],
                               outputs=[self._outputs[i] for i in ids])

    @staticmethod
    def write_shard(out: OutDir, shard: VideoShardInput, results: list, records: list[dict]
                    ) -> None:
        """Run each clip's job: the clip is anonymized into OUT as it is written."""
        for job, record in zip(results, records):
            if job is not None:
                record.update(job.run(out))

    def finalize(self, out: OutDir, parts: list[str]) -> None:
        """Nothing to assemble: every clip was written in place."""


class _Dropped(Exception):
    """No face in the clip and --no-face drop: its temporary file is removed, never renamed."""

    def __init__(self, result):
        self.result = result


@dataclass
class VideoJob:
    """One clip to anonymize into ``OUT/output`` (runs where the pipeline lives). ``log`` is
    the clip's private log entry, completed when the job runs."""

    pipe: object
    item: str
    source: str
    output: str
    options: DatasetOptions
    secret: bytes
    log: dict

    def run(self, out: OutDir) -> dict:
        """The clip's public record fields (and its private log entry completed)."""
        from ..pipeline.video import VideoOptions

        drop = self.options.no_face == "drop"
        try:
            with out.writer(self.output) as f:
                result = self.pipe.anonymize_video(
                    self.source, f, self.options.protect, secret=self.secret,
                    video=VideoOptions(batch_frames=min(self.options.batch_size, 256)))
                if drop and result.record.extra["video"]["tracks"] == 0:
                    raise _Dropped(result)
        except _Dropped as dropped:
            result = dropped.result
        except OutputFolderError:
            raise  # a link or a file in the way inside OUT: the run stops with this line
        except Exception as e:  # one clip never ends the run: it is that clip's record
            self.log["error"] = f"{type(e).__name__}: {shown(e)}"
            # The public record names the clip by its id, never by where it lies.
            return self._logged({"status": "error", "error": self.log["error"].replace(
                shown(self.source), self.item)})
        self.log["diagnostics"] = result.diagnostics
        if result.record.extra["video"]["tracks"] == 0:
            return self._logged({"status": "no-face", "frames": result.frames,
                                 "output": "dropped" if drop else self.output,
                                 "note": NO_FACE_NOTES[self.options.no_face]})
        return self._logged({"status": "anonymized", "output": self.output,
                             "frames": result.frames, **result.record.to_dict()})

    def _logged(self, record: dict) -> dict:
        self.log.update({k: record[k] for k in ("status", "output") if k in record})
        return record


def anonymize_video_shard(pipe, shard: VideoShardInput, options: DatasetOptions, key: bytes,
                          salt: str) -> tuple[list, list[dict], list[dict]]:
    """(a job per readable clip, a public record per clip, a private log entry per clip): the
    jobs run in ``write_shard``, which completes the records and the log entries."""
    jobs, records, private = [], [], []
    for i, (item, source, output, error) in enumerate(zip(shard.ids, shard.sources,
                                                         shard.outputs, shard.errors)):
        log = {"id": item, **shard.origin(i)}
        private.append(log)
        if error is not None:
            jobs.append(None)
            records.append({"id": item, "status": "error", "error": error})
            log.update(status="error", error=error)
            continue
        jobs.append(VideoJob(pipe, item, source, output, options, item_secret(key, salt, item),
                             log))
        records.append({"id": item})
    return jobs, records, private
