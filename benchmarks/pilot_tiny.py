"""The loss terms' shares before and after a pilot, on the tiny test configuration.

The tiny 64 px StyleGAN2, a random facenet whose BatchNorm statistics are estimated on that
generator's images, a two-layer CLIP (tests/training_setup.py), the paper's weights
(λ = 24, 1.2, 3, 10; α = 0.2, 30, 3, 10), lr 3e-3 (the paper's 1e-5 needs ~10⁵ steps), and
each combination of ``loss_reduction`` (sum: the old literal reading; mean: the default) and
``latents`` (w; w+). Prints ``lreorg train --pilot``'s table for each and writes the reports
as JSON. On real weights run ``lreorg train --config … --pilot N`` instead.

    python benchmarks/pilot_tiny.py --steps 24
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

RUNS = (("sum", "w", ["identity"]), ("mean", "w", ["identity"]),
        ("sum", "w", ["identity", "gender"]), ("mean", "w", ["identity", "gender"]),
        ("mean", "w+", ["identity", "gender"]))


def main(argv: list[str] | None = None) -> int:
    from training_setup import build_training_parts

    from lreorg_hub.training.config import TrainingConfig
    from lreorg_hub.training.pilot import run_pilot
    from lreorg_hub.training.swap import SwapTrainer

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--out", default="benchmarks/results/pilot_tiny.json")
    args = parser.parse_args(argv)
    model, backbone, facenet, clip = build_training_parts()
    reports = []
    for reduction, latents, keywords in RUNS:
        fresh = type(model)(**model.get_config())
        fresh.set_keyword_embeddings(model.keyword_embeddings)
        config = TrainingConfig(batch_size=2, image_size=64, seed=0, out="unused", lr=3e-3,
                                progress=False, device="cpu", keywords=keywords,
                                init_output_std=1e-2, loss_reduction=reduction,
                                latents=latents)
        trainer = SwapTrainer(fresh, backbone.generator, facenet, clip, config,
                              reset_cdfnet=True)
        report = run_pilot(trainer, args.steps)
        print(f"=== keywords {', '.join(keywords)}\n{report.table()}\n", flush=True)
        reports.append(report.to_dict())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"steps": args.steps, "torch": torch.__version__,
                               "reports": reports}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
