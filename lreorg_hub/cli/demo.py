"""`lreorg demo-bundle`: random-weight demo weights to try every command offline."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_demo_bundle(args: argparse.Namespace) -> int:
    from ..demo import write_demo

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


def register(sub) -> None:
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
