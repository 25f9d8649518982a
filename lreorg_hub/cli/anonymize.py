"""`lreorg anonymize`: photos and folders in, protected photos and records out."""

from __future__ import annotations

import argparse
import json
import sys

from .args import (add_protect_arguments, add_runtime_arguments, add_weight_arguments,
                   build_pipeline, check_weight_arguments, protect_options)
from .inputs import collect_inputs, describe_failure, prepare_out, write_outputs
from .video import add_video_arguments, anonymize_clip, check_video_inputs, video_options


def _check_arguments(args: argparse.Namespace):
    """Every argument, before anything is loaded or any photo is read (exit status 2)."""
    from ..pipeline.devices import check_device
    from ..pipeline.options import check_output_size
    from ..pipeline.photos import _check_settings

    options = protect_options(args)
    options.validate()  # the registry's limits; the loaded weights' come later
    check_weight_arguments(args, args.method)
    check_output_size(args.output_size)
    _check_settings(0.1, 4, 1, args.min_face_size)
    check_device(args.device)
    video_options(args)
    return options


def _cmd_anonymize(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..image.video import is_video

    options = _check_arguments(args)
    out_dir = prepare_out(args.out)
    inputs, failures = collect_inputs(args.inputs, out_dir)
    if not inputs:
        for file, error in failures:
            print(f"lreorg: skipped {file}: {error}", file=sys.stderr)
        raise ValueError("no input images found" + (
            f" ({len(failures)} path(s) could not be read)" if failures else ""))
    pipe = build_pipeline(args)
    # Against what was loaded (rank window ≤ m, keywords in the bundle, fitted anonymizers),
    # still before the first photo.
    options = pipe.check(options)
    check_video_inputs(pipe, options, inputs)
    video, done = video_options(args), []
    for file, stem in tqdm(inputs, desc="anonymizing", unit="photo", disable=args.quiet):
        try:
            if is_video(file):
                done.append(anonymize_clip(pipe, file, stem, out_dir, options, video,
                                           args.quiet))
                continue
            result = pipe(file, options, anonymized_crops=args.save_crops)
            write_outputs(result, stem, out_dir, args.save_crops)
        except Exception as e:  # one photo never ends the run: record it and go on
            failures.append((str(file), describe_failure(e)))
            continue
        done.append({"input": str(file), "output": str(stem.with_suffix(".png"))})
    summary = {"method": options.method, "processed": done,
               "failed": [{"input": f, "error": e} for f, e in failures]}
    try:
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    except OSError as e:
        raise ValueError(f"could not write {out_dir / 'summary.json'}: "
                         f"{e.strerror or e}") from None
    for file, error in failures:
        print(f"lreorg: skipped {file}: {error}", file=sys.stderr)
    if not args.quiet:
        clips = sum(1 for d in done if "frames" in d)
        print(f"{len(done) - clips} photo(s)" + (f" and {clips} video(s)" if clips else "") +
              f" anonymized into {out_dir}, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0


def register(sub) -> None:
    p = sub.add_parser(
        "anonymize", help="anonymize the faces in photos and videos (files and folders)",
        description="Anonymize every face in the given photos and folders. Writes OUT/NAME.png "
                    "(the photo with faces replaced, no metadata), OUT/NAME.json (the public "
                    "privacy record) and OUT/summary.json. Every argument is checked before "
                    "any photo is read (exit status 2 on a bad one). Photos that fail (unreadable, "
                    "no face, anything else) are skipped and listed in the summary; the run goes "
                    "on and the exit status is 1 if any failed. Videos (mp4, mov, m4v, mkv, "
                    "webm, avi) give OUT/NAME.mp4 (same frames, timing, rotation and audio, one "
                    "identity draw per tracked face) and OUT/NAME.json.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, or "
                                                               "folders")
    p.add_argument("--out", required=True, help="output folder")
    add_weight_arguments(p)
    add_protect_arguments(p, method_default="lreorg")
    add_runtime_arguments(p)
    p.add_argument("--save-crops", action="store_true",
                   help="also save each face's aligned input, anonymized crop and samples "
                        "(photos only)")
    add_video_arguments(p)
    p.set_defaults(func=_cmd_anonymize)
