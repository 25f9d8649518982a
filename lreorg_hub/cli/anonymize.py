"""`lreorg anonymize`: photos and folders in, protected photos and records out."""

from __future__ import annotations

import argparse
import json
import sys

from ..method import keywords as kw
from .args import _int_list, _number, _window
from ..pipeline.registry import MAX_SAMPLES, METHODS
from .inputs import _collect_inputs, _describe_failure, _prepare_out, _write_outputs


def _anonymize_options(args: argparse.Namespace):
    from ..pipeline.options import ProtectOptions

    return ProtectOptions(anonymize=args.anonymize, recover=args.recover, epsilon=args.epsilon,
                          rank_window=args.rank_window, mechanism=args.mechanism,
                          seed=args.seed, samples=args.samples, strength=args.strength,
                          style_rows=args.style_rows)


def _check_anonymize_args(args: argparse.Namespace):
    """Every argument, before anything is loaded or any photo is read (exit status 2)."""
    from ..pipeline.options import check_faces, check_output_size
    from ..pipeline.devices import check_device
    from ..pipeline.photos import _check_settings

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

    from ..pipeline import LReOrgPipeline

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



def register(sub) -> None:
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
    p.add_argument("--method", default="lreorg", choices=list(METHODS),
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
