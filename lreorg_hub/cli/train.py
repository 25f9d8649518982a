"""`lreorg train`: keyword-based swap training of CDFNet (SPEC §5)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from .args import add_device_argument, add_seed_argument


def _config(args: argparse.Namespace):
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
    return TrainingConfig.from_file(config_file, overrides)


def _forwarded(args: argparse.Namespace) -> list[str]:
    """This command's arguments, less --num-processes (what every process runs)."""
    argv = ["train"]
    for name in ("config", "resume", "steps", "out", "device", "seed", "pilot"):
        if getattr(args, name) is not None:
            argv += [f"--{name}", str(getattr(args, name))]
    for item in args.set:
        argv += ["--set", item]
    argv += ["--quiet"] if args.quiet else []
    return argv


def _launch(args: argparse.Namespace) -> int:
    """Re-run this command in --num-processes processes (torch.distributed.run)."""
    from ..training.distributed import launch_command

    command = launch_command(args.num_processes, _forwarded(args))
    print("launching: " + " ".join(command), file=sys.stderr)
    proc = subprocess.Popen(command, env=dict(os.environ))
    while True:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # the workers got Ctrl-C too: they checkpoint and stop
            continue


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training.build import build_trainer
    from ..training.swap import TrainingInterrupted

    config = _config(args)
    if args.print_config:
        print(json.dumps(config.to_dict(), indent=2))
        return 0
    if args.num_processes is not None and args.num_processes > 1 and \
            int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return _launch(args)
    if args.pilot is not None:
        return _pilot(config, args.pilot)
    trainer = build_trainer(config, resume=args.resume)
    try:
        trainer.fit()
    except TrainingInterrupted as stop:
        if trainer.parallel.is_main:
            print(f"lreorg train: {stop}", file=sys.stderr)
        return stop.exit_code
    bundle = trainer.save_bundle()
    if trainer.parallel.is_main:
        summary = {"bundle": str(bundle), "steps": trainer.step,
                   "roundtrip_error": trainer.last_roundtrip,
                   "log": str(Path(config.out) / "log.csv"),
                   "num_processes": trainer.parallel.num_processes}
        print(json.dumps(summary, indent=2))
    return 0


def _pilot(config, steps: int) -> int:
    from ..training.build import build_trainer
    from ..training.pilot import run_pilot

    trainer = build_trainer(config)
    report = run_pilot(trainer, steps)
    if trainer.parallel.is_main:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "pilot.json").write_text(json.dumps(report.to_dict(), indent=2))
        print(report.table())
        print(f"\nwrote {out / 'pilot.json'}", file=sys.stderr)
    return 0


def register(sub) -> None:
    from ..training.config import describe_keys

    p = sub.add_parser(
        "train", help="keyword-based swap training of CDFNet (SPEC §5)",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train a bundle's CDFNet by keyword-based swapping on latents from the "
                    "generator's mapping network. Writes OUT/log.csv, OUT/checkpoints/step-N/ "
                    "(safetensors + JSON, the effective configuration included) and, at the "
                    "end, OUT/bundle/ with training.json. Ctrl-C or SIGTERM writes a "
                    "checkpoint and prints the resume command. See docs/TRAINING.md.",
        epilog="configuration keys (--config file, --set KEY=VALUE) and their defaults:\n"
               + describe_keys())
    p.add_argument("--config", help="training configuration (.json or .toml; default: the "
                                    "defaults, or the resumed run's own configuration)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override one option (JSON value; a.b=... for nested), repeatable; "
                        "keys below")
    p.add_argument("--resume", metavar="RUN_OR_CHECKPOINT",
                   help="continue bit-for-bit from a checkpoint folder or a run's newest one")
    p.add_argument("--steps", type=int, help="total steps to reach (shorthand for --set)")
    p.add_argument("--out", help="run folder (shorthand for --set out=...)")
    add_device_argument(p, default=None)
    add_seed_argument(p, "every draw of the run")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--print-config", action="store_true",
                   help="print the effective configuration (every key) as JSON and exit")
    p.add_argument("--pilot", type=int, metavar="N",
                   help="run N steps of a fresh run and print each loss term's share of "
                        "the objective, its trend and the round-trip error (no checkpoints)")
    p.add_argument("--num-processes", type=int, metavar="N",
                   help="data-parallel on N processes of this machine (one per GPU; gloo on "
                        "CPUs), through torch.distributed.run + accelerate")
    p.set_defaults(func=_cmd_train)
