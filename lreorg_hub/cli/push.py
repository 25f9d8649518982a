"""`lreorg push`: publish a bundle with its model card."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_push(args: argparse.Namespace) -> int:
    from ..bundle import publish as hub

    if args.dry_run and not args.out:
        raise ValueError("--dry-run needs --out DIR: the folder that would be uploaded")
    if args.out and not args.dry_run:
        raise ValueError("--out is only used with --dry-run")
    if not Path(args.bundle).is_dir():
        raise FileNotFoundError(f"{args.bundle} is not a bundle folder (config.json + "
                                f"model.safetensors)")
    try:
        return _push(args, hub)
    except hub.PublishRefused as refused:  # one line per reason, not squeezed into one
        print(f"lreorg push: refusing to publish {args.bundle}:", file=sys.stderr)
        for problem in refused.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2


def _push(args: argparse.Namespace, hub) -> int:
    if args.dry_run:
        folder = hub.build_upload_folder(args.bundle, args.out, repo_id=args.repo_id,
                                         eval_results=args.eval,
                                         backbone_revision=args.backbone_revision,
                                         backbone_file=args.backbone)
        print(f"dry run: {folder} holds what `lreorg push` would upload to {args.repo_id}:")
        for path in sorted(folder.iterdir()):
            print(f"  {path.name}  ({path.stat().st_size} bytes)")
        return 0
    url = hub.push(args.bundle, args.repo_id, eval_results=args.eval,
                   backbone_revision=args.backbone_revision, backbone_file=args.backbone,
                   private=args.private,
                   token=args.token, commit_message=args.message)
    print(url)
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "push", help="publish a bundle on the Hugging Face Hub with its model card",
        description="Render the model card (licence, tags, backbone with its pinned revision, "
                    "intended use, limitations, privacy guarantee and assumptions, evaluation "
                    "table from --eval, CDFNet round-trip error from BUNDLE/training.json, "
                    "citation) and upload config.json, model.safetensors and README.md to "
                    "REPO_ID. --dry-run --out DIR writes exactly that folder instead. Refuses, "
                    "one line per reason: random or unrecorded scorer weights, a backbone "
                    "that differs from the one training read, results of another bundle, an "
                    "unpinned backbone revision.")
    p.add_argument("bundle", metavar="BUNDLE", help="local bundle folder")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub model repo, namespace/name")
    p.add_argument("--eval", metavar="RESULTS_JSON", help="lreorg eval's results.json for the "
                                                          "card's evaluation table")
    p.add_argument("--backbone-revision", metavar="COMMIT",
                   help="pin the backbone checkpoint repo to this commit (required unless the "
                        "bundle already records one)")
    p.add_argument("--backbone", metavar="FILE",
                   help="a local copy of the backbone file the card names, to check its "
                        "sha256 against the one training recorded (default: the Hub's LFS "
                        "record, then the Hugging Face cache)")
    p.add_argument("--private", action="store_true", help="create the repo as private")
    p.add_argument("--token", help="Hub token (default: the logged-in one / HF_TOKEN)")
    p.add_argument("--message", default="Upload LReOrg bundle", help="commit message")
    p.add_argument("--dry-run", action="store_true", help="write the upload folder, push nothing")
    p.add_argument("--out", help="with --dry-run: the folder to write")
    p.set_defaults(func=_cmd_push)
