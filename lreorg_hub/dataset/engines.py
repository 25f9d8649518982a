"""The two engines that run the shards: this process (local) or a Ray Data actor pool."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import asdict
from pathlib import Path

from .options import DatasetOptions, DatasetRunError, PipelineSpec
from .outdir import OutDir, OutputFolderError
from .shards import anonymize_shard, write_shard
from .sources import SourceSpec, open_source

__all__ = ["local_pipeline", "run_local", "run_ray"]

# Engines
_LOCAL_PIPELINE: dict = {}


def local_pipeline(spec: PipelineSpec):
    """The last pipeline built in this process, reused while the spec is the same (a
    resumed or repeated run in one session does not load the weights again)."""
    key = json.dumps(asdict(spec), sort_keys=True)
    if key not in _LOCAL_PIPELINE:
        _LOCAL_PIPELINE.clear()
        _LOCAL_PIPELINE[key] = spec.build()
    return _LOCAL_PIPELINE[key]


def run_local(spec: PipelineSpec, source, todo, bounds, options, key, salt, out: OutDir,
              on_shard, *, threads: int | None = None):
    """Each shard in turn; ``on_shard(manifest entry, private log entries)`` once written."""
    import torch

    pipe = local_pipeline(spec)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        for k in todo:
            shard = source.read(k, *bounds(k))
            results, records, private = anonymize_shard(pipe, shard, options, key, salt)
            on_shard(write_shard(out, source, shard, results, records), private)
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
                 salt: str, out: str, threads: int, fault: dict | None = None):
        import torch

        torch.set_num_threads(threads)  # this process is the actor's own
        self.pipe = PipelineSpec(**pipeline_spec).build()
        self.source = open_source(SourceSpec(**source_spec))
        self.options, self.key, self.salt = DatasetOptions(**options), key, salt
        self.out = OutDir(out).open(create=False)  # made by the driver; no link followed
        self.fault = fault

    def __call__(self, batch):
        import pyarrow as pa

        entries, logs = [], []
        for k, payload in zip(batch["shard"].to_pylist(), batch["payload"].to_pylist()):
            shard = pickle.loads(payload)  # written by _read_shards of this same run
            results, records, private = anonymize_shard(self.pipe, shard, self.options,
                                                        self.key, self.salt)
            crash = False
            if self.fault is not None and k == self.fault["shard"]:
                marker = Path(self.fault["marker"])
                crash = not marker.exists()
                marker.touch()
            try:
                entry = write_shard(self.out, self.source, shard, results, records,
                                    crash_after_images=crash)
            except OutputFolderError as e:  # a link in --out: the driver stops with this line
                entry = {"shard": k, "refused": str(e)}
            entries.append(json.dumps(entry))
            logs.append(json.dumps(private))  # to the driver, which alone writes the log
        return pa.table({"shard": batch["shard"], "entry": pa.array(entries, pa.string()),
                         "private": pa.array(logs, pa.string())})


def run_ray(spec, source_spec, todo, count, options, key, salt, out: OutDir, on_shard, *,
            address, actors, gpus_per_actor, cpus_per_actor, threads=None, fault=None):
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
                               "options": asdict(options), "key": key, "salt": salt,
                               "out": os.path.realpath(out.path),  # actors: any cwd
                               # as asked, else the actor's CPU share (what Ray gives it)
                               "threads": threads or max(1, int(cpus_per_actor)),
                               "fault": fault},
        compute=ray.data.ActorPoolStrategy(size=actors), num_gpus=gpus_per_actor,
        num_cpus=cpus_per_actor)
    for row in ds.iter_rows():  # as shards finish, in any order
        entry = json.loads(row["entry"])
        if "refused" in entry:  # Ray would wrap the actor's exception in its traceback
            raise OutputFolderError(entry["refused"])
        on_shard(entry, json.loads(row["private"]))
