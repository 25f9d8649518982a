"""Swap-training cost: seconds per step and peak memory, full-size configuration.

Random weights everywhere (the cost of a step does not depend on their values): the 1024 px
StyleGAN2, facenet's InceptionResnetV1 at 160 px, open_clip ViT-B-32, and the default CDFNet
(18 × 512, 4 blocks). Each row runs in its own process, so its peak memory is its own (CPU:
peak RSS; CUDA: torch.cuda.max_memory_allocated). The reference in the same run is the
default step (1024 px image resized to 256) against which the other rows are compared.

    python benchmarks/bench_training.py --batch-size 1 --steps 2      # CPU
    python benchmarks/bench_training.py --device cuda --batch-size 4  # GPU

The last column is the expected time of ``--schedule-steps`` steps (default: the configured
schedule) at the measured seconds per step. ``--batch-size`` is the pairs *per process*: the
one-GPU schedule is the ``--batch-size 4`` row; a data-parallel run on P GPUs with
``batch_size = P·b`` costs about the ``--batch-size b`` row per step (plus one all-reduce of
CDFNet's gradients, 84 MB, per step).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

ROWS = {
    "IOS 1024→256 (default)": dict(keyword="identity"),
    "AOS 1024→256": dict(keyword="gender"),
    "IOS early 256 px": dict(keyword="identity", generator_output_size=256),
    "IOS 1024→256 + checkpointing": dict(keyword="identity", gradient_checkpointing=True),
    "IOS 1024→256 + bf16": dict(keyword="identity", mixed_precision="bf16"),
    "IOS 1024→256 + fp16": dict(keyword="identity", mixed_precision="fp16"),
}
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = "IOS 1024→256 (default)"
TINY_CLIP = dict(embed_dim=32,
                 vision_cfg=dict(image_size=32, layers=2, width=64, patch_size=8, head_width=32),
                 text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2))


def build(tiny: bool, device: torch.device, options: dict, batch_size: int):
    from lreorg_hub.backbones import StyleGAN2Generator
    from lreorg_hub.scorers import IdentityEncoder, KeywordEncoder
    from lreorg_hub.bundle import LReOrg
    from lreorg_hub.training.build import seeded_init
    from lreorg_hub.training.config import TrainingConfig
    from lreorg_hub.training.swap import SwapTrainer

    if tiny:
        generator = StyleGAN2Generator(size=64, style_dim=32, n_mlp=2, channel_base=512,
                                       channel_max=32)
        identity = seeded_init(IdentityEncoder, pretrained=None, image_size=80)
        clip = seeded_init(KeywordEncoder, pretrained=None, model_cfg=TINY_CLIP)
        cdfnet = dict(latent_dim=32, num_rows=generator.n_latent, cond_dim=32, num_blocks=2,
                      hidden_dim=32, dense_growth=8, dense_layers=2)
        image_size = 64
        options = {k: (32 if k == "generator_output_size" else v) for k, v in options.items()}
    else:
        generator = StyleGAN2Generator()
        identity = seeded_init(IdentityEncoder, pretrained=None)
        clip = seeded_init(KeywordEncoder, pretrained=None)
        cdfnet, image_size = {}, 256
    model = LReOrg(cdfnet=cdfnet, keywords=["identity", "gender"], num_groups=4,
                   num_members=16)
    with torch.no_grad():
        model.set_keyword_embeddings(clip.keyword_embeddings(model.keywords))
    keyword = options.pop("keyword")
    config = TrainingConfig(batch_size=batch_size, image_size=image_size, keywords=[keyword],
                            seed=0, progress=False, device=str(device), out="unused",
                            **options)
    return SwapTrainer(model, generator, identity, clip, config, reset_cdfnet=True)


def peak_memory_mib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_row(name: str, args) -> dict:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    trainer = build(args.tiny, device, dict(ROWS[name]), args.batch_size)
    trainer.train_step()  # warm-up: allocator, oneDNN / cuDNN kernel choice
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    times = []
    for _ in range(args.steps):
        tic = time.perf_counter()
        trainer.train_step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - tic)
    return {"device": str(device), "seconds_per_step": sorted(times)[len(times) // 2],
            "all_seconds": times, "peak_memory_mib": peak_memory_mib(device),
            "memory_kind": "CUDA max allocated" if device.type == "cuda" else "process peak RSS"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lreorg bench training",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=4, help="latent pairs per step")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per row (median)")
    parser.add_argument("--rows", default=",".join(ROWS),
                        help="comma-separated rows (default: all)")
    parser.add_argument("--tiny", action="store_true", help="small configuration (smoke test)")
    parser.add_argument("--schedule-steps", type=int, default=None,
                        help="steps of the schedule to estimate (default: TrainingConfig's)")
    parser.add_argument("--out", default="benchmarks/results/training.json")
    parser.add_argument("--row", help=argparse.SUPPRESS)  # internal: run one row, print JSON
    args = parser.parse_args(argv)

    if args.row:
        print(json.dumps(run_row(args.row, args)))
        return 0
    names = [n.strip() for n in args.rows.split(",") if n.strip()]
    unknown = [n for n in names if n not in ROWS]
    if unknown:
        raise SystemExit(f"unknown row(s) {unknown}; rows: {list(ROWS)}")
    rows = {}
    for name in names:
        cmd = [sys.executable, __file__, "--row", name, "--device", args.device,
               "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
        if args.tiny:
            cmd.append("--tiny")
        env = dict(os.environ)  # the child imports this checkout's lreorg_hub
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.strip().splitlines()
                     if not ln.startswith("WARNING")]  # open_clip's random-weights notice
            rows[name] = {"error": lines[-1:] or [f"exit status {done.returncode}"]}
            continue
        rows[name] = json.loads(done.stdout.strip().splitlines()[-1])
    from lreorg_hub.training.config import TrainingConfig

    schedule = args.schedule_steps or TrainingConfig().steps
    for row in rows.values():
        if "error" not in row:
            row["schedule_hours"] = schedule * row["seconds_per_step"] / 3600
    ref = rows.get(REFERENCE, {}).get("seconds_per_step")
    what = "tiny" if args.tiny else "full-size (1024 px G, facenet 160, ViT-B-32, CDFNet 18x512)"
    print(f"\nswap training, {what}, batch {args.batch_size} pairs, median of {args.steps} "
          f"steps, random weights, {torch.get_num_threads()} threads")
    print(f"{'row':<32}{'device':>8}{'s/step':>10}{'vs default':>12}{'peak MiB':>11}"
          f"{f'h / {schedule} steps':>18}")
    for name, row in rows.items():
        if "error" in row:
            print(f"{name:<32}  failed: {' '.join(row['error'])}")
            continue
        ratio = row["seconds_per_step"] / ref if ref else float("nan")
        print(f"{name:<32}{row['device']:>8}{row['seconds_per_step']:>10.2f}{ratio:>11.2f}x"
              f"{row['peak_memory_mib']:>11.0f}{row['schedule_hours']:>18.1f}")
    report = {"benchmark": "training", "tiny": args.tiny, "batch_size": args.batch_size,
              "steps": args.steps, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "python": platform.python_version(),
              "processor": platform.processor() or platform.machine(), "reference": REFERENCE,
              "schedule_steps": schedule,
              "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
