"""`lreorg info`: a bundle's configuration and fitted state."""

from __future__ import annotations

import argparse
import json

from ..method import keywords as kw


def _cmd_info(args: argparse.Namespace) -> int:
    from ..bundle import LReOrg

    model = LReOrg.from_pretrained(args.bundle, revision=args.revision)
    info = {"config": model.get_config(),
            "fitted": {"identity": bool(model.identity_anonymizer.fitted),
                       **{n: bool(model.attribute_anonymizer(n).fitted)
                          for n in model.keywords if n != kw.IDENTITY}},
            "parameters": sum(p.numel() for p in model.parameters())}
    print(json.dumps(info, indent=2))
    return 0


def register(sub) -> None:
    p = sub.add_parser("info", help="show a bundle's configuration and fitted state")
    p.add_argument("bundle", help="local bundle folder or Hub repo id")
    p.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    p.set_defaults(func=_cmd_info)
