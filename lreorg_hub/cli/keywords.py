"""`lreorg keywords`: the keyword registry (paper Table 1)."""

from __future__ import annotations

import argparse
import json

from ..method import keywords as kw


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


def register(sub) -> None:
    p = sub.add_parser("keywords", help="list the keywords and their sub-categories")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=_cmd_keywords)
