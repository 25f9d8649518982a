"""`lreorg bench`: run a benchmark script from the checkout."""

from __future__ import annotations

import argparse
from pathlib import Path


def _cmd_bench(args: argparse.Namespace) -> int:
    import runpy

    script = Path(__file__).resolve().parents[2] / "benchmarks" / f"bench_{args.target}.py"
    if not script.is_file():
        raise FileNotFoundError(f"{script} not found: benchmarks run from a source checkout")
    module = runpy.run_path(str(script))
    return module["main"](args.rest) or 0


def register(sub) -> None:
    p = sub.add_parser("bench", help="run a benchmark (prints a table, writes JSON)")
    p.add_argument("target", choices=["backbones", "pipeline", "training", "dataset", "video"])
    p.add_argument("rest", nargs=argparse.REMAINDER, help="arguments for the benchmark")
    p.set_defaults(func=_cmd_bench)
