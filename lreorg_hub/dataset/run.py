"""Anonymize a whole dataset, resumably, in this process or on a Ray cluster.

Work is cut into *shards*: runs of ``shard_size`` consecutive items in the source's fixed
order. A shard is the unit of batching, of writing and of bookkeeping:

1. its items are read, anonymized through ``LReOrgPipeline.run_batch`` (faces of many photos
   and all samples share the backbone passes), each with the seed HMAC(secret, item id);
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
import sys
from dataclasses import replace
from pathlib import Path
from typing import Callable

from . import engines
from .keys import is_within
from .options import ENGINES, DatasetOptions, DatasetRunError, PipelineSpec
from .shards import Manifest, _check_run, _finalize, _remove_stale_temporaries
from .sources import WORK, SourceSpec, atomic_write, detect_kind, open_source

__all__ = ["anonymize_dataset"]


def anonymize_dataset(src: str | Path, out: str | Path,
                      key: bytes | Callable[[], bytes], *,
                      options: DatasetOptions | None = None,
                      pipeline: PipelineSpec | None = None, engine: str = "local",
                      kind: str = "auto", image_column: str | None = None,
                      id_column: str | None = None, address: str | None = None,
                      actors: int = 1, gpus_per_actor: float = 0.0,
                      cpus_per_actor: float = 1.0, threads: int | None = None,
                      progress: bool = False,
                      on_shard: Callable[[dict], None] | None = None,
                      _fault: dict | None = None) -> dict:
    """Anonymize every item of ``src`` into ``out``; resumes a run found there.

    Args:
        src: a folder of images, a .parquet file, or a ``save_to_disk`` dataset folder.
        out: the output folder (created). Must be on storage every worker can write
            (a shared filesystem on a cluster).
        key: the master secret (``keys.load_or_create_key``), or a function returning it,
            called only once the run is checked and has work to do (so a refused or
            finished run creates no key file); never written here.
        options / pipeline: what to do to each item / how to build the pipeline.
        engine: "local" (this process) or "ray" (Ray Data, an actor pool).
        kind: "auto", "folder", "parquet" or "hf".
        image_column / id_column: for table formats (auto-detected / row number).
        address: Ray cluster to attach to (None: the running one, or a local one).
        actors, gpus_per_actor, cpus_per_actor: the Ray actor pool.
        threads: torch CPU threads of each worker (this process, or each Ray actor); default:
            torch's own locally, ``int(cpus_per_actor)`` on Ray. CPU outputs are bit-identical
            across engines only for the same number (see the module docstring).
        on_shard: called with each shard's manifest entry once it is recorded.

    Returns a summary: items, shards, done now, skipped (from earlier runs), counts.
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
    src, out = Path(src), Path(out)
    kind = detect_kind(src) if kind == "auto" else kind
    if kind not in ("folder", "parquet", "hf", "videos"):
        raise ValueError(f"format must be auto, folder, parquet, hf or videos, got {kind!r}")
    if kind == "videos":  # one clip per task (dataset/videos.py)
        options = replace(options, shard_size=1)
    source_spec = SourceSpec(kind, str(src.resolve()), image_column, id_column)
    source = open_source(source_spec)
    if out.resolve() == src.resolve() or (kind == "folder" and is_within(out, src)):
        raise DatasetRunError(f"--out {out} must not be (inside) the source {src}")
    ids = source.ids()
    if not ids:
        raise DatasetRunError(f"{src} holds no items (for a folder: no image files in it or "
                              f"its sub-folders; for --format videos: no video files)")
    count, size = len(ids), options.shard_size
    n_shards = (count + size - 1) // size
    run = {"version": 1, "format": kind, "source": source_spec.path, "items": count,
           "ids_sha256": hashlib.sha256("\n".join(ids).encode()).hexdigest(),
           "image_column": getattr(source, "image_column", None), "id_column": id_column,
           "options": options.settings(), "pipeline": pipeline.settings()}
    started = _check_run(out, run)
    manifest = Manifest(out / WORK / "manifest.jsonl")
    todo = [k for k in range(n_shards) if k not in manifest.done]
    summary = {"items": count, "shards": n_shards, "shards_done_now": 0,
               "shards_skipped": n_shards - len(todo), "output": str(out)}
    if todo:
        # Everything is checked before anything is written, so a refused start (a typo in
        # --bundle) leaves no run.json that a corrected rerun would be refused against. On
        # Ray the driver only checks the options (on CPU: the head node may have no GPU).
        _validate_options(pipeline if engine == "local" else replace(pipeline, device="cpu"),
                          options, videos=kind == "videos")
        key = key() if callable(key) else key
        out.mkdir(parents=True, exist_ok=True)
        if not started:
            atomic_write(out / WORK / "run.json", json.dumps(run, indent=2,
                                                              sort_keys=True).encode())
        _remove_stale_temporaries(out)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=n_shards, initial=n_shards - len(todo), unit="shard",
                       desc=f"anonymizing ({engine})", file=sys.stderr)

        def record(entry: dict) -> None:
            fresh = entry["shard"] not in manifest.done
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
                           out, record, threads=threads)
            else:
                engines.run_ray(pipeline, source_spec, todo, count, options, key, out, record,
                         address=address, actors=actors, gpus_per_actor=gpus_per_actor,
                         cpus_per_actor=cpus_per_actor, threads=threads, fault=_fault)
        finally:
            if bar is not None:
                bar.close()
    missing = [k for k in range(n_shards) if k not in manifest.done]
    if missing:
        raise DatasetRunError(f"{len(missing)} shard(s) did not finish; run again to resume")
    if not manifest.finalized:
        _finalize(out, source, manifest, n_shards)
    totals = {"anonymized": 0, "no_face": 0, "errors": 0}
    for entry in manifest.done.values():
        for k in totals:
            totals[k] += entry.get(k, 0)
    summary.update(totals)
    return summary


def _validate_options(spec: PipelineSpec, options: DatasetOptions, videos: bool = False
                      ) -> None:
    """Refuse bad options once, before any item is read, with the pipeline's own message
    (against the weights that will run; for clips, also what a video takes)."""
    pipe = engines.local_pipeline(spec)
    pipe.check(options.protect)
    if videos:
        from ..pipeline.video import check_video_options

        check_video_options(pipe, options.protect)
