"""Per-stage cost of the photo pipeline: detect, align, encode, reorganize, generate, paste.

Full-size architectures with random weights (cost does not depend on the values): the 1024 px
StyleGAN2 generator, the e4e IR-SE50 encoder and the default CDFNet (21 M parameters) with GIA
fitted on mapping-network samples. One photo with one face (scikit-image's astronaut) and one
with four faces (the same photo tiled 2 × 2). Prints a table and writes JSON.

    python benchmarks/bench_pipeline.py               # or: lreorg bench pipeline
    python benchmarks/bench_pipeline.py --output-size 256 --repeats 3
    python benchmarks/bench_pipeline.py --tiny         # small configuration, seconds (smoke test)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lreorg_hub.backbones import E4EEncoder, StyleGAN2Generator
from lreorg_hub.bundle import LReOrg
from lreorg_hub.training.fitting import fit_identity_anonymizer
from lreorg_hub.pipeline import LReOrgPipeline
from lreorg_hub.pipeline.devices import auto_device

STAGES = ("detect", "align", "encode", "reorganize", "generate", "paste")


def photos() -> dict[str, Image.Image]:
    from skimage import data

    one = data.astronaut()
    four = np.concatenate([np.concatenate([one, one], 1)] * 2, 0)
    return {"1 face": Image.fromarray(one), "4 faces": Image.fromarray(four)}


def build(tiny: bool, device: torch.device, output_size: int | None) -> LReOrgPipeline:
    gen = torch.Generator().manual_seed(0)
    if tiny:
        generator = StyleGAN2Generator(size=64, style_dim=32, n_mlp=2, channel_base=512,
                                       channel_max=32)
        encoder = E4EEncoder(n_styles=generator.n_latent, units=(1, 1, 1, 1), base_width=4,
                             style_dim=32, input_size=64)
        cdfnet = dict(latent_dim=32, num_rows=generator.n_latent, cond_dim=16, num_blocks=2,
                      hidden_dim=32, dense_growth=8, dense_layers=2)
        groups, members = 8, 64
    else:
        generator, encoder, cdfnet = StyleGAN2Generator(), E4EEncoder(), {}
        groups, members = 64, 1024
    model = LReOrg.with_random_weights(gen, cdfnet=cdfnet, num_groups=groups,
                                       num_members=members)
    with torch.no_grad():
        w = generator.sample_w(members, generator=gen)
        codes = w.unsqueeze(1).expand(-1, generator.n_latent, -1)
        fit_identity_anonymizer(model, codes, generator=gen, iterations=10)
        latent_avg = generator.mean_latent(1000, generator=gen)
    return LReOrgPipeline(model, encoder, generator, latent_avg.reshape(1, -1), device=device,
                          output_size=output_size)


def peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lreorg bench pipeline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--output-size", type=int, default=None,
                        help="generator resolution to stop at (default: full 1024)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--anonymized-crops", action=argparse.BooleanOptionalAction,
                        default=True, help="also generate G(s^M) per face (the app shows it; "
                                           "the CLI only with --save-crops)")
    parser.add_argument("--tiny", action="store_true", help="small configuration (smoke test)")
    parser.add_argument("--out", default="benchmarks/results/pipeline.json")
    args = parser.parse_args(argv)

    device = auto_device() if args.device == "auto" else torch.device(args.device)
    t0 = time.perf_counter()
    pipe = build(args.tiny, device, args.output_size)
    build_s = time.perf_counter() - t0
    rows = {}
    for name, photo in photos().items():
        def run():
            return pipe(photo, seed=0, samples=args.samples,
                        anonymized_crops=args.anonymized_crops)

        run()  # warm-up (allocator, oneDNN kernels)
        runs = [run() for _ in range(args.repeats)]
        stages = {s: statistics.median(r.timings.get(s, 0.0) for r in runs) for s in STAGES}
        method = stages["reorganize"]
        backbone = stages["encode"] + stages["generate"]
        rows[name] = {"faces": len(runs[0].faces), "median_s": stages,
                      "total_s": sum(stages.values()),
                      "method_over_backbone": method / backbone if backbone else None}

    print(f"\npipeline stages, median of {args.repeats} (device {device}, "
          f"{'tiny' if args.tiny else 'full-size'}, output {args.output_size or 'full'} px, "
          f"samples {args.samples}, anonymized crops {args.anonymized_crops}, "
          f"{torch.get_num_threads()} threads)")
    header = f"{'photo':<8}" + "".join(f"{s:>11}" for s in STAGES) + f"{'total':>9}" + \
        f"{'CDFNet+anon / enc+gen':>24}"
    print(header)
    for name, row in rows.items():
        cells = "".join(f"{row['median_s'][s]:>10.3f}s" for s in STAGES)
        print(f"{name:<8}{cells}{row['total_s']:>8.2f}s{row['method_over_backbone']:>24.4f}")
    report = {"benchmark": "pipeline", "device": str(device), "tiny": args.tiny,
              "output_size": args.output_size, "samples": args.samples,
              "anonymized_crops": args.anonymized_crops,
              "repeats": args.repeats, "threads": torch.get_num_threads(),
              "torch": torch.__version__, "python": platform.python_version(),
              "build_s": build_s, "peak_rss_mib": peak_rss_mib(), "rows": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"peak RSS {report['peak_rss_mib']:.0f} MiB; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
