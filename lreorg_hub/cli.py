"""The `lreorg` command line.

Sub-commands import what they need lazily so that `lreorg --help` and `lreorg keywords` start
fast and work without torch being loaded.
"""

from __future__ import annotations

import argparse
import json
import sys

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
