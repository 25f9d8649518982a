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
import os
import pickle
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from ..pipeline.options import ProtectOptions
from .keys import is_within, item_seed
from .sources import WORK, ShardInput, SourceSpec, atomic_write, detect_kind, open_source

__all__ = ["DatasetOptions", "PipelineSpec", "anonymize_dataset", "anonymize_shard",
           "DatasetRunError", "ENGINES", "NO_FACE_ACTIONS"]

ENGINES = ("local", "ray")
NO_FACE_ACTIONS = ("pass", "drop")


class DatasetRunError(ValueError):
    """The run cannot start or continue (settings differ from the run in --out, …)."""


@dataclass
class DatasetOptions:
    """What is done to every item: ``protect`` (the library's one options type: method,
    keywords, ε, …, aligned; no seed: each item's comes from the key) and how the run treats
    items without a face ("pass": kept unchanged, metadata stripped; "drop": left out), its
    batch size and its shard size. An option that does not apply to the method is an error,
    reported before any item is read."""

    protect: ProtectOptions = field(default_factory=ProtectOptions)
    no_face: str = "pass"
    batch_size: int = 16
    shard_size: int = 64

    def __post_init__(self):
        if isinstance(self.protect, dict):  # from asdict() (a Ray actor's copy)
            self.protect = ProtectOptions(**self.protect)
        if self.protect.seed is not None:
            raise ValueError("a dataset run takes no seed: each item's comes from the key "
                             "file (HMAC of the master secret and the item id)")
        if self.no_face not in NO_FACE_ACTIONS:
            raise ValueError(f"no_face must be 'pass' or 'drop', got {self.no_face!r}")
        for name in ("batch_size", "shard_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

    def settings(self) -> dict:
        """What must not change between a run and its resumption (JSON values)."""
        d = json.loads(json.dumps(asdict(self)))
        d.pop("batch_size")  # only changes float rounding, not what is done
        return d


@dataclass
class PipelineSpec:
    """How each process builds its own pipeline (picklable; loaded once per Ray actor)."""

    bundle: str | None = None
    backbone: str | None = None
    revision: str | None = None
    style_mix: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    output_size: int | None = None
    min_face_size: int = 20

    def build(self):
        import torch

        from ..pipeline import LReOrgPipeline

        dtype = getattr(torch, self.dtype, None)
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
        if self.bundle is None and self.backbone is None:  # image baselines only
            pipe = LReOrgPipeline(device=self.device, min_face_size=self.min_face_size)
        else:
            pipe = LReOrgPipeline.from_pretrained(
                self.bundle, backbone=self.backbone, revision=self.revision,
                style_mix=self.style_mix, device=self.device, output_size=self.output_size,
                min_face_size=self.min_face_size)
        return pipe.to(dtype=dtype) if pipe.generator is not None else pipe

    def settings(self) -> dict:
        return {"bundle": self.bundle, "backbone": self.backbone, "revision": self.revision,
                "style_mix": self.style_mix, "output_size": self.output_size}


# ---------------------------------------------------------------------------------------------
# One shard
def anonymize_shard(pipe, shard: ShardInput, options: DatasetOptions, key: bytes
                    ) -> tuple[list, list[dict]]:
    """(output image or None per item, record per item). Never raises for a bad item.

    Each item is drawn with ``SecretSeed(HMAC(key, id))``: reproducible with the key, never
    recorded (its record says ``seed_source: derived``)."""
    from ..image.io import load_image
    from ..method.rng import SecretSeed
    from ..pipeline import NoFaceError

    n = len(shard.ids)
    results: list = [None] * n
    records: list[dict] = [{} for _ in range(n)]
    readable = [i for i in range(n) if shard.images[i] is not None]
    outs = pipe.run_batch([shard.images[i] for i in readable],
                          seeds=[SecretSeed(item_seed(key, shard.ids[i])) for i in readable],
                          batch_size=options.batch_size, options=options.protect) \
        if readable else []
    by_index = dict(zip(readable, outs))
    for i, item_id in enumerate(shard.ids):
        rec: dict = {"id": item_id}
        out = by_index.get(i)
        if out is None:
            rec.update(status="error", error=shard.errors[i] or "unreadable item")
        elif isinstance(out, NoFaceError):
            rec.update(status="no-face",
                       note=("kept unchanged (metadata stripped)" if options.no_face == "pass"
                             else "dropped from the output"))
            if options.no_face == "pass":
                results[i] = load_image(shard.images[i], max_pixels=pipe.max_pixels)
        elif isinstance(out, Exception):
            rec.update(status="error", error=f"{type(out).__name__}: {out}")
        else:
            rec.update(status="anonymized", **out.record.to_dict())
            results[i] = out.image
        records[i] = rec
    return results, records


def write_shard(out: Path, source, shard: ShardInput, results: list, records: list[dict],
                crash_after_images: bool = False) -> dict:
    """Write the shard's outputs (each file atomically), then return its manifest entry.

    ``crash_after_images`` (tests only) kills the process half-way: images written, records
    not, no manifest entry — the state an actor killed mid-shard leaves.
    """
    import torch

    source.write_shard(out, shard, results, records)
    if crash_after_images:
        os._exit(17)
    lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    atomic_write(out / WORK / "records" / f"part-{shard.shard:06d}.jsonl", lines.encode())
    status = [r["status"] for r in records]
    # The threads are kept because CPU outputs depend on them bit for bit (module docstring).
    return {"shard": shard.shard, "items": len(records),
            "anonymized": status.count("anonymized"), "no_face": status.count("no-face"),
            "errors": status.count("error"), "threads": torch.get_num_threads()}


# ---------------------------------------------------------------------------------------------
# Bookkeeping
class Manifest:
    """Append-only JSON lines: one per finished shard, then one ``{"finalized": true}``."""

    def __init__(self, path: Path):
        self.path = path
        self.done: dict[int, dict] = {}
        self.finalized = False
        if path.is_file():
            text = path.read_text()
            if text and not text.endswith("\n"):  # torn by a kill: end it, never extend it
                with open(path, "a") as f:
                    f.write("\n")
            for line in text.splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line torn by a kill: that shard is simply redone
                if entry.get("finalized"):
                    self.finalized = True
                elif "shard" in entry:
                    self.done.setdefault(int(entry["shard"]), entry)

    def append(self, entry: dict) -> None:
        if "shard" in entry and entry["shard"] in self.done:
            return  # a retried task reporting twice: the first one counts
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        if entry.get("finalized"):
            self.finalized = True
        else:
            self.done[int(entry["shard"])] = entry


def _remove_stale_temporaries(out: Path) -> None:
    for p in out.rglob(".*.tmp-*"):
        if p.is_file():
            p.unlink()


def _check_run(out: Path, run: dict) -> bool:
    """Refuse a different run already in ``out``; True if this run was started there."""
    path = out / WORK / "run.json"
    if not path.is_file():
        return False
    old = json.loads(path.read_text())
    diff = sorted(k for k in set(old) | set(run) if old.get(k) != run.get(k))
    if diff:
        raise DatasetRunError(
            f"{out} holds a run with other settings ({', '.join(diff)} differ): resume it "
            f"with the same source and options, or use another --out")
    return True


def _finalize(out: Path, source, manifest: Manifest, n_shards: int) -> None:
    parts = [out / WORK / "records" / f"part-{k:06d}.jsonl" for k in range(n_shards)]
    atomic_write(out / "records.jsonl", b"".join(p.read_bytes() for p in parts))
    if hasattr(source, "part_path"):
        data_parts = [source.part_path(out, k) for k in range(n_shards)]
        source.finalize(out, data_parts)
        manifest.append({"finalized": True})
        for p in data_parts:  # only once the assembled output and the mark are safe
            p.unlink(missing_ok=True)
    else:
        manifest.append({"finalized": True})


# ---------------------------------------------------------------------------------------------
# Engines
_LOCAL_PIPELINE: dict = {}


def _local_pipeline(spec: PipelineSpec):
    """The last pipeline built in this process, reused while the spec is the same (a
    resumed or repeated run in one session does not load the weights again)."""
    key = json.dumps(asdict(spec), sort_keys=True)
    if key not in _LOCAL_PIPELINE:
        _LOCAL_PIPELINE.clear()
        _LOCAL_PIPELINE[key] = spec.build()
    return _LOCAL_PIPELINE[key]


def _run_local(spec: PipelineSpec, source, todo, bounds, options, key, out, on_shard, *,
               threads: int | None = None):
    import torch

    pipe = _local_pipeline(spec)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for k in todo:
            shard = source.read(k, *bounds(k))
            results, records = anonymize_shard(pipe, shard, options, key)
            on_shard(write_shard(out, source, shard, results, records))
    finally:
        torch.set_num_threads(before)  # the caller's process keeps its own setting


def _read_shards(batch, source_spec: dict, shard_size: int, count: int):
    """Ray Data read stage (tasks): shard numbers → the shard's items, pickled."""
    import pyarrow as pa

    source = open_source(SourceSpec(**source_spec))
    payloads = []
    for k in batch["shard"].to_pylist():
        start = k * shard_size
        payloads.append(pickle.dumps(source.read(k, start, min(count, start + shard_size))))
    return pa.table({"shard": batch["shard"], "payload": pa.array(payloads, pa.binary())})


class _ShardWorker:
    """Ray Data actor: loads the pipeline once, then anonymizes and writes whole shards."""

    def __init__(self, pipeline_spec: dict, source_spec: dict, options: dict, key: bytes,
                 out: str, threads: int, fault: dict | None = None):
        import torch

        torch.set_num_threads(threads)  # this process is the actor's own
        self.pipe = PipelineSpec(**pipeline_spec).build()
        self.source = open_source(SourceSpec(**source_spec))
        self.options, self.key, self.out = DatasetOptions(**options), key, Path(out)
        self.fault = fault

    def __call__(self, batch):
        import pyarrow as pa

        entries = []
        for k, payload in zip(batch["shard"].to_pylist(), batch["payload"].to_pylist()):
            shard = pickle.loads(payload)  # written by _read_shards of this same run
            results, records = anonymize_shard(self.pipe, shard, self.options, self.key)
            crash = False
            if self.fault is not None and k == self.fault["shard"]:
                marker = Path(self.fault["marker"])
                crash = not marker.exists()
                marker.touch()
            entries.append(json.dumps(write_shard(self.out, self.source, shard, results,
                                                  records, crash_after_images=crash)))
        return pa.table({"shard": batch["shard"], "entry": pa.array(entries, pa.string())})


def _run_ray(spec, source_spec, todo, count, options, key, out, on_shard, *, address,
             actors, gpus_per_actor, cpus_per_actor, threads=None, fault=None):
    try:
        import ray
        import ray.data
    except ImportError:
        raise DatasetRunError("--engine ray needs Ray Data: pip install 'ray[data]'") from None
    if not ray.is_initialized():
        ray.init(address=address, log_to_driver=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the driver shows one bar over shards
    ds = ray.data.from_items([{"shard": k} for k in todo], override_num_blocks=len(todo))
    ds = ds.map_batches(_read_shards, batch_size=1, batch_format="pyarrow",
                        fn_kwargs={"source_spec": asdict(source_spec),
                                   "shard_size": options.shard_size, "count": count})
    ds = ds.map_batches(
        _ShardWorker, batch_size=1, batch_format="pyarrow",
        fn_constructor_kwargs={"pipeline_spec": asdict(spec), "source_spec": asdict(source_spec),
                               "options": asdict(options), "key": key, "out": str(out),
                               # as asked, else the actor's CPU share (what Ray gives it)
                               "threads": threads or max(1, int(cpus_per_actor)),
                               "fault": fault},
        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus_per_actor,
        num_cpus=cpus_per_actor)
    for row in ds.iter_rows():  # as shards finish, in any order
        on_shard(json.loads(row["entry"]))


# ---------------------------------------------------------------------------------------------
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
    if kind not in ("folder", "parquet", "hf"):
        raise ValueError(f"format must be auto, folder, parquet or hf, got {kind!r}")
    source_spec = SourceSpec(kind, str(src.resolve()), image_column, id_column)
    source = open_source(source_spec)
    if out.resolve() == src.resolve() or (kind == "folder" and is_within(out, src)):
        raise DatasetRunError(f"--out {out} must not be (inside) the source {src}")
    ids = source.ids()
    if not ids:
        raise DatasetRunError(f"{src} holds no items (for a folder: no image files in it or "
                              f"its sub-folders)")
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
                          options)
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
                _run_local(pipeline, source, todo,
                           lambda k: (k * size, min(count, (k + 1) * size)), options, key,
                           out, record, threads=threads)
            else:
                _run_ray(pipeline, source_spec, todo, count, options, key, out, record,
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


def _validate_options(spec: PipelineSpec, options: DatasetOptions) -> None:
    """Refuse bad options once, before any item is read, with the pipeline's own message
    (against the weights that will run)."""
    _local_pipeline(spec).check(options.protect)
