"""The `lreorg` command line.

Sub-commands import what they need lazily so that `lreorg --help` and `lreorg keywords` start
fast and work without torch being loaded.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__
from . import keywords as kw


def _cmd_keywords(args: argparse.Namespace) -> int:
    rows = [(k.name, ", ".join(k.subcategories) or "(GIA: ε-DP group sampler)",
             " | ".join(k.prompts) or "-") for k in kw.KEYWORDS.values()]
    if args.json:
        print(json.dumps([{"keyword": k.name, "subcategories": list(k.subcategories),
                           "prompts": list(k.prompts), "region": k.region}
                          for k in kw.KEYWORDS.values()], indent=2))
        return 0
    width = max(len(r[0]) for r in rows)
    print(f"{'keyword':<{width}}  sub-categories")
    for name, subs, _ in rows:
        print(f"{name:<{width}}  {subs}")
    print(f"\ndefault --anonymize {','.join(kw.DEFAULT_ANONYMIZE)} "
          f"--recover {','.join(kw.DEFAULT_RECOVER)}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    from .model import LReOrg

    model = LReOrg.from_pretrained(args.bundle, revision=args.revision)
    info = {"config": model.get_config(),
            "fitted": {"identity": bool(model.identity_anonymizer.fitted),
                       **{n: bool(model.attribute_anonymizer(n).fitted)
                          for n in model.keywords if n != kw.IDENTITY}},
            "parameters": sum(p.numel() for p in model.parameters())}
    print(json.dumps(info, indent=2))
    return 0


IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"}


def _collect_inputs(paths: list[str]) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """(file, output stem relative to --out) for every input; folders are walked for images.

    Files named directly are tried whatever their suffix; a folder contributes its image files
    (recursively), mirrored under --out. Missing paths are reported, not fatal.
    """
    found, missing, used = [], [], set()
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            pairs = [(p, p.relative_to(path).with_suffix("")) for p in files]
        elif path.is_file():
            pairs = [(path, Path(path.stem))]
        else:
            missing.append((raw, "no such file or folder"))
            continue
        for file, stem in pairs:
            candidate, k = stem, 1
            while str(candidate) in used:  # two inputs with the same name: keep both
                candidate, k = stem.with_name(f"{stem.name}_{k}"), k + 1
            used.add(str(candidate))
            found.append((file, candidate))
    return found, missing


def _int_list(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def _window(text: str) -> tuple[int, int]:
    values = _int_list(text)
    if len(values) != 2:
        raise argparse.ArgumentTypeError(f"expected A,B (two integers), got {text!r}")
    return values[0], values[1]


def _save_png(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")  # our images are fresh arrays: no metadata to carry


def _cmd_anonymize(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from .pipeline import BASELINES, LReOrgPipeline

    inputs, failures = _collect_inputs(args.inputs)
    if not inputs and not failures:
        raise ValueError("no input images found")
    if args.method in BASELINES:
        pipe = LReOrgPipeline(device=args.device, min_face_size=args.min_face_size)
    else:
        if not args.bundle:
            raise ValueError(f"--bundle (Hub repo id or folder) is required for method "
                             f"{args.method!r}; the image baselines blur / pixelate / mask "
                             f"need none")
        pipe = LReOrgPipeline.from_pretrained(
            args.bundle, backbone=args.backbone, revision=args.revision, device=args.device,
            output_size=args.output_size, min_face_size=args.min_face_size)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = []
    for file, stem in tqdm(inputs, desc="anonymizing", unit="photo", disable=args.quiet):
        try:
            result = pipe(file, anonymize=args.anonymize, recover=args.recover,
                          epsilon=args.epsilon, rank_window=args.rank_window,
                          mechanism=args.mechanism, seed=args.seed, samples=args.samples,
                          method=args.method, strength=args.strength, aligned=args.aligned,
                          faces=args.faces, anonymized_crops=args.save_crops)
        except (ValueError, OSError) as e:  # unreadable, no face, bad face index: skip it
            failures.append((str(file), str(e)))
            continue
        _save_png(result.image, out_dir / stem.with_suffix(".png"))
        if args.save_crops:
            crops = out_dir / stem.parent / f"{stem.name}_faces"
            for face in result.faces:
                _save_png(face.aligned, crops / f"face{face.index}_input.png")
                if face.anonymized is not None:
                    _save_png(face.anonymized, crops / f"face{face.index}_anonymized.png")
                for k, sample in enumerate(face.diverse):
                    _save_png(sample, crops / f"face{face.index}_sample{k}.png")
        record = {"input": str(file), "output": str(stem.with_suffix(".png")),
                  **result.to_dict()}
        (out_dir / stem.with_suffix(".json")).write_text(json.dumps(record, indent=2))
        done.append(str(file))
    summary = {"processed": done, "failed": [{"input": f, "error": e} for f, e in failures]}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    for file, error in failures:
        print(f"lreorg: skipped {file}: {error}", file=sys.stderr)
    if not args.quiet:
        print(f"{len(done)} photo(s) anonymized into {out_dir}, {len(failures)} failed",
              file=sys.stderr)
    return 1 if failures else 0


def _cmd_anonymize_dataset(args: argparse.Namespace) -> int:
    from .dataset import (DatasetOptions, PipelineSpec, anonymize_dataset, default_key_path,
                          load_or_create_key)

    options = DatasetOptions(
        method=args.method, anonymize=args.anonymize, recover=args.recover,
        epsilon=args.epsilon, rank_window=args.rank_window, mechanism=args.mechanism,
        samples=args.samples, strength=args.strength, aligned=args.aligned,
        no_face=args.no_face, batch_size=args.batch_size, shard_size=args.shard_size)
    spec = PipelineSpec(bundle=args.bundle, backbone=args.backbone, revision=args.revision,
                        device=args.device, dtype=args.dtype, output_size=args.output_size,
                        min_face_size=args.min_face_size)
    key_path = Path(args.key_file) if args.key_file else default_key_path(args.out)
    key, created = load_or_create_key(key_path, args.out)
    if created:
        print(f"lreorg: new master secret written to {key_path} (owner-only). Keep it apart "
              f"from the outputs; pass --key-file {key_path} to resume or reproduce this run.",
              file=sys.stderr)
    elif not args.quiet:
        print(f"lreorg: master secret from {key_path}", file=sys.stderr)
    summary = anonymize_dataset(
        args.source, args.out, key, options=options, pipeline=spec, engine=args.engine,
        kind=args.format, image_column=args.image_column, id_column=args.id_column,
        address=args.address, actors=args.actors, gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor, progress=not args.quiet)
    if not args.quiet:
        print(f"{summary['items']} item(s) in {summary['shards']} shard(s) "
              f"({summary['shards_skipped']} already done): {summary['anonymized']} "
              f"anonymized, {summary['no_face']} without a face ({args.no_face}), "
              f"{summary['errors']} failed; records in {Path(args.out) / 'records.jsonl'}",
              file=sys.stderr)
    return 1 if summary["errors"] else 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / f"bench_{args.target}.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: benchmarks run from a source checkout")
    module = runpy.run_path(str(script))
    return module["main"](args.rest) or 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lreorg", description="LReOrg face anonymization (latent representation "
                                   "reorganization).")
    parser.add_argument("--version", action="version", version=f"lreorg-hub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("keywords", help="list the keywords and their sub-categories")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_keywords)

    p = sub.add_parser("info", help="show a bundle's configuration and fitted state")
    p.add_argument("bundle", help="local bundle folder or Hub repo id")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser(
        "anonymize", help="anonymize the faces in photos (files and folders)",
        description="Anonymize every face in the given photos and folders. Writes OUT/NAME.png "
                    "(the photo with faces replaced, no metadata), OUT/NAME.json (what ran, per "
                    "face boxes, timings) and OUT/summary.json. Unreadable files and photos "
                    "without a face are skipped and reported; the exit status is 1 if any was.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--bundle", help="LReOrg bundle: Hub repo id or local folder")
    p.add_argument("--revision", help="Hub revision of the bundle")
    p.add_argument("--backbone", help="local e4e / rosinality checkpoint (default: the "
                                      "bundle's configured Hub file; LREORG_BACKBONE_PATH)")
    p.add_argument("--method", default="lreorg",
                   choices=["lreorg", "laplace", "k-anonymity", "blur", "pixelate", "mask"],
                   help="lreorg (default), a latent baseline, or an image baseline")
    p.add_argument("--anonymize", default=",".join(kw.DEFAULT_ANONYMIZE),
                   help="keywords to anonymize, comma-separated (default: %(default)s)")
    p.add_argument("--recover", default=",".join(kw.DEFAULT_RECOVER),
                   help="keywords to recover, comma-separated (default: %(default)s; '' for "
                        "none)")
    p.add_argument("--epsilon", type=float, help="privacy budget ε >= 0 (default: the bundle's)")
    p.add_argument("--rank-window", type=_window, metavar="A,B",
                   help="GIA rank window (default: the bundle's)")
    p.add_argument("--mechanism", default="window", choices=["window", "strict"],
                   help="GIA mode: the paper's window (default) or strict ε-LDP over all groups")
    p.add_argument("--samples", type=int, default=1, help="diverse samples per face")
    p.add_argument("--seed", type=int,
                   help="seed for reproducible output. Default: OS entropy, which is not "
                        "recorded anywhere (the ε-DP guarantee needs secret coins). A seed you "
                        "give is written to each JSON with a warning: do not publish it with "
                        "the outputs")
    p.add_argument("--strength", type=float, help="image baseline strength")
    p.add_argument("--aligned", action="store_true",
                   help="inputs are already aligned face crops: no detection, no paste-back")
    p.add_argument("--faces", type=_int_list, metavar="I,J",
                   help="which detected faces (left to right, from 0); default all")
    p.add_argument("--min-face-size", type=int, default=20, help="smallest face, in pixels")
    p.add_argument("--output-size", type=int, help="generator resolution to stop at (e.g. 256 "
                                                   "for a fast preview)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0…")
    p.add_argument("--save-crops", action="store_true",
                   help="also save each face's aligned input, anonymized crop and samples")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_anonymize)

    p = sub.add_parser(
        "anonymize-dataset", help="anonymize a whole dataset (folder, Parquet, saved datasets)",
        description="Anonymize every item of a folder of images, a Parquet file or a Hugging "
                    "Face dataset saved with save_to_disk, into OUT in the same layout and "
                    "schema, with a record per item (OUT/records.jsonl). Resumable: a rerun "
                    "with the same OUT and key file skips finished shards. Per-item seeds come "
                    "from a master secret in --key-file (created owner-only on the first run), "
                    "which must stay apart from the outputs. See docs/SCALE.md.")
    p.add_argument("source", metavar="SRC", help="folder of images, .parquet file, or a "
                                                 "save_to_disk dataset folder")
    p.add_argument("--out", required=True, help="output folder (shared storage on a cluster)")
    p.add_argument("--format", default="auto", choices=["auto", "folder", "parquet", "hf"])
    p.add_argument("--image-column", help="table formats: the image column (auto-detected)")
    p.add_argument("--id-column", help="table formats: unique id column (default: row number)")
    p.add_argument("--key-file", help="master secret (hex); created when missing (default: a "
                                      "file under ~/.config/lreorg/dataset-keys/, printed)")
    p.add_argument("--bundle", help="LReOrg bundle: Hub repo id or local folder")
    p.add_argument("--revision", help="Hub revision of the bundle")
    p.add_argument("--backbone", help="local e4e / rosinality checkpoint")
    p.add_argument("--method", default="lreorg",
                   choices=["lreorg", "laplace", "k-anonymity", "blur", "pixelate", "mask"])
    p.add_argument("--anonymize", default=",".join(kw.DEFAULT_ANONYMIZE))
    p.add_argument("--recover", default=",".join(kw.DEFAULT_RECOVER))
    p.add_argument("--epsilon", type=float, help="privacy budget ε per draw")
    p.add_argument("--rank-window", type=_window, metavar="A,B")
    p.add_argument("--mechanism", default="window", choices=["window", "strict"])
    p.add_argument("--samples", type=int, default=1, help="draws per face (ε adds up)")
    p.add_argument("--strength", type=float, help="image baseline strength")
    p.add_argument("--aligned", action="store_true", help="items are aligned face crops")
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
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0…")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="backbone precision")
    p.add_argument("--output-size", type=int, help="generator resolution to stop at")
    p.add_argument("--min-face-size", type=int, default=20)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_anonymize_dataset)

    p = sub.add_parser("bench", help="run a benchmark (prints a table, writes JSON)")
    p.add_argument("target", choices=["backbones", "pipeline", "dataset"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"lreorg: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
