"""Dataset throughput: faces per second against batch size, dtype and modconv path (the
batched backbone), and per engine (this process vs Ray Data actors) over a whole dataset.

Random weights (cost does not depend on them), aligned generated crops (detection is timed
separately: MTCNN on one photo). ``--config tiny`` is the 64 px test backbone (seconds);
``256`` / ``1024`` are the real StyleGAN2 sizes with the e4e IR-SE50 encoder and the
default CDFNet (minutes per configuration on a CPU). GPU rows are measured only where a GPU
is visible; otherwise they are listed as not measured.

    python benchmarks/bench_dataset.py                       # or: lreorg bench dataset
    python benchmarks/bench_dataset.py --config 256 --batch-sizes 1,4 --items 16
    python benchmarks/bench_dataset.py --engines local,ray --actors 1,2
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from lreorg_hub.backbones import E4EEncoder, StyleGAN2Generator
from lreorg_hub.bundle import LReOrg
from lreorg_hub.pipeline import LReOrgPipeline
from lreorg_hub.training.fitting import fit_identity_anonymizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
GPU_GOALS = ("faces/s at 1024 px, bf16, one GPU (goal ≥ 300; encode + reorganize + "
             "generate)", "single-face latency, 256 px preview (goal < 30 ms)")


def build_parts(config: str):
    gen = torch.Generator().manual_seed(0)
    if config == "tiny":
        generator = StyleGAN2Generator(size=64, style_dim=32, n_mlp=2, channel_base=512,
                                       channel_max=32)
        encoder = E4EEncoder(n_styles=generator.n_latent, units=(1, 1, 1, 1), base_width=4,
                             style_dim=32, input_size=64)
        cdfnet = dict(latent_dim=32, num_rows=generator.n_latent, cond_dim=16, num_blocks=2,
                      hidden_dim=32, dense_growth=8, dense_layers=2)
        groups, members = 8, 64
    else:
        size = int(config)
        generator = StyleGAN2Generator(size=size)
        encoder = E4EEncoder(n_styles=generator.n_latent)
        cdfnet = dict(num_rows=generator.n_latent)
        groups, members = 64, 1024
    model = LReOrg.with_random_weights(gen, cdfnet=cdfnet, num_groups=groups,
                                       num_members=members)
    with torch.no_grad():
        w = generator.sample_w(members, generator=gen)
        fit_identity_anonymizer(model, w.unsqueeze(1).expand(-1, generator.n_latent, -1),
                                generator=gen, iterations=5)
        latent_avg = generator.mean_latent(512, generator=gen).expand(generator.n_latent, -1)
    return model.eval(), encoder, generator, latent_avg.contiguous()


def crops(n: int, size: int) -> list[Image.Image]:
    rng = np.random.default_rng(0)
    return [Image.fromarray((rng.random((4, 4, 3)) * 255).astype(np.uint8)).resize(
        (size, size), Image.BILINEAR) for _ in range(n)]


def time_batches(pipe, images, batch_size: int, repeats: int) -> dict:
    seeds = list(range(len(images)))
    pipe.run_batch(images[:batch_size], seeds=seeds[:batch_size], aligned=True,
                   batch_size=batch_size)  # warm-up
    walls, stages = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = pipe.run_batch(images, seeds=seeds, aligned=True, batch_size=batch_size)
        walls.append(time.perf_counter() - t0)
        stages.append(res[0].timings)
    wall = statistics.median(walls)
    core = statistics.median(s["encode"] + s["reorganize"] + s["generate"] for s in stages)
    return {"faces": len(images), "wall_s": wall, "faces_per_s": len(images) / wall,
            "enc_reorg_gen_faces_per_s": len(images) / core,
            "stages_s": {k: statistics.median(s.get(k, 0.0) for s in stages)
                         for k in ("load", "encode", "reorganize", "generate", "paste")}}


@torch.no_grad()
def half_precision_lreorg(parts, device, faces: int = 8) -> dict:
    """The whole latent path in bf16 / fp16 (CDFNet and generator) against float32 on the
    same W+ codes with the same seed: CDFNet's round-trip error and per-face image max |Δ|
    (a face whose drawn group differs shows as a large Δ: the key feature's rounding moved
    its distances across a tie)."""
    import copy

    model, _, generator, latent_avg = parts
    w = generator.sample_w(faces, generator=torch.Generator().manual_seed(2)).to(device)
    codes = w.unsqueeze(1).expand(-1, generator.n_latent, -1).contiguous()
    ref_model, ref_gen = model.to(device), generator.to(device)
    ref = ref_gen(ref_model.reorganize(codes, seed=0).recovered[0])
    out = {}
    for name in ("bfloat16", "float16"):
        dtype = DTYPES[name]
        m, g = copy.deepcopy(model), copy.deepcopy(generator).to(dtype)
        m.cdfnet.to(dtype)
        img = g(m.reorganize(codes, seed=0).recovered[0]).float()
        per_face = (img - ref).abs().flatten(1).max(dim=1).values
        k = m.condition(m.keywords[0])
        f, r = m.cdfnet(codes.to(dtype), k)
        back = m.cdfnet.inverse(f, r, k)[1].float()
        out[name] = {"cdfnet_round_trip_rel": float((back - codes).abs().max()
                                                    / codes.abs().max()),
                     "median_face_max_diff": float(per_face.median()),
                     "worst_face_max_diff": float(per_face.max())}
    return out


@torch.no_grad()
def preview_latency(parts, device, dtypes, repeats: int) -> list[dict]:
    """One aligned face through the pipeline (no detection): the preview a Space visitor
    waits for. The 1024 px generator stops at 256 px (``output_size``)."""
    model, encoder, generator, latent_avg = parts
    size = min(256, generator.size)
    crop = crops(1, encoder.input_size)[0]
    rows = []
    for name in dtypes:
        pipe = LReOrgPipeline(model, encoder, generator, latent_avg, device=device,
                              output_size=size).to(dtype=DTYPES[name])
        for _ in range(2):  # warm-up (kernel selection, caches)
            pipe(crop, aligned=True, anonymized_crops=False)
        times = []
        for _ in range(max(3, repeats * 5)):
            t0 = time.perf_counter()
            pipe(crop, aligned=True, anonymized_crops=False)
            times.append(time.perf_counter() - t0)
        rows.append({"dtype": name, "output_size": size, "device": str(device),
                     "ms_median": 1000 * statistics.median(times),
                     "ms_min": 1000 * min(times)})
        pipe.to(dtype=torch.float32)
    return rows


def write_model(folder: Path, parts) -> tuple[str, str]:
    model, encoder, generator, latent_avg = parts
    model.save_pretrained(folder / "bundle")
    state = {**{f"encoder.{k}": v for k, v in encoder.state_dict().items()},
             **{f"decoder.{k}": v for k, v in generator.state_dict().items()}}
    torch.save({"state_dict": state, "latent_avg": latent_avg,
                "opts": {"stylegan_size": generator.size}}, folder / "backbone.pt")
    return str(folder / "bundle"), str(folder / "backbone.pt")


def time_engine(engine: str, actors: int, src: Path, work: Path, spec, batch_size: int,
                items: int) -> dict:
    """One whole run into a fresh folder: start-up (pipeline load per process / actor)
    included, as a user sees it."""
    from lreorg_hub.dataset import DatasetOptions, anonymize_dataset
    from lreorg_hub.pipeline import ProtectOptions

    out = work / f"out-{engine}-{actors}"
    t0 = time.perf_counter()
    summary = anonymize_dataset(src, out, b"bench-key-not-secret" * 2, pipeline=spec,
                                options=DatasetOptions(ProtectOptions(aligned=True),
                                                       batch_size=batch_size,
                                                       shard_size=batch_size),
                                engine=engine, actors=actors)
    wall = time.perf_counter() - t0
    return {"engine": engine, "actors": actors if engine == "ray" else None, "items": items,
            "batch_size": batch_size, "wall_s": wall,
            "faces_per_s": summary["anonymized"] / wall,
            "note": "whole run: start-up and pipeline load included"}


def detection_time(device: torch.device) -> float | None:
    try:
        from skimage import data

        from lreorg_hub.image.faces import FaceDetector
    except ImportError:
        return None
    det = FaceDetector(device=device)
    photo = Image.fromarray(data.astronaut())
    det.locate(photo)
    t0 = time.perf_counter()
    for _ in range(3):
        det.locate(photo)
    return (time.perf_counter() - t0) / 3


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lreorg bench dataset",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="tiny", choices=["tiny", "256", "1024"],
                        help="tiny: the 64 px test backbone; 256 / 1024: real sizes")
    parser.add_argument("--items", type=int, default=64, help="faces per measurement")
    parser.add_argument("--batch-sizes", default="1,4,16,64", help="comma-separated")
    parser.add_argument("--dtypes", default="float32,bfloat16",
                        help="comma-separated: float32, bfloat16, float16")
    parser.add_argument("--modconv", default="grouped,shared",
                        help="paths compared at the largest batch size")
    parser.add_argument("--engines", default="local,ray",
                        help="comma-separated: local, ray ('' for none)")
    parser.add_argument("--actors", default="1,2", help="Ray actor pool sizes")
    parser.add_argument("--engine-items", type=int, default=256,
                        help="files in the dataset the engines process")
    parser.add_argument("--engine-batch", type=int, default=16,
                        help="batch size and shard size of the engine runs")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row (median)")
    parser.add_argument("--device", default="auto",
                        help="auto (cuda if available), cpu, cuda:0")
    parser.add_argument("--no-detection", action="store_true", help="skip the MTCNN timing")
    parser.add_argument("--latency", action=argparse.BooleanOptionalAction, default=True,
                        help="single-face preview latency (256 px output)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out", default="benchmarks/results/dataset.json", help="JSON written")
    args = parser.parse_args(argv)
    threads_before = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args)
    finally:
        torch.set_num_threads(threads_before)


def _run(args) -> int:
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    dtypes = [d for d in args.dtypes.split(",") if d]
    parts = build_parts(args.config)
    model, encoder, generator, latent_avg = parts
    size = encoder.input_size
    images = crops(args.items, size)
    rows = []
    for dtype in dtypes:
        pipe = LReOrgPipeline(model, encoder, generator, latent_avg, device=device).to(
            dtype=DTYPES[dtype])
        for bs in batch_sizes:
            for mode in (args.modconv.split(",") if bs == max(batch_sizes) else ["auto"]):
                generator.modconv = mode
                r = time_batches(pipe, images, bs, args.repeats)
                rows.append({"device": str(device), "dtype": dtype, "batch_size": bs,
                             "modconv": mode, **r})
        pipe.to(dtype=torch.float32)
    generator.modconv = "auto"

    # bf16 / fp16 vs float32 on the same codes (generator only)
    parity = {}
    w = torch.randn(4, generator.n_latent, generator.style_dim,
                    generator=torch.Generator().manual_seed(1)).to(device) * 0.5 + \
        latent_avg.to(device)
    with torch.no_grad():
        ref = generator.to(device)(w)
        for name in ("bfloat16", "float16"):
            img = generator.to(DTYPES[name])(w)
            parity[name] = float((img.float() - ref).abs().max())
        generator.to(torch.float32)
    lreorg_parity = half_precision_lreorg(parts, device)
    latency = preview_latency(parts, device, dtypes, args.repeats) if args.latency else []

    engine_rows = []
    engines = [e for e in args.engines.split(",") if e]
    if engines:
        from lreorg_hub.dataset import PipelineSpec

        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            bundle, backbone = write_model(work, parts)
            src = work / "src"
            src.mkdir()
            for i, img in enumerate(crops(args.engine_items, size)):
                buf = io.BytesIO()
                img.save(buf, format="PNG")
                (src / f"{i:05d}.png").write_bytes(buf.getvalue())
            spec = PipelineSpec(bundle=bundle, backbone=backbone, device=str(device))
            bs, n = args.engine_batch, args.engine_items
            if "local" in engines:
                engine_rows.append(time_engine("local", 1, src, work, spec, bs, n))
            if "ray" in engines:
                import ray

                if not ray.is_initialized():
                    ray.init(num_cpus=os.cpu_count(), include_dashboard=False,
                             log_to_driver=False, runtime_env={"env_vars": {
                                 "PYTHONPATH": str(Path(__file__).resolve().parents[1])}})
                for a in [int(x) for x in args.actors.split(",") if x]:
                    engine_rows.append(time_engine("ray", a, src, work, spec, bs, n))
    detect_s = None if args.no_detection else detection_time(device)

    print(f"\nbatched backbone, {args.config} config, {args.items} aligned faces, device "
          f"{device}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    print(f"{'dtype':<9}{'batch':>6}{'modconv':>9}{'faces/s':>10}{'enc+reorg+gen/s':>17}"
          f"{'encode':>9}{'reorg':>8}{'generate':>10}")
    for r in rows:
        st = r["stages_s"]
        print(f"{r['dtype']:<9}{r['batch_size']:>6}{r['modconv']:>9}{r['faces_per_s']:>10.1f}"
              f"{r['enc_reorg_gen_faces_per_s']:>17.1f}{st['encode']:>8.2f}s"
              f"{st['reorganize']:>7.2f}s{st['generate']:>9.2f}s")
    print("max |image diff| vs float32 on the same codes: " +
          ", ".join(f"{k} {v:.4f}" for k, v in parity.items()))
    for name, r in lreorg_parity.items():
        print(f"{name}, whole latent path (same codes and seed, CDFNet in {name}): CDFNet "
              f"round trip {r['cdfnet_round_trip_rel']:.4f} (relative), image max |Δ| per "
              f"face: median {r['median_face_max_diff']:.3f}, worst {r['worst_face_max_diff']:.3f}")
    for r in latency:
        print(f"single-face latency, {r['output_size']} px output, {r['dtype']}: "
              f"{r['ms_median']:.1f} ms median (encode + reorganize + generate + paste, "
              f"aligned crop)")
    if engine_rows:
        print(f"\nengines (a folder of {args.engine_items} files: read + anonymize + write, "
              f"batch = shard = {args.engine_batch}, start-up included)")
        for r in engine_rows:
            label = r["engine"] + (f" ×{r['actors']}" if r["actors"] else "")
            print(f"{label:<10}{r['faces_per_s']:>8.1f} faces/s{r['wall_s']:>8.1f}s  "
                  f"({r['note']})")
    if detect_s is not None:
        print(f"\ndetection (MTCNN, 512×512 photo, one face): {detect_s * 1000:.0f} ms/photo")
    gpu = []
    if device.type != "cuda":
        for goal in GPU_GOALS:
            gpu.append({"measure": goal, "value": None,
                        "status": "not measured: no GPU in this run"})
            print(f"GPU: {goal}: not measured (no GPU in this run)")
    report = {"benchmark": "dataset", "config": args.config, "device": str(device),
              "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
              "torch": torch.__version__, "python": platform.python_version(),
              "rows": rows, "half_precision_max_image_diff": parity,
              "half_precision_lreorg": lreorg_parity, "latency": latency,
              "engines": engine_rows,
              "detection_s_per_photo": detect_s, "gpu": gpu}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
