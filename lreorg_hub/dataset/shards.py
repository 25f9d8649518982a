"""One shard: anonymize its items, write its outputs atomically, record it in the manifest;
and the run's bookkeeping (run.json, the manifest, the final assembly)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .keys import item_seed
from .options import DatasetOptions, DatasetRunError
from .sources import WORK, ShardInput, atomic_write

__all__ = ["anonymize_shard", "write_shard", "Manifest"]


# One shard
def anonymize_shard(pipe, shard: ShardInput, options: DatasetOptions, key: bytes
                    ) -> tuple[list, list[dict]]:
    """(output image or None per item, record per item). Never raises for a bad item.

    Each item is drawn with ``SecretSeed(HMAC(key, id))``: reproducible with the key, never
    recorded (its record says ``seed_source: derived``)."""
    from ..image.io import load_image
    from ..method.rng import SecretSeed
    from ..pipeline import NoFaceError

    if hasattr(shard, "sources"):  # a clip (dataset/videos.py): its job runs as it is written
        from .videos import anonymize_video_shard

        return anonymize_video_shard(pipe, shard, options, key)
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
