"""`lreorg train`: keyword-based swap training of CDFNet (SPEC §5)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path



def _cmd_train(args: argparse.Namespace) -> int:
    from ..training.build import build_trainer
    from ..training.config import TrainingConfig
    from ..training.swap import latest_checkpoint

    overrides = list(args.set)
    for name in ("steps", "out", "device", "seed"):
        if getattr(args, name) is not None:
            overrides.append(f"{name}={json.dumps(getattr(args, name))}")
    if args.quiet:
        overrides.append("progress=false")
    config_file = args.config
    if args.resume and config_file is None:  # continue with the run's own configuration
        config_file = latest_checkpoint(args.resume) / "config.json"
    config = TrainingConfig.from_file(config_file, overrides)
    trainer = build_trainer(config, resume=args.resume)
    trainer.fit()
    bundle = trainer.save_bundle()
    summary = {"bundle": str(bundle), "steps": trainer.step,
               "roundtrip_error": trainer.last_roundtrip, "log": str(Path(config.out) / "log.csv")}
    print(json.dumps(summary, indent=2))
    return 0



def register(sub) -> None:
    p = sub.add_parser(
        "train", help="keyword-based swap training of CDFNet (SPEC §5)",
        description="Train a bundle's CDFNet by keyword-based swapping on latents from the "
                    "generator's mapping network. Writes OUT/log.csv, OUT/checkpoints/step-N/ "
                    "(safetensors + JSON, the effective configuration included) and, at the "
                    "end, OUT/bundle/ with training.json. See docs/TRAINING.md.")
    p.add_argument("--config", help="training configuration (.json or .toml; default: the "
                                    "defaults, or the resumed run's own configuration)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option (JSON value; a.b=... for nested), repeatable")
    p.add_argument("--resume", metavar="RUN_OR_CHECKPOINT",
                   help="continue bit-for-bit from a checkpoint folder or a run's newest one")
    p.add_argument("--steps", type=int, help="total steps to reach (shorthand for --set)")
    p.add_argument("--out", help="run folder (shorthand for --set out=...)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1…")
    p.add_argument("--seed", type=int, help="seed of every draw (default: OS entropy, "
                                            "not recorded)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_train)
