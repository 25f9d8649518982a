"""`lreorg anonymize-dataset`: whole datasets (folders, Parquet, saved datasets), local or on Ray."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .args import (add_protect_arguments, add_runtime_arguments, add_weight_arguments,
                   check_weight_arguments, protect_options)


def _cmd_anonymize_dataset(args: argparse.Namespace) -> int:
    from ..dataset import (DatasetOptions, PipelineSpec, anonymize_dataset, default_key_path,
                          load_or_create_key)
    from ..dataset.keys import is_within

    protect = protect_options(args)
    protect.validate(default_method=args.method or ("lreorg" if args.bundle else "style-mix"
                                                    if args.style_mix else None))
    check_weight_arguments(args, args.method)
    options = DatasetOptions(protect=protect, no_face=args.no_face,
                             batch_size=args.batch_size, shard_size=args.shard_size)
    spec = PipelineSpec(bundle=args.bundle, backbone=args.backbone, revision=args.revision,
                        style_mix=args.style_mix,
                        device=args.device, dtype=args.dtype, output_size=args.output_size,
                        min_face_size=args.min_face_size)
    key_path = Path(args.key_file) if args.key_file else default_key_path(args.out)

    def new_key() -> bytes:  # only once the run is checked: a refused start creates no key
        secret, created = load_or_create_key(key_path, args.out)
        if created:
            print(f"lreorg: new master secret written to {key_path} (owner-only). Keep it "
                  f"apart from the outputs; pass --key-file {key_path} to resume or reproduce "
                  f"this run.", file=sys.stderr)
        return secret

    key = new_key
    if key_path.exists() or is_within(key_path, Path(args.out)):  # a bad key fails at once
        key, _ = load_or_create_key(key_path, args.out)
        if not args.quiet:
            print(f"lreorg: master secret from {key_path}", file=sys.stderr)
    try:
        summary = anonymize_dataset(
            args.source, args.out, key, options=options, pipeline=spec, engine=args.engine,
            kind=args.format, image_column=args.image_column, id_column=args.id_column,
            address=args.address, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
            cpus_per_actor=args.cpus_per_actor, threads=args.threads, progress=not args.quiet)
    except KeyboardInterrupt:
        if (Path(args.out) / "_lreorg" / "run.json").is_file():
            print(f"lreorg: interrupted; the finished shards in {args.out} are kept: run the "
                  f"same command with --key-file {key_path} to resume", file=sys.stderr)
            return 130
        raise
    if not args.quiet:
        print(f"{summary['items']} item(s) in {summary['shards']} shard(s), "
              f"{summary['shards_skipped']} of them done by an earlier run: "
              f"{summary['anonymized']} "
              f"anonymized, {summary['no_face']} without a face ({args.no_face}), "
              f"{summary['errors']} failed; records in {Path(args.out) / 'records.jsonl'}",
              file=sys.stderr)
    return 1 if summary["errors"] else 0


def register(sub) -> None:
    p = sub.add_parser(
        "anonymize-dataset", help="anonymize a whole dataset (folder, Parquet, saved datasets)",
        description="Anonymize every item of a folder of images, a Parquet file or a Hugging "
                    "Face dataset saved with save_to_disk, into OUT in the same layout and "
                    "schema, with a record per item (OUT/records.jsonl). Resumable: a rerun "
                    "with the same OUT and key file skips finished shards. Per-item seeds come "
                    "from a master secret in --key-file (created owner-only on the first run), "
                    "which must stay apart from the outputs. See docs/SCALE.md.")
    p.add_argument("source", metavar="SRC", help="folder of images or of videos, .parquet "
                                                 "file, or a save_to_disk dataset folder")
    p.add_argument("--out", required=True, help="output folder (shared storage on a cluster)")
    p.add_argument("--format", default="auto", choices=["auto", "folder", "parquet", "hf",
                                                         "videos"],
                   help="auto: a folder holding only video files is 'videos' (one clip per "
                        "task, OUT/NAME.mp4 each)")
    p.add_argument("--image-column", help="table formats: the image column (auto-detected)")
    p.add_argument("--id-column", help="table formats: unique id column (default: row number)")
    p.add_argument("--key-file", help="master secret (hex); created when missing (default: a "
                                      "file under ~/.config/lreorg/dataset-keys/, printed)")
    add_weight_arguments(p)
    add_protect_arguments(p, method_default=None, seed=False, faces=False)
    p.add_argument("--no-face", default="pass", choices=["pass", "drop"],
                   help="items without a face: keep unchanged (metadata stripped) or drop")
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
