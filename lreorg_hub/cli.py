"""The `lreorg` command line.

Sub-commands import what they need lazily so that `lreorg --help` and `lreorg keywords` start
fast and work without torch being loaded.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys
from pathlib import Path

from . import __version__
from . import keywords as kw

# Plain copies of methods.METHODS / MAX_SAMPLES names so `lreorg --help` needs no torch
# (tests/test_cli.py checks they agree).
METHOD_NAMES = ("lreorg", "style-mix", "laplace", "k-anonymity", "blur", "pixelate", "mask")
MAX_SAMPLES = 16


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
# Names at the top of --out that the run itself writes: a photo called summary.* gets
# summary_1.* so its JSON cannot overwrite the run's summary.
RESERVED_STEMS = {"summary"}


def _not_a_photo(path: Path) -> str | None:
    """Why ``path`` cannot be read as a photo (FIFO, device, loop, dangling link), or None.

    Never opens the path: opening a FIFO would block the run.
    """
    try:
        st = path.stat()
    except FileNotFoundError:
        if path.is_symlink():
            return f"dangling symbolic link (its target {os.readlink(path)!r} does not exist)"
        return "no such file or folder"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symbolic link loop (the link points back to itself)"
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISFIFO(st.st_mode):
        return "a FIFO (named pipe), not a regular file: not read"
    if stat.S_ISSOCK(st.st_mode) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
        return "a socket or device, not a regular file: not read"
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):
        return "not a regular file: not read"
    return None


def _walk(folder: Path, skip: Path | None) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``folder`` (sorted), and the entries that had to be skipped.

    Symbolic links to folders are not followed (no loops); links to files are.
    """
    files, problems = [], []
    for root, dirs, names in os.walk(folder, followlinks=False):
        here = Path(root)
        if skip is not None and _is_within(here, skip):
            dirs[:] = []
            continue
        for d in list(dirs):
            if (here / d).is_symlink():
                problems.append((str(here / d), "symbolic link to a folder: not followed"))
                dirs.remove(d)
        dirs.sort()
        for name in sorted(names):
            path = here / name
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            why = _not_a_photo(path)
            if why is None and path.is_dir():
                why = "a folder with an image suffix: not read"
            if why is None:
                files.append(path)
            else:
                problems.append((str(path), why))
    return sorted(files), problems


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
        return True
    except (ValueError, OSError):
        return False


def _collect_inputs(paths: list[str], out_dir: Path | None = None
                    ) -> tuple[list[tuple[Path, Path]], list[tuple[str, str]]]:
    """(file, output stem relative to --out) for every input; folders are walked for images.

    Files named directly are tried whatever their suffix; a folder contributes its image files
    (recursively, never the --out folder), mirrored under --out. Paths that cannot be read
    (missing, FIFO, link loop, dangling link) are reported, not fatal.
    """
    found, problems, used = [], [], set(RESERVED_STEMS)
    for raw in paths:
        path = Path(raw)
        why = _not_a_photo(path)
        if why is not None:
            problems.append((raw, why))
            continue
        if path.is_dir():
            files, skipped = _walk(path, out_dir)
            problems.extend(skipped)
            pairs = [(p, p.relative_to(path).with_suffix("")) for p in files]
        else:
            pairs = [(path, Path(path.stem))]
        for file, stem in pairs:
            candidate, k = stem, 1
            while str(candidate) in used:  # two inputs with the same name: keep both
                candidate, k = stem.with_name(f"{stem.name}_{k}"), k + 1
            used.add(str(candidate))
            found.append((file, candidate))
    return found, problems


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


def _number(text: str) -> float:
    """A float that may be 'inf' (ε = ∞); NaN and other text are refused here."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value != value:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
    return value


def _prepare_out(out: str) -> Path:
    """--out must be (or become) a writable folder: checked before anything is loaded."""
    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder: give a folder for the "
                         f"outputs")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out} cannot be created: {e.strerror or e}") from None
    probe = path / f".lreorg-write-test-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise ValueError(f"--out {out} is not writable: {e.strerror or e}") from None
    return path


def _save_png(image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format="PNG")  # our images are fresh arrays: no metadata to carry


def _write_outputs(result, file: Path, stem: Path, out_dir: Path, save_crops: bool) -> None:
    """The photo's PNG (+ crops) and JSON; on any failure nothing half-written is left."""
    written: list[Path] = []
    png, meta = out_dir / stem.with_suffix(".png"), out_dir / stem.with_suffix(".json")
    try:
        for target in (png, meta):
            if target.is_dir():
                raise ValueError(f"cannot write {target}: a folder is in the way")
        crops = []
        if save_crops:
            folder = out_dir / stem.parent / f"{stem.name}_faces"
            for face in result.faces:
                crops.append((face.aligned, folder / f"face{face.index}_input.png"))
                if face.anonymized is not None:
                    crops.append((face.anonymized,
                                  folder / f"face{face.index}_anonymized.png"))
                crops.extend((sample, folder / f"face{face.index}_sample{k}.png")
                             for k, sample in enumerate(face.diverse))
        for image, target in [(result.image, png), *crops]:
            written.append(target)
            _save_png(image, target)
        record = {"input": str(file), "output": str(stem.with_suffix(".png")),
                  **result.to_dict()}
        written.append(meta)
        meta.write_text(json.dumps(record, indent=2))
    except BaseException:
        for target in written:
            if target.is_file():
                target.unlink()
        raise


def _describe_failure(error: BaseException) -> str:
    """One line for the summary: our messages as they are, anything else with its type."""
    if isinstance(error, (ValueError, FileNotFoundError)):
        return str(error)
    if isinstance(error, OSError):
        return f"{error.strerror or error}" + (f": {error.filename}" if error.filename else "")
    if isinstance(error, MemoryError):
        return "ran out of memory on this photo"
    return f"unexpected error ({type(error).__name__}): {error}"


def _anonymize_options(args: argparse.Namespace):
    from .methods import ProtectOptions

    return ProtectOptions(anonymize=args.anonymize, recover=args.recover, epsilon=args.epsilon,
                          rank_window=args.rank_window, mechanism=args.mechanism,
                          seed=args.seed, samples=args.samples, strength=args.strength,
                          style_rows=args.style_rows)


def _check_anonymize_args(args: argparse.Namespace):
    """Every argument, before anything is loaded or any photo is read (exit status 2)."""
    from .methods import METHODS, check_faces, check_output_size
    from .pipeline import _check_settings, check_device

    info = METHODS[args.method]
    options = _anonymize_options(args)
    options.validate(args.method)  # the registry's limits; the loaded weights' come later
    weights = {"--bundle": args.bundle, "--revision": args.revision,
               "--backbone": args.backbone, "--style-mix": args.style_mix,
               "--output-size": args.output_size}
    applies = {"bundle": ("--bundle", "--revision", "--backbone", "--output-size"),
               "backbone": ("--backbone", "--style-mix", "--output-size"),
               "nothing": ()}[info.needs]
    extra = [flag for flag, value in weights.items() if value is not None and flag not in applies]
    if extra:
        raise ValueError(f"{', '.join(extra)} {'does' if len(extra) == 1 else 'do'} not apply "
                         f"to --method {args.method}")
    if info.needs == "bundle" and not args.bundle:
        raise ValueError(f"--bundle (Hub repo id or folder) is required for method "
                         f"{args.method!r}; style-mix needs only --backbone and --style-mix, the "
                         f"image baselines blur / pixelate / mask need none")
    if info.needs == "backbone" and not args.style_mix:
        raise ValueError("--method style-mix needs --style-mix (fitted groups: `lreorg "
                         "fit-style-mix`) and a backbone (--backbone, LREORG_BACKBONE_PATH or "
                         "the default Hub file)")
    if args.revision is not None and not args.bundle:
        raise ValueError("--revision applies to --bundle, which was not given")
    if args.aligned and info.kind == "image":
        raise ValueError(f"--aligned does not apply to --method {args.method}: the image "
                         f"baselines work on whole photos")
    if args.aligned and args.faces is not None:
        raise ValueError("--faces does not apply with --aligned: an aligned crop is one face")
    check_faces(args.faces)
    check_output_size(args.output_size)
    _check_settings(0.1, 4, 1, args.min_face_size)
    check_device(args.device)
    return options


def _cmd_anonymize(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    options = _check_anonymize_args(args)
    out_dir = _prepare_out(args.out)
    inputs, failures = _collect_inputs(args.inputs, out_dir)
    if not inputs:
        for file, error in failures:
            print(f"lreorg: skipped {file}: {error}", file=sys.stderr)
        raise ValueError("no input images found" + (
            f" ({len(failures)} path(s) could not be read)" if failures else ""))

    from .pipeline import LReOrgPipeline

    if args.method in ("blur", "pixelate", "mask"):
        pipe = LReOrgPipeline(device=args.device, min_face_size=args.min_face_size)
    else:
        pipe = LReOrgPipeline.from_pretrained(
            args.bundle, backbone=args.backbone, revision=args.revision, device=args.device,
            style_mix=args.style_mix, output_size=args.output_size,
            min_face_size=args.min_face_size)
    # Against what was loaded (rank window ≤ m, keywords in the bundle, fitted anonymizers),
    # still before the first photo.
    method, options = pipe.check(args.method, options, aligned=args.aligned, faces=args.faces)
    done = []
    for file, stem in tqdm(inputs, desc="anonymizing", unit="photo", disable=args.quiet):
        try:
            result = pipe(file, method=method, options=options, aligned=args.aligned,
                          faces=args.faces, anonymized_crops=args.save_crops)
            _write_outputs(result, file, stem, out_dir, args.save_crops)
        except Exception as e:  # one photo never ends the run: record it and go on
            failures.append((str(file), _describe_failure(e)))
            continue
        done.append({"input": str(file), "output": str(stem.with_suffix(".png"))})
    summary = {"method": method, "processed": done,
               "failed": [{"input": f, "error": e} for f, e in failures]}
    try:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    except OSError as e:
        raise ValueError(f"could not write {out_dir / 'summary.json'}: "
                         f"{e.strerror or e}") from None
    for file, error in failures:
        print(f"lreorg: skipped {file}: {error}", file=sys.stderr)
    if not args.quiet:
        print(f"{len(done)} photo(s) anonymized into {out_dir}, {len(failures)} failed",
              file=sys.stderr)
    return 1 if failures else 0


def _cmd_anonymize_dataset(args: argparse.Namespace) -> int:
    from .dataset import (DatasetOptions, PipelineSpec, anonymize_dataset, default_key_path,
                          load_or_create_key)
    from .dataset.keys import is_within

    options = DatasetOptions(
        method=args.method, anonymize=args.anonymize, recover=args.recover,
        epsilon=args.epsilon, rank_window=args.rank_window, mechanism=args.mechanism,
        samples=args.samples, strength=args.strength, style_rows=args.style_rows,
        aligned=args.aligned, no_face=args.no_face, batch_size=args.batch_size,
        shard_size=args.shard_size)
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


def _cmd_train(args: argparse.Namespace) -> int:
    from .training.build import build_trainer
    from .training.config import TrainingConfig
    from .training.swap import latest_checkpoint

    overrides = list(args.set)
    for name in ("steps", "out", "device", "seed"):
        if getattr(args, name) is not None:
            overrides.append(f"{name}={json.dumps(getattr(args, name))}")
    if args.quiet:
        overrides.append("progress=false")
    config_file = args.config
    if args.resume and config_file is None:  # continue with the run's own configuration
        config_file = latest_checkpoint(args.resume) / "config.json"
    config = TrainingConfig.from_file(config_file, overrides)
    trainer = build_trainer(config, resume=args.resume)
    trainer.fit()
    bundle = trainer.save_bundle()
    summary = {"bundle": str(bundle), "steps": trainer.step,
               "roundtrip_error": trainer.last_roundtrip, "log": str(Path(config.out) / "log.csv")}
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_fit_anonymizers(args: argparse.Namespace) -> int:
    import torch

    from .backbones import load_backbone
    from .model import LReOrg
    from .training.build import seeded_init, resolve_device
    from .training.fitting import fit_anonymizers
    from .encoders import KeywordEncoder

    device = resolve_device(args.device)
    model = LReOrg.from_pretrained(args.bundle, revision=args.revision, map_location=device)
    out = Path(args.out) if args.out else Path(args.bundle)
    if not args.out and not Path(args.bundle).is_dir():
        raise ValueError("--out is required when the bundle is a Hub repo id")
    backbone = load_backbone(args.backbone if args.backbone else model.backbone).to(device)
    clip_args = {"model_name": model.text_encoder["model_name"],
                 "pretrained": model.text_encoder["pretrained"]}
    if args.clip_model:
        clip_args["model_name"] = args.clip_model
    if args.clip_pretrained:
        clip_args["pretrained"] = None if args.clip_pretrained == "none" else args.clip_pretrained
    if args.clip_config:
        clip_args["model_cfg"] = json.loads(Path(args.clip_config).read_text())
    clip = seeded_init(KeywordEncoder, device=device, **clip_args)
    report = fit_anonymizers(model, backbone.generator, clip, num_samples=args.samples,
                             keywords=kw.parse_list(args.keywords) or None, seed=args.seed,
                             iterations=args.iterations, batch_size=args.batch_size,
                             output_size=args.output_size, progress=not args.quiet)
    model.to(torch.device("cpu")).save_pretrained(out)
    (out / "fitting.json").write_text(json.dumps(report.to_dict(), indent=2))
    print(report.describe(), file=sys.stderr)
    print(json.dumps({"bundle": str(out), **report.to_dict()}, indent=2))
    return 0


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
    if args.bundle or args.style_mix:
        pipe = LReOrgPipeline.from_pretrained(
            args.bundle, backbone=args.backbone, revision=args.revision, device=args.device,
            style_mix=args.style_mix, output_size=args.output_size,
            min_face_size=args.min_face_size)
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


def _cmd_demo_bundle(args: argparse.Namespace) -> int:
    from .demo import write_demo

    try:
        paths = write_demo(args.directory, seed=args.seed, overwrite=args.force)
    except FileExistsError as e:
        raise ValueError(str(e)) from None
    except OSError as e:  # unwritable place, disk full: one line, not a traceback
        raise ValueError(f"could not write the demo into {args.directory}: "
                         f"{e.strerror or e}") from None
    d = Path(args.directory)
    print(f"wrote a demo bundle with RANDOM weights (it shows the workflow, not real "
          f"anonymization):\n  bundle:   {paths['bundle']}\n  backbone: {paths['backbone']}\n"
          f"try:\n  lreorg info {paths['bundle']}\n"
          f"  LREORG_BACKBONE_PATH={paths['backbone']} lreorg anonymize PHOTO --out "
          f"{d / 'out'} --bundle {paths['bundle']}\n"
          f"  lreorg anonymize PHOTO --out {d / 'out'} --method style-mix --backbone "
          f"{paths['backbone']} --style-mix {paths['style_mix']}")
    return 0


def _cmd_fit_style_mix(args: argparse.Namespace) -> int:
    import torch

    from .backbones import load_backbone
    from .stylemix import StyleMixAnonymizer

    rows = None if args.rows is None else list(args.rows)
    backbone = load_backbone(args.backbone)
    g = backbone.generator
    style_mix = StyleMixAnonymizer(args.groups, args.members, g.style_dim, g.n_latent,
                                   rows=rows, truncation=args.truncation)
    generator = None
    if args.seed is not None:
        generator = torch.Generator().manual_seed(args.seed)
    style_mix.fit(g, num_samples=args.samples, generator=generator)
    style_mix.save_pretrained(args.out)
    print(f"style-mix groups ({args.groups} groups, {args.members} members from {args.samples}"
          f" mapping-network samples, rows {list(style_mix.rows)}) written to {args.out}",
          file=sys.stderr)
    return 0


def _cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = Path(__file__).resolve().parents[1] / "benchmarks" / f"bench_{args.target}.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: benchmarks run from a source checkout")
    module = runpy.run_path(str(script))
    return module["main"](args.rest) or 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line and exit status 2 (argparse prints the usage block too)."""

    def error(self, message: str):
        self.exit(2, f"lreorg: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
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
                    "face boxes, timings) and OUT/summary.json. Every argument is checked before "
                    "any photo is read (exit status 2 on a bad one). Photos that fail (unreadable, "
                    "no face, anything else) are skipped and listed in the summary; the run goes "
                    "on and the exit status is 1 if any failed.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--bundle", help="LReOrg bundle: Hub repo id or local folder")
    p.add_argument("--revision", help="Hub revision of the bundle")
    p.add_argument("--backbone", help="local e4e / rosinality checkpoint (default: the "
                                      "bundle's configured Hub file; LREORG_BACKBONE_PATH)")
    p.add_argument("--style-mix", metavar="DIR",
                   help="fitted style-mix groups (`lreorg fit-style-mix`), for --method "
                        "style-mix")
    p.add_argument("--method", default="lreorg", choices=list(METHOD_NAMES),
                   help="lreorg (default); style-mix (training-free baseline, needs only the "
                        "backbone); a latent baseline (laplace, k-anonymity); or an image "
                        "baseline (blur, pixelate, mask). Options that do not apply to the "
                        "method are an error.")
    p.add_argument("--anonymize", default=None,
                   help=f"keywords to anonymize, comma-separated (default: "
                        f"{','.join(kw.DEFAULT_ANONYMIZE)})")
    p.add_argument("--recover", default=None,
                   help=f"keywords to recover, comma-separated (default for lreorg: "
                        f"{','.join(kw.DEFAULT_RECOVER)}; '' for none)")
    p.add_argument("--epsilon", type=_number,
                   help="privacy budget ε >= 0 per draw, 'inf' allowed (no DP guarantee then); "
                        "default: the bundle's")
    p.add_argument("--rank-window", type=_window, metavar="A,B",
                   help="GIA rank window, 1 <= A <= B <= groups (default: the bundle's)")
    p.add_argument("--mechanism", default=None, choices=["window", "strict"],
                   help="GIA mode: the paper's window (default) or strict ε-LDP over all groups")
    p.add_argument("--samples", type=int, help=f"diverse samples per face, 1..{MAX_SAMPLES} "
                                               f"(k samples spend k·ε; default 1)")
    p.add_argument("--seed", type=int,
                   help="seed 0..2**64-1 for reproducible output. Default: OS entropy, which is "
                        "not recorded anywhere (the ε-DP guarantee needs secret coins). A seed "
                        "you give is written to each JSON with a warning: do not publish it "
                        "with the outputs")
    p.add_argument("--strength", type=_number,
                   help="image baseline strength in (0, 1]: blur σ and pixelate block as a "
                        "fraction of the face size, mask opacity")
    p.add_argument("--style-rows", type=_window, metavar="R0,R1",
                   help="style-mix: W+ rows [R0, R1) to replace (default: the middle rows)")
    p.add_argument("--aligned", action="store_true",
                   help="inputs are already aligned face crops: no detection, no paste-back")
    p.add_argument("--faces", type=_int_list, metavar="I,J",
                   help="which detected faces (left to right, from 0); default all")
    p.add_argument("--min-face-size", type=int, default=20,
                   help="smallest face, in pixels (1..10000)")
    p.add_argument("--output-size", type=int, help="generator resolution to stop at, a power "
                                                   "of two (e.g. 256 for a fast preview)")
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
    p.add_argument("--style-mix", help="fitted style-mix groups (folder) for --method "
                                       "style-mix")
    p.add_argument("--method", choices=list(METHOD_NAMES),
                   help="default: lreorg with a bundle, style-mix with --style-mix only")
    p.add_argument("--anonymize", help="keywords to anonymize, comma-separated (default: "
                                       "the method's)")
    p.add_argument("--recover", help="keywords to recover, comma-separated ('' for none)")
    p.add_argument("--epsilon", type=float, help="privacy budget ε per draw")
    p.add_argument("--rank-window", type=_window, metavar="A,B")
    p.add_argument("--mechanism", choices=["window", "strict"])
    p.add_argument("--samples", type=int, help="draws per face (ε adds up: the record "
                                               "states samples·ε)")
    p.add_argument("--strength", type=float, help="image baseline strength")
    p.add_argument("--style-rows", type=_window, metavar="R0,R1", help="style-mix W+ rows")
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
    p.add_argument("--threads", type=int, metavar="N",
                   help="torch CPU threads per worker (this process, or each Ray actor; "
                        "default: all cores locally, --cpus-per-actor on Ray). CPU outputs "
                        "are bit-identical across engines only with the same N")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0…")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="backbone precision")
    p.add_argument("--output-size", type=int, help="generator resolution to stop at")
    p.add_argument("--min-face-size", type=int, default=20)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_anonymize_dataset)

    p = sub.add_parser(
        "train", help="keyword-based swap training of CDFNet (SPEC §5)",
        description="Train a bundle's CDFNet by keyword-based swapping on latents from the "
                    "generator's mapping network. Writes OUT/log.csv, OUT/checkpoints/step-N/ "
                    "(safetensors + JSON, the effective configuration included) and, at the "
                    "end, OUT/bundle/ with training.json. See docs/TRAINING.md.")
    p.add_argument("--config", help="training configuration (.json or .toml; default: the "
                                    "defaults, or the resumed run's own configuration)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option (JSON value; a.b=... for nested), repeatable")
    p.add_argument("--resume", metavar="RUN_OR_CHECKPOINT",
                   help="continue bit-for-bit from a checkpoint folder or a run's newest one")
    p.add_argument("--steps", type=int, help="total steps to reach (shorthand for --set)")
    p.add_argument("--out", help="run folder (shorthand for --set out=...)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1…")
    p.add_argument("--seed", type=int, help="seed of every draw (default: OS entropy, "
                                            "not recorded)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser(
        "fit-anonymizers", help="fit GIA and KAA on synthetic faces from the mapping network",
        description="Sample latents from the generator's mapping network (never encoded "
                    "photos), cluster the identity key features into the bundle's m groups, "
                    "label each attribute keyword's sub-categories with CLIP zero-shot on "
                    "G(s), and store centres, members and sub-category means in the bundle. "
                    "Prints group sizes and label balance; writes fitting.json beside it.")
    p.add_argument("bundle", help="bundle folder (rewritten in place unless --out) or Hub id")
    p.add_argument("--out", help="write the fitted bundle here instead")
    p.add_argument("--revision", help="Hub revision of the bundle")
    p.add_argument("--backbone", help="local e4e / rosinality checkpoint (default: the "
                                      "bundle's configured Hub file; LREORG_BACKBONE_PATH)")
    p.add_argument("--samples", type=int, default=10_000, help="sampled faces (default "
                                                                "%(default)s)")
    p.add_argument("--keywords", help="comma-separated keywords to fit (default: all)")
    p.add_argument("--iterations", type=int, default=50, help="k-means iterations")
    p.add_argument("--batch-size", type=int, default=16, help="faces rendered at once")
    p.add_argument("--output-size", type=int, help="render CLIP's faces at this generator "
                                                   "block (faster, coarser)")
    p.add_argument("--clip-model", help="open_clip model (default: the bundle's)")
    p.add_argument("--clip-pretrained", help="open_clip tag or file; 'none' = random weights "
                                             "(tests only)")
    p.add_argument("--clip-config", help="JSON file of open_clip model_cfg overrides")
    p.add_argument("--seed", type=int, help="seed (default: OS entropy, not recorded)")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda:0…")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_fit_anonymizers)

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
    p.add_argument("--style-mix", help="fitted style-mix groups (folder from `lreorg "
                                       "fit-style-mix`) to evaluate the training-free baseline")
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

    p = sub.add_parser(
        "demo-bundle", help="write a small random-weight bundle + backbone to try every "
                            "command offline",
        description="Write DIR/bundle (an LReOrg bundle: config.json, model.safetensors, card) "
                    "and DIR/backbone.pt (a 128 px StyleGAN2 + e4e checkpoint in the public "
                    "e4e layout), all with random weights built by the real classes. No trained "
                    "bundle is published yet; this lets you run info and anonymize offline. "
                    "Outputs are random textures, not faces.")
    p.add_argument("directory", metavar="DIR", help="folder to write into (created)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--force", action="store_true", help="overwrite an existing demo in DIR")
    p.set_defaults(func=_cmd_demo_bundle)

    p = sub.add_parser(
        "fit-style-mix", help="fit the training-free style-mix groups on a backbone's generator",
        description="k-means groups of mapping-network samples (synthetic identities only) for "
                    "--method style-mix; writes style_mix_config.json + style_mix.safetensors.")
    p.add_argument("out", help="output folder")
    p.add_argument("--backbone", help="e4e / rosinality checkpoint (default: "
                                      "LREORG_BACKBONE_PATH, else the default Hub file)")
    p.add_argument("--groups", type=int, default=64, help="number of groups m")
    p.add_argument("--members", type=int, default=1024, help="member bank size")
    p.add_argument("--samples", type=int, default=10_000, help="mapping-network samples")
    p.add_argument("--rows", type=_window, metavar="R0,R1", help="default rows [R0, R1)")
    p.add_argument("--truncation", type=float, default=1.0, help="ψ of the samples (1 = none)")
    p.add_argument("--seed", type=int, help="seed of the fit (default: OS entropy)")
    p.set_defaults(func=_cmd_fit_style_mix)

    p = sub.add_parser("bench", help="run a benchmark (prints a table, writes JSON)")
    p.add_argument("target", choices=["backbones", "pipeline", "training", "dataset"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    p.set_defaults(func=_cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (one line, status 2), --help and --version (0)
        return e.code if isinstance(e.code, int) else 2
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as e:
        print(f"lreorg: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lreorg: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # never a traceback for the user: one line naming what failed
        print(f"lreorg: error: {type(e).__name__}: {_one_line(e)}", file=sys.stderr)
        return 2


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
