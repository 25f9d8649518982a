"""`lreorg anonymize-dataset`: whole datasets (folders of images or of videos, Parquet, saved
datasets), local or on Ray."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .args import (LIMITS_NOTE, add_protect_arguments, add_runtime_arguments,
                   add_weight_arguments, check_weight_arguments, protect_options)

#: How many ids of items without a face the command lists on stderr (all are in the records).
LISTED = 10


def _cmd_anonymize_dataset(args: argparse.Namespace) -> int:
    from ..dataset import (DatasetOptions, PipelineSpec, anonymize_dataset, default_key_path,
                           load_or_create_key)
    from ..dataset.keys import KeyFileError, is_within
    from ..image.names import shown
    from ..pipeline.photos import _check_settings

    protect = protect_options(args)
    protect.validate(default_method=args.method or ("lreorg" if args.bundle else "style-mix"
                                                    if args.style_mix else None))
    check_weight_arguments(args, args.method)
    _check_settings(0.1, 4, 1, args.min_face_size, args.max_faces)
    options = DatasetOptions(protect=protect, no_face=args.no_face,
                             batch_size=args.batch_size, shard_size=args.shard_size)
    spec = PipelineSpec(bundle=args.bundle, backbone=args.backbone, revision=args.revision,
                        style_mix=args.style_mix,
                        device=args.device, dtype=args.dtype, output_size=args.output_size,
                        min_face_size=args.min_face_size, max_faces=args.max_faces)
    out = Path(args.out).expanduser()
    key_path = Path(args.key_file).expanduser() if args.key_file else default_key_path(out)

    def new_key() -> bytes:  # only once the run is checked: a refused start creates no key
        secret, created = load_or_create_key(key_path, out)
        if created:
            print(f"lreorg: new master secret written to {shown(key_path)} (owner-only). Keep "
                  f"it apart from the outputs; pass --key-file {shown(key_path)} to resume "
                  f"this run.", file=sys.stderr)
        return secret

    key = new_key
    if os.path.lexists(key_path) or is_within(key_path, out):  # a bad key fails at once
        key, _ = load_or_create_key(key_path, out)
        if not args.quiet:
            print(f"lreorg: master secret from {shown(key_path)}", file=sys.stderr)
    elif (out / "_lreorg" / "run.json").is_file():  # a new key could never resume that run
        raise KeyFileError(f"{shown(out)} holds a run started with a key, and the key file "
                           f"{shown(key_path)} does not exist: pass the --key-file of that "
                           f"run, or use another --out")
    try:
        summary = anonymize_dataset(
            args.source, out, key, options=options, pipeline=spec, engine=args.engine,
            kind=args.format, image_column=args.image_column, id_column=args.id_column,
            cell_root=args.cell_root, private_log=args.private_log,
            address=args.address, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
            cpus_per_actor=args.cpus_per_actor, threads=args.threads, progress=not args.quiet)
    except KeyboardInterrupt:
        if (out / "_lreorg" / "run.json").is_file():
            print(f"lreorg: interrupted; the finished shards in {shown(out)} are kept: run "
                  f"the same command with --key-file {shown(key_path)} to resume",
                  file=sys.stderr)
            return 130
        raise
    # Never silent, --quiet or not: these items were not anonymized.
    what = ("published UNCHANGED (--no-face pass): a face the detector missed is visible in "
            "them" if args.no_face == "pass" else "dropped from the output (--no-face drop)")
    _list(f"no face found in {{}} item(s), {what}", summary["no_face_items"], out)
    _list("{} item(s) failed, left out of the output", summary["failed_items"], out)
    if not args.quiet:
        print(f"{summary['items']} item(s) in {summary['shards']} shard(s), "
              f"{summary['shards_skipped']} of them done by an earlier run: "
              f"{summary['anonymized']} anonymized, {summary['no_face']} without a face "
              f"({'published unchanged' if args.no_face == 'pass' else 'dropped'}), "
              f"{summary['errors']} failed; records in {shown(out / 'records.jsonl')}",
              file=sys.stderr)
    return 1 if summary["errors"] else 0


def _list(what: str, ids: list[str], out: Path) -> None:
    """One line: how many, the first ``LISTED`` ids (escaped), where all of them are."""
    from ..image.names import shown

    if ids:
        more = f", … and {len(ids) - LISTED} more" if len(ids) > LISTED else ""
        print(f"lreorg: {what.format(len(ids))}: {', '.join(shown(i) for i in ids[:LISTED])}"
              f"{more} (all listed in {shown(out / 'records.jsonl')})", file=sys.stderr)


def register(sub) -> None:
    p = sub.add_parser(
        "anonymize-dataset", help="anonymize a whole dataset (folder of images or videos, "
                                  "Parquet, saved datasets)",
        description="Anonymize every item of a folder of images, a folder of videos (one "
                    "clip per task, OUT/NAME.mp4 each), a Parquet file or a Hugging "
                    "Face dataset saved with save_to_disk, into OUT in the same layout and "
                    "schema, with a public record per item (OUT/records.jsonl). Items without "
                    "a face are dropped and listed (--no-face). Resumable: a rerun with the "
                    "same OUT and key file skips finished shards. Per-item seeds come from a "
                    "master secret in --key-file (created owner-only on the first run), which "
                    "must stay apart from the outputs, and a random salt of the run. OUT must "
                    "be new, empty or this run's; the source is never written to (a source "
                    "inside OUT, or OUT inside it, is refused); links inside OUT are never "
                    "followed; a second run on the same OUT at the same time is refused. "
                    + LIMITS_NOTE + " See docs/SCALE.md.")
    p.add_argument("source", metavar="SRC", help="folder of images or of videos, .parquet "
                                                 "file, or a save_to_disk dataset folder")
    p.add_argument("--out", required=True, help="output folder (shared storage on a cluster)")
    p.add_argument("--format", default="auto", choices=["auto", "folder", "parquet", "hf",
                                                         "videos"],
                   help="auto: a folder holding only video files is 'videos' (one clip per "
                        "task, OUT/NAME.mp4 each)")
    p.add_argument("--image-column", help="table formats: the image column (auto-detected)")
    p.add_argument("--id-column", help="table formats: unique id column (default: row number)")
    p.add_argument("--cell-root", metavar="DIR",
                   help="table formats: the folder an image cell's path may lead into "
                        "(default: the table's own folder; absolute paths are read only "
                        "below a --cell-root). Paths that leave it, /proc, /sys, /dev, "
                        "FIFOs and devices are item errors, never opened")
    p.add_argument("--key-file", help="master secret (hex, owner-only); created when missing "
                                      "(default: a file under ~/.config/lreorg/dataset-keys/, "
                                      "printed)")
    p.add_argument("--private-log", metavar="FILE",
                   help="also write, to FILE outside OUT (owner-only, appended to), one JSON "
                        "line per item with what the public records leave out: its path (or "
                        "table, row and cell path), every face's box and detector score, the "
                        "diagnostics. Never publish it")
    add_weight_arguments(p)
    add_protect_arguments(p, method_default=None, seed=False, faces=False)
    p.add_argument("--no-face", default="drop", choices=["drop", "pass"],
                   help="items in which no face was found: drop them (the default; listed on "
                        "stderr and in the records) or pass them through unchanged (metadata "
                        "stripped; their record says so): a face the detector missed would "
                        "then be published as it is")
    p.add_argument("--batch-size", type=int, default=16, help="faces per encoder / generator "
                                                              "call")
    p.add_argument("--shard-size", type=int, default=64, help="items per shard (the unit of "
                                                              "work and of resumption)")
    p.add_argument("--engine", default="local", choices=["local", "ray"])
    p.add_argument("--address", help="Ray cluster address (default: a running or new local "
                                     "Ray)")
    p.add_argument("--actors", type=int, default=1, help="Ray actor pool size (one per GPU)")
    p.add_argument("--gpus-per-actor", type=float, default=0.0)
    p.add_argument("--cpus-per-actor", type=float, default=1.0)
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads per worker (this process, or each Ray actor; "
                        "default: all cores locally, --cpus-per-actor on Ray). CPU outputs "
                        "are bit-identical across engines only with the same N")
    add_runtime_arguments(p, dtype=True)
    p.set_defaults(func=_cmd_anonymize_dataset)
