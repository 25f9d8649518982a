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


def _float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers (inf allowed), "
                                         f"got {text!r}")


def _cmd_eval(args: argparse.Namespace) -> int:
    from .encoders import FFHQ_FACE_CROP, IdentityEncoder, KeywordEncoder
    from .evaluation import ClipImageFeatures, EvalConfig, Evaluator, InceptionFeatures
    from .pipeline import LReOrgPipeline

    methods = [m.strip() for m in (args.methods or "").split(",") if m.strip()]
    config = EvalConfig(
        methods=methods or None,
        anonymize=args.anonymize, recover=args.recover, epsilon=args.epsilon,
        mechanism=args.mechanism, rank_window=list(args.rank_window) if args.rank_window else None,
        epsilons=args.epsilons, attributes=args.attributes,
        recovery_keywords=args.recovery_keywords, threshold=args.threshold, seed=args.seed,
        judge=f"facenet {Path(args.judge).name}")
    # Scorers first: a missing weight file should fail before any photo is touched.
    judge = IdentityEncoder(pretrained=args.judge, crop=FFHQ_FACE_CROP)
    clip_cfg = json.loads(Path(args.clip_config).read_text()) if args.clip_config else None
    clip = KeywordEncoder(args.clip_model, model_cfg=clip_cfg,
                          pretrained=None if args.clip_pretrained == "none"
                          else args.clip_pretrained)
    features = (ClipImageFeatures(clip) if args.fid_features == "clip"
                else InceptionFeatures(weights_path=args.fid_weights))
    if args.bundle:
        pipe = LReOrgPipeline.from_pretrained(
            args.bundle, backbone=args.backbone, revision=args.revision, device=args.device,
            output_size=args.output_size, min_face_size=args.min_face_size)
    else:  # the image baselines need no weights
        pipe = LReOrgPipeline(device=args.device, min_face_size=args.min_face_size)
    judge.to(pipe.device)
    clip.to(pipe.device)
    if isinstance(features, InceptionFeatures):
        features.to(pipe.device)
    evaluator = Evaluator(pipe, judge, clip, features, config)
    results = evaluator.run(args.photos, args.out, progress=not args.quiet, restart=args.restart)
    out = Path(args.out)
    print((out / "results.md").read_text())
    if not args.quiet:
        print(f"wrote {out / 'results.json'}, {out / 'results.md'}, "
              f"{out / 'privacy_utility.png'} ({results['photos']['evaluated']} photo(s))",
              file=sys.stderr)
    for failure in results["photos"]["failed"]:
        print(f"lreorg: skipped {failure['photo']}: {failure['error']}", file=sys.stderr)
    return 1 if results["photos"]["failed"] else 0


def _cmd_push(args: argparse.Namespace) -> int:
    from . import hub

    if args.dry_run and not args.out:
        raise ValueError("--dry-run needs --out DIR: the folder that would be uploaded")
    if args.out and not args.dry_run:
        raise ValueError("--out is only used with --dry-run")
    if not Path(args.bundle).is_dir():
        raise FileNotFoundError(f"{args.bundle} is not a bundle folder (config.json + "
                                f"model.safetensors)")
    if args.dry_run:
        folder = hub.build_upload_folder(args.bundle, args.out, repo_id=args.repo_id,
                                         eval_results=args.eval,
                                         backbone_revision=args.backbone_revision)
        print(f"dry run: {folder} holds what `lreorg push` would upload to {args.repo_id}:")
        for path in sorted(folder.iterdir()):
            print(f"  {path.name}  ({path.stat().st_size} bytes)")
        return 0
    url = hub.push(args.bundle, args.repo_id, eval_results=args.eval,
                   backbone_revision=args.backbone_revision, private=args.private,
                   token=args.token, commit_message=args.message)
    print(url)
    return 0


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
        "eval", help="evaluate methods on a folder of face photos (PSR, detection, APR, FID)",
        description="Run LReOrg and every baseline on the photos under PHOTOS and judge the "
                    "outputs: PSR (a face recognizer, by default facenet's CASIA-WebFace model, "
                    "the one LReOrg is not trained against), detection rate (MTCNN), APR and "
                    "per-keyword recovery (CLIP zero-shot), FID, identity-similarity "
                    "distributions, and an ε sweep. Writes OUT/results.md (paper Tables 2-8 "
                    "layout), OUT/results.json, OUT/privacy_utility.png and OUT/records/ (one "
                    "record per photo, no pixels); rerunning with the same options resumes.")
    p.add_argument("photos", metavar="PHOTOS", help="folder of face photos (searched recursively)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--bundle", help="LReOrg bundle (Hub repo id or folder); without it only the "
                                    "image baselines run")
    p.add_argument("--revision", help="Hub revision of the bundle")
    p.add_argument("--backbone", help="local e4e / rosinality checkpoint (default: the bundle's "
                                      "configured Hub file)")
    p.add_argument("--methods", help="comma-separated methods (default: every method that can "
                                     "run with what is loaded)")
    p.add_argument("--anonymize", default=",".join(kw.DEFAULT_ANONYMIZE),
                   help="keywords to anonymize (default: %(default)s)")
    p.add_argument("--recover", default=",".join(kw.DEFAULT_RECOVER),
                   help="keywords to recover (default: %(default)s)")
    p.add_argument("--epsilon", type=float, help="ε of the main table (default: the bundle's)")
    p.add_argument("--epsilons", type=_float_list, default=[0.5, 1.0, 4.0, 16.0],
                   metavar="E1,E2", help="ε sweep for the privacy-utility plot (default: "
                                         "0.5,1,4,16; 'inf' allowed; '' for none)")
    p.add_argument("--mechanism", default="window", choices=["window", "strict"])
    p.add_argument("--rank-window", type=_window, metavar="A,B")
    p.add_argument("--attributes", default=",".join(kw.DEFAULT_RECOVER),
                   help="keywords judged for APR (default: %(default)s)")
    p.add_argument("--recovery-keywords", default=",".join((kw.IDENTITY, *kw.DEFAULT_RECOVER)),
                   help="keywords of the recovery table (default: %(default)s)")
    p.add_argument("--judge", default="casia-webface",
                   help="face recognizer for PSR: casia-webface (default), vggface2 or a "
                        "state-dict file of facenet's InceptionResnetV1")
    p.add_argument("--threshold", type=float, default=0.4,
                   help="judge's cosine-similarity match threshold (default: %(default)s)")
    p.add_argument("--clip-model", default="ViT-B-32", help="open_clip model for APR")
    p.add_argument("--clip-pretrained", default="laion2b_s34b_b79k",
                   help="open_clip tag or checkpoint file for APR; 'none' = random weights "
                        "(tests only)")
    p.add_argument("--clip-config", help="JSON file of open_clip model_cfg overrides")
    p.add_argument("--fid-features", default="inception", choices=["inception", "clip"],
                   help="FID feature network: torchmetrics' Inception (default) or CLIP")
    p.add_argument("--fid-weights", help="local torch-fidelity Inception weights (offline)")
    p.add_argument("--seed", type=int, help="make the evaluation reproducible (default: OS "
                                            "entropy, never recorded)")
    p.add_argument("--min-face-size", type=int, default=20, help="smallest face, in pixels")
    p.add_argument("--output-size", type=int, help="generator resolution to stop at")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0…")
    p.add_argument("--restart", action="store_true", help="discard earlier records in OUT")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser(
        "push", help="publish a bundle on the Hugging Face Hub with its model card",
        description="Render the model card (licence, tags, backbone with its pinned revision, "
                    "intended use, limitations, privacy guarantee and assumptions, evaluation "
                    "table from --eval, CDFNet round-trip error from BUNDLE/training.json, "
                    "citation) and upload config.json, model.safetensors and README.md to "
                    "REPO_ID. --dry-run --out DIR writes exactly that folder instead.")
    p.add_argument("bundle", metavar="BUNDLE", help="local bundle folder")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub model repo, namespace/name")
    p.add_argument("--eval", metavar="RESULTS_JSON", help="lreorg eval's results.json for the "
                                                          "card's evaluation table")
    p.add_argument("--backbone-revision", metavar="COMMIT",
                   help="pin the backbone checkpoint repo to this commit (required unless the "
                        "bundle already records one)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--token", help="Hub token (default: the logged-in one / HF_TOKEN)")
    p.add_argument("--message", default="Upload LReOrg bundle", help="commit message")
    p.add_argument("--dry-run", action="store_true", help="write the upload folder, push nothing")
    p.add_argument("--out", help="with --dry-run: the folder to write")
    p.set_defaults(func=_cmd_push)

    p = sub.add_parser("bench", help="run a benchmark (prints a table, writes JSON)")
    p.add_argument("target", choices=["backbones", "pipeline"])
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
