"""One shard: anonymize its items, write its outputs atomically, record it in the manifest;
and the run's bookkeeping (run.json, the manifest, the final assembly)."""

from __future__ import annotations

import json
import os

from .items import ShardInput
from .keys import item_seed
from .options import NO_FACE_NOTES, DatasetOptions, DatasetRunError
from .outdir import WORK, OutDir

__all__ = ["anonymize_shard", "write_shard", "Manifest", "NO_FACE_NOTES"]


# One shard
def anonymize_shard(pipe, shard: ShardInput, options: DatasetOptions, key: bytes, salt: str
                    ) -> tuple[list, list[dict], list[dict]]:
    """(output image or None, public record, private log entry) per item. Never raises for a
    bad item.

    Each item is drawn with ``SecretSeed(HMAC(key, salt ‖ id))``: reproducible with the key
    and the run's salt, never recorded (its record says ``seed_source: derived``)."""
    from ..image.io import load_image
    from ..method.rng import SecretSeed
    from ..pipeline import NoFaceError

    if hasattr(shard, "sources"):  # a clip (dataset/videos.py): its job runs as it is written
        from .videos import anonymize_video_shard

        return anonymize_video_shard(pipe, shard, options, key, salt)
    n = len(shard.ids)
    results: list = [None] * n
    records: list[dict] = [{} for _ in range(n)]
    private: list[dict] = []
    readable = [i for i in range(n) if shard.images[i] is not None]
    outs = pipe.run_batch([shard.images[i] for i in readable],
                          seeds=[SecretSeed(item_seed(key, salt, shard.ids[i]))
                                 for i in readable],
                          batch_size=options.batch_size, options=options.protect) \
        if readable else []
    by_index = dict(zip(readable, outs))
    for i, item_id in enumerate(shard.ids):
        rec: dict = {"id": item_id}
        out = by_index.get(i)
        log: dict = {"id": item_id, **shard.origin(i)}
        if out is None:
            rec.update(status="error", error=shard.errors[i] or "unreadable item")
        elif isinstance(out, NoFaceError):
            rec.update(status="no-face", output="unchanged" if options.no_face == "pass"
                       else "dropped", note=NO_FACE_NOTES[options.no_face])
            if options.no_face == "pass":
                results[i] = load_image(shard.images[i], max_pixels=pipe.max_pixels)
        elif isinstance(out, Exception):
            rec.update(status="error", error=f"{type(out).__name__}: {out}")
        else:
            # The public record: PrivacyRecord.to_dict, the one place that builds it.
            rec.update(status="anonymized", **out.record.to_dict())
            results[i] = out.image
            log["diagnostics"] = out.diagnostics
        records[i] = rec
        log.update({k: rec[k] for k in ("status", "error", "output") if k in rec})
        private.append(log)
    return results, records, private


def write_shard(out: OutDir, source, shard: ShardInput, results: list, records: list[dict],
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
    out.write(f"{WORK}/records/part-{shard.shard:06d}.jsonl", lines.encode())
    status = [r["status"] for r in records]
    # The threads are kept because CPU outputs depend on them bit for bit (module docstring).
    return {"shard": shard.shard, "items": len(records),
            "anonymized": status.count("anonymized"), "no_face": status.count("no-face"),
            "errors": status.count("error"), "threads": torch.get_num_threads(),
            "no_face_ids": [r["id"] for r in records if r["status"] == "no-face"],
            "error_ids": [r["id"] for r in records if r["status"] == "error"]}


# Bookkeeping
class Manifest:
    """Append-only JSON lines: one per finished shard, then one ``{"finalized": true}``."""

    PATH = f"{WORK}/manifest.jsonl"

    def __init__(self, out: OutDir):
        self.out = out
        self.done: dict[int, dict] = {}
        self.finalized = False
        text = (out.read(self.PATH) or b"").decode("utf-8", "replace")
        self.torn = bool(text) and not text.endswith("\n")  # a kill mid-line: ended first
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
        line = json.dumps(entry, sort_keys=True) + "\n"
        if self.torn:  # end the torn line, never extend it
            line, self.torn = "\n" + line, False
        self.out.append(self.PATH, line.encode())
        if entry.get("finalized"):
            self.finalized = True
        else:
            self.done[int(entry["shard"])] = entry


RUN = f"{WORK}/run.json"


def read_run(out: OutDir) -> dict | None:
    data = out.read(RUN)
    if data is None:
        return None
    try:
        run = json.loads(data)
    except ValueError:
        run = None
    if not isinstance(run, dict) or run.get("version") != 2:
        raise DatasetRunError(f"{out.path} holds a run started by an older lreorg (or a "
                              f"damaged {RUN}): use another --out")
    return run


def check_run(out: OutDir, run: dict) -> dict | None:
    """The run already in ``out`` (None if none), refused if it is another run: other
    source or options (``run`` without its salt and key fingerprint)."""
    old = read_run(out)
    if old is None:
        return None
    own = {k: v for k, v in old.items() if k not in ("salt", "key_fingerprint")}
    diff = sorted(k for k in set(own) | set(run) if own.get(k) != run.get(k))
    if diff:
        raise DatasetRunError(
            f"{out.path} holds a run with other settings ({', '.join(diff)} differ): resume it "
            f"with the same source and options, or use another --out")
    return old


def finalize(out: OutDir, source, manifest: Manifest, n_shards: int) -> None:
    parts = [out.read(f"{WORK}/records/part-{k:06d}.jsonl") for k in range(n_shards)]
    if any(p is None for p in parts):
        raise DatasetRunError(f"records of a finished shard are missing in {out.path / WORK}: "
                              f"use another --out")
    out.write("records.jsonl", b"".join(parts))
    if hasattr(source, "part_path"):
        data_parts = [source.part_path(k) for k in range(n_shards)]
        source.finalize(out, data_parts)
        manifest.append({"finalized": True})
        for p in data_parts:  # only once the assembled output and the mark are safe
            out.remove(p)
    else:
        manifest.append({"finalized": True})
