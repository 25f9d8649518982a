"""Anonymize a whole dataset, resumably, in this process or on a Ray cluster.

Work is cut into *shards*: runs of ``shard_size`` consecutive items in the source's fixed
order. A shard is the unit of batching, of writing and of bookkeeping:

1. its items are read, anonymized through ``LReOrgPipeline.run_batch`` (faces of many photos
   and all samples share the backbone passes), each with the seed HMAC(secret, run salt ‖
   item id) (``keys.py``);
2. its outputs are written, every file atomically (temporary file + rename);
3. only then is the shard appended to the manifest (``OUT/_lreorg/manifest.jsonl``).

A rerun skips the shards in the manifest and redoes the others from scratch. A shard
interrupted between 2 and 3 is redone and overwrites the same files with the same bytes
(same seeds, same batch composition), so after any kill (the driver, or a Ray actor, which
Ray restarts and whose task it retries) every item ends up processed exactly once. Both
engines run the same shard code on the same shards, so they give bit-identical outputs for
the same key, device, dtype, batch size and, on CPU, number of torch threads (``threads``:
CPU kernels sum in an order that depends on it).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

from . import engines
from .keys import check_salt, key_fingerprint, new_salt
from .options import ENGINES, DatasetOptions, DatasetRunError, PipelineSpec
from ..image.names import shown
from .outdir import WORK, OutDir, refuse_overlap
from .privatelog import PrivateLog
from .shards import RUN, Manifest, check_run, finalize
from .sources import SourceSpec, detect_kind, open_source

__all__ = ["anonymize_dataset"]


def anonymize_dataset(src: str | Path, out: str | Path,
                      key: bytes | Callable[[], bytes], *,
                      options: DatasetOptions | None = None,
                      pipeline: PipelineSpec | None = None, engine: str = "local",
                      kind: str = "auto", image_column: str | None = None,
                      id_column: str | None = None, cell_root: str | Path | None = None,
                      private_log: str | Path | None = None, salt: str | None = None,
                      address: str | None = None,
                      actors: int = 1, gpus_per_actor: float = 0.0,
                      cpus_per_actor: float = 1.0, threads: int | None = None,
                      progress: bool = False,
                      on_shard: Callable[[dict], None] | None = None,
                      _fault: dict | None = None) -> dict:
    """Anonymize every item of ``src`` into ``out``; resumes a run found there.

    Args:
        src: a folder of images, a .parquet file, or a ``save_to_disk`` dataset folder.
        out: the output folder (created): new, empty, or holding this same run (resumed).
            Must be on storage every worker can write (a shared filesystem on a cluster).
            An input inside it, or it inside the source, is refused; links in it are never
            followed; a second run on it at the same time is refused (a lock).
        key: the master secret (``keys.load_or_create_key``), or a function returning it,
            called only once the run is checked and has work to do (so a refused or
            finished run creates no key file); never written here. A resumed run must be
            given the same key (``run.json`` keeps a keyed fingerprint of it).
        options / pipeline: what to do to each item / how to build the pipeline.
        engine: "local" (this process) or "ray" (Ray Data, an actor pool).
        kind: "auto", "folder", "parquet", "hf" or "videos" (a folder of clips, one clip per
            task and per shard: ``videos.py``).
        image_column / id_column: for table formats (auto-detected / row number).
        cell_root: the folder a table cell's ``path`` may lead into (default: the table's
            own folder; absolute paths are read only below an explicit root).
        private_log: a file outside ``out`` that gets one JSON line per item with what the
            public records leave out (input path, detector boxes and scores, diagnostics).
        salt: the run's salt (hex, 16 bytes), bound into every item's seed; default a fresh
            random one, kept in ``run.json``. Give another run's to reproduce it in a new
            ``out`` (a resumed run uses its own).
        address: Ray cluster to attach to (None: the running one, or a local one).
        actors, gpus_per_actor, cpus_per_actor: the Ray actor pool.
        threads: torch CPU threads of each worker (this process, or each Ray actor); default:
            torch's own locally, ``int(cpus_per_actor)`` on Ray. CPU outputs are bit-identical
            across engines only for the same number (see the module docstring).
        on_shard: called with each shard's manifest entry once it is recorded.

    Returns a summary: items, shards, done now, skipped (from earlier runs), counts, and the
    ids of the items without a face (``no_face_items``) and of those that failed
    (``failed_items``).
    """
    options = options or DatasetOptions()
    pipeline = pipeline or PipelineSpec()
    if engine not in ENGINES:
        raise ValueError(f"engine must be 'local' or 'ray', got {engine!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads must be a positive whole number, got {threads!r}")
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise ValueError(f"actors must be a positive whole number, got {actors!r}")
    if not (0 <= gpus_per_actor < float("inf")) or not (0 < cpus_per_actor < float("inf")):
        raise ValueError(f"gpus_per_actor must be >= 0 and cpus_per_actor > 0, got "
                         f"{gpus_per_actor!r} and {cpus_per_actor!r}")
    if salt is not None:
        check_salt(salt)
    src, out = Path(src).expanduser(), Path(out).expanduser()
    kind = detect_kind(src) if kind == "auto" else kind
    if kind not in ("folder", "parquet", "hf", "videos"):
        raise ValueError(f"format must be auto, folder, parquet, hf or videos, got {kind!r}")
    if kind == "videos":  # one clip per task (dataset/videos.py)
        options = replace(options, shard_size=1)
    # Nothing is written where an original lies: a Parquet file may sit beside --out, a
    # folder may not hold it.
    refuse_overlap(out, [src], out_inside_inputs=kind != "parquet")
    cell_root = _check_cell_root(cell_root, kind, out)
    source_spec = SourceSpec(kind, str(src.resolve()), image_column, id_column,
                             cell_root=cell_root, out=os.path.realpath(out))
    source = open_source(source_spec)
    ids = source.ids()
    if not ids:
        raise DatasetRunError(f"{shown(src)} holds no items (for a folder: no image files in "
                              f"it or its sub-folders; for --format videos: no video files)")
    log = PrivateLog(private_log, out, inputs=[src]) if private_log is not None else None
    count, size = len(ids), options.shard_size
    n_shards = (count + size - 1) // size
    # json.dumps, not a join: ids may hold any character, newlines included.
    run = {"version": 2, "format": kind, "source": source_spec.path, "items": count,
           "ids_sha256": hashlib.sha256(json.dumps(ids).encode()).hexdigest(),
           "image_column": getattr(source, "image_column", None), "id_column": id_column,
           "cell_root": cell_root, "options": options.settings(),
           "pipeline": pipeline.settings()}
    folder = OutDir(out)
    old = check_run(folder, run)
    if old is None:
        _refuse_foreign(out)
    manifest = Manifest(folder)
    todo = [k for k in range(n_shards) if k not in manifest.done]
    summary = {"items": count, "shards": n_shards, "shards_done_now": 0,
               "shards_skipped": n_shards - len(todo), "output": str(out)}
    try:
        if todo:
            # Everything is checked before anything is written, so a refused start (a typo
            # in --bundle) leaves no run.json that a corrected rerun would be refused against.
            # On Ray the driver only checks the options (on CPU: the head node may have no
            # GPU).
            _validate_options(pipeline if engine == "local"
                              else replace(pipeline, device="cpu"), options,
                              videos=kind == "videos")
            key = key() if callable(key) else key
            _check_key(out, old, key, salt)
        if todo or not manifest.finalized:
            folder.open()
            folder.lock()
            # Under the lock: a run may have started here since the checks above.
            old = check_run(folder, run)
            manifest = Manifest(folder)
            todo = [k for k in range(n_shards) if k not in manifest.done]
        if todo:
            key = key() if callable(key) else key  # work that appeared under the lock
            _check_key(out, old, key, salt)
            if old is None:
                old = {**run, "salt": salt or new_salt(),
                       "key_fingerprint": key_fingerprint(key)}
                folder.write(RUN, json.dumps(old, indent=2, sort_keys=True).encode())
            folder.remove_stale_temporaries()
            _run_shards(engine, pipeline, source, source_spec, todo, count, options, key,
                        old["salt"], folder, manifest, summary, log, on_shard, progress,
                        dict(address=address, actors=actors, gpus_per_actor=gpus_per_actor,
                             cpus_per_actor=cpus_per_actor, threads=threads, fault=_fault))
        missing = [k for k in range(n_shards) if k not in manifest.done]
        if missing:
            raise DatasetRunError(f"{len(missing)} shard(s) did not finish; run again to "
                                  f"resume")
        if not manifest.finalized:
            finalize(folder, source, manifest, n_shards)
    finally:
        folder.close()
        if log is not None:
            log.close()
    totals = {"anonymized": 0, "no_face": 0, "errors": 0}
    no_face, failed = [], []
    for k in sorted(manifest.done):
        entry = manifest.done[k]
        for name in totals:
            totals[name] += entry.get(name, 0)
        no_face.extend(entry.get("no_face_ids", []))
        failed.extend(entry.get("error_ids", []))
    summary.update(totals, no_face_items=no_face, failed_items=failed)
    return summary


def _run_shards(engine, pipeline, source, source_spec, todo, count, options, key, salt,
                folder: OutDir, manifest: Manifest, summary: dict, log, on_shard, progress,
                ray_settings: dict) -> None:
    size = options.shard_size
    n_shards = summary["shards"]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n_shards, initial=n_shards - len(todo), unit="shard",
                   desc=f"anonymizing ({engine})", file=sys.stderr)

    def record(entry: dict, private: list[dict]) -> None:
        fresh = entry["shard"] not in manifest.done
        if log is not None and fresh:
            log.write(private)  # before the manifest: a kill here repeats lines, loses none
        manifest.append(entry)  # after the shard's outputs: see the module docstring
        if fresh:
            summary["shards_done_now"] += 1
            if bar is not None:
                bar.update(1)
            if on_shard is not None:
                on_shard(entry)

    try:
        if engine == "local":
            engines.run_local(pipeline, source, todo,
                              lambda k: (k * size, min(count, (k + 1) * size)), options, key,
                              salt, folder, record, threads=ray_settings["threads"])
        else:
            engines.run_ray(pipeline, source_spec, todo, count, options, key, salt, folder,
                            record, **ray_settings)
    finally:
        if bar is not None:
            bar.close()


def _check_cell_root(cell_root, kind: str, out: Path) -> str | None:
    if cell_root is None:
        return None
    if kind in ("folder", "videos"):
        raise ValueError("--cell-root applies to table sources (Parquet, saved datasets), "
                         "not to a folder of images or videos")
    root = Path(cell_root).expanduser()
    if not root.is_dir():
        raise ValueError(f"--cell-root {shown(root)} is not a folder")
    refuse_overlap(out, [root], out_inside_inputs=False)  # its images are inputs too
    return os.path.realpath(root)


def _refuse_foreign(out: Path) -> None:
    """A new run goes into a new or empty folder: never over files that are not its own."""
    try:
        entries = [e for e in os.listdir(out) if e != WORK]
    except FileNotFoundError:
        return
    except NotADirectoryError:
        raise DatasetRunError(f"--out {shown(out)} exists and is not a folder") from None
    if entries:
        raise DatasetRunError(f"--out {shown(out)} is not empty and holds no lreorg run "
                              f"({shown(entries[0])}, …): outputs could replace files there; "
                              f"give a new or empty folder")


def _check_key(out: Path, old: dict | None, key: bytes, salt: str | None) -> None:
    if old is None:
        return
    if old.get("key_fingerprint") != key_fingerprint(key):
        raise DatasetRunError(f"{shown(out)} holds a run started with another key: resume "
                              f"it with the key file of its first run (--key-file), or use "
                              f"another --out")
    if salt is not None and salt != old.get("salt"):
        raise DatasetRunError(f"{shown(out)} holds a run with another salt: a resumed run "
                              f"keeps its own")


def _validate_options(spec: PipelineSpec, options: DatasetOptions, videos: bool = False
                      ) -> None:
    """Refuse bad options once, before any item is read, with the pipeline's own message
    (against the weights that will run; for clips, also what a video takes)."""
    pipe = engines.local_pipeline(spec)
    pipe.check(options.protect)
    if videos:
        from ..pipeline.video import check_video_options

        check_video_options(pipe, options.protect)
