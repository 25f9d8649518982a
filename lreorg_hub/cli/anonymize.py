"""`lreorg anonymize`: photos, videos and folders in, protected photos / clips and records
out."""

from __future__ import annotations

import argparse
import json
import sys

from .args import (LIMITS_NOTE, add_protect_arguments, add_runtime_arguments,
                   add_weight_arguments, build_pipeline, check_weight_arguments,
                   protect_options)
from .inputs import NAMING_RULE, check_out, collect_inputs, describe_failure, write_outputs
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
    _check_settings(0.1, 4, 1, args.min_face_size, args.max_faces)
    check_device(args.device)
    video_options(args)
    return options


def _cmd_anonymize(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from ..dataset.outdir import OutDir, refuse_overlap
    from ..dataset.privatelog import PrivateLog
    from ..image.names import shown
    from ..image.video import is_video

    options = _check_arguments(args)
    out = check_out(args.out)
    inputs, failures = collect_inputs(args.inputs, out)
    # Originals are never written to: --out may not be an input or hold one (a folder, a
    # photo, or a link to one); it may lie inside a folder given (that folder's walk skips it).
    refuse_overlap(out, [*args.inputs, *(file for file, _ in inputs)], out_inside_inputs=False)
    log = PrivateLog(args.private_log, out, inputs=args.inputs) if args.private_log else None
    if not inputs:
        for file, error in failures:
            print(f"lreorg: skipped {shown(file)}: {error}", file=sys.stderr)
        raise ValueError("no input images found" + (
            f" ({len(failures)} path(s) could not be read)" if failures else ""))
    pipe = build_pipeline(args)
    # Against what was loaded (rank window ≤ m, bundle keywords, fitted anonymizers), still
    # before the first photo; only then is --out created and locked.
    options = pipe.check(options)
    check_video_inputs(pipe, options, inputs)
    video, done = video_options(args), []
    with OutDir(out) as folder:
        folder.lock()
        folder.remove_stale_temporaries()   # what a killed run (SIGKILL, power cut) left
        for file, stem in tqdm(inputs, desc="anonymizing", unit="input", disable=args.quiet):
            try:
                if is_video(file):
                    entry, result = anonymize_clip(pipe, file, stem, folder, options, video,
                                                   args.quiet)
                else:
                    result = pipe(file, options, anonymized_crops=args.save_crops)
                    entry = {"input": str(file),
                             "output": write_outputs(result, stem, folder, args.save_crops)}
            except Exception as e:  # one input never ends the run: record it and go on
                failures.append((str(file), describe_failure(e)))
                continue
            done.append(entry)
            if log is not None:
                log.write([{"input": str(file), "output": entry["output"],
                            "status": "anonymized", "diagnostics": result.diagnostics}])
        if log is not None:
            log.write([{"input": f, "status": "failed", "error": e} for f, e in failures])
            log.close()
        summary = {"method": options.method, "naming": NAMING_RULE, "processed": done,
                   "failed": [{"input": f, "error": e} for f, e in failures]}
        folder.write("summary.json", json.dumps(summary, indent=2).encode())
    for file, error in failures:
        print(f"lreorg: skipped {shown(file)}: {error}", file=sys.stderr)
    if not args.quiet:
        clips = sum(1 for d in done if "frames" in d)
        print(f"{len(done) - clips} photo(s)" + (f" and {clips} video(s)" if clips else "") +
              f" anonymized into {shown(out)}, {len(failures)} failed", file=sys.stderr)
    return 1 if failures else 0


def register(sub) -> None:
    p = sub.add_parser(
        "anonymize", help="anonymize the faces in photos and videos (files and folders)",
        description="Anonymize every face in the given photos and folders. Writes OUT/NAME.png "
                    "(the photo with faces replaced, no metadata), OUT/NAME.json (the public "
                    "privacy record: no input path, no detector box or score) and "
                    "OUT/summary.json (every input and its output). Every argument is checked "
                    "before any photo is read (exit status 2 on a bad one). Photos that fail "
                    "(unreadable, no face, anything else) are skipped and listed in the "
                    "summary; the run goes on and the exit status is 1 if any failed. "
                    "Originals are never written to: an input inside --out, or --out equal to "
                    "an input, is refused; links inside --out are never followed; a second "
                    "run on the same --out at the same time is refused. Videos (mp4, mov, m4v, "
                    "mkv, webm, avi) give OUT/NAME.mp4 (same frames, timing, rotation and "
                    "audio, one identity draw per tracked face) and OUT/NAME.json, under the "
                    "same rules. " + LIMITS_NOTE)
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, or "
                                                               "folders")
    p.add_argument("--out", required=True, help="output folder (not an input, and holding "
                                                "none)")
    add_weight_arguments(p)
    add_protect_arguments(p, method_default="lreorg")
    add_runtime_arguments(p)
    p.add_argument("--save-crops", action="store_true",
                   help="also save each face's aligned input, anonymized crop and samples "
                        "(photos only)")
    p.add_argument("--private-log", metavar="FILE",
                   help="also write, to FILE outside --out (owner-only, appended to), one "
                        "JSON line per input with what the public records leave out: its "
                        "path, every face's box and detector score, the diagnostics. Never "
                        "publish it")
    add_video_arguments(p)
    p.set_defaults(func=_cmd_anonymize)
