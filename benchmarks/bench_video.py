"""Video: flicker of the anonymized faces (one draw per track vs a draw per frame), speed, and
peak memory on long clips.

Flicker (the default): synthetic clips made from a still photo (a pan, a zoom, the photo
repeated). For every track of the anonymized clip: identity consistency across frames as in
STIT (TL-ID: cosine of the identity encoder's embeddings of adjacent frames; TG-ID: over all
pairs of frames; each also divided by the same number on the input clip, so 1 = as consistent
as the input), temporal stability (mean change of the aligned face crop between adjacent
frames, divided by the input's own change: 1 = changes as much as the input, more =
flicker), and the largest pixel difference between the output frames of the repeated photo.

    python benchmarks/bench_video.py                # or: lreorg bench video  (demo weights)
    python benchmarks/bench_video.py --bundle B --backbone e4e_ffhq_encode.pt \\
        --identity-weights vggface2                 # the same on real weights
    python benchmarks/bench_video.py --speed        # frames/s, demo weights, CPU
    python benchmarks/bench_video.py --speed --full --size 1280x720 --device cuda \\
        --dtype bfloat16                            # full-size networks (1024 px generator)
    python benchmarks/bench_video.py --memory       # peak memory, 1- and 5-minute clips

The identity encoder's public weights (facenet VGGFace2) cannot be downloaded on machines
without internet: without --identity-weights the real facenet network runs with random
weights, and the report says so (its numbers then measure consistency of a random embedding,
not of identity).
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
SCENES = ("pan", "zoom", "still")


def demo_pipeline(device: str = "cpu", style_mix: bool = True):
    from lreorg_hub.demo import build_demo_backbone, build_demo_bundle, build_demo_style_mix
    from lreorg_hub.pipeline import LReOrgPipeline

    backbone = build_demo_backbone(0)
    return LReOrgPipeline(build_demo_bundle(backbone, 0), backbone.encoder, backbone.generator,
                          backbone.latent_avg, device=device,
                          style_mix=build_demo_style_mix(backbone, 0) if style_mix else None)


def pipeline(args):
    from lreorg_hub.pipeline import LReOrgPipeline

    device = "cpu" if args.device == "auto" and not torch.cuda.is_available() else args.device
    if args.full:
        sys.path.insert(0, str(HERE))
        from bench_pipeline import build

        pipe = build(False, torch.device("cuda" if device == "auto" else device), None)
    elif args.bundle or args.style_mix:
        pipe = LReOrgPipeline.from_pretrained(args.bundle, backbone=args.backbone,
                                              style_mix=args.style_mix, device=device)
    else:
        pipe = demo_pipeline(device, "style-mix" in args.methods.split(","))
    return pipe.to(dtype=args.dtype) if args.dtype != "float32" else pipe


def sprite():
    from skimage import data

    from lreorg_hub.demo_clips import face_sprite

    return face_sprite(Image.fromarray(data.astronaut()), (182, 63, 267, 174))


def make_clip(folder: Path, scene: str, frames: int, size: tuple[int, int], fps: float = 30):
    from lreorg_hub.demo_clips import scene_frames, write_clip

    codec = "ffv1" if scene == "still" else "libx264"   # the repeated photo stays identical
    return write_clip(folder / f"{scene}.{'mkv' if codec == 'ffv1' else 'mp4'}",
                      scene_frames(scene, sprite(), frames, size), fps=fps, codec=codec)


# -- flicker -----------------------------------------------------------------------------------
def track_crops(frames: list[np.ndarray], faces: list, size: int = 160) -> dict[int, list]:
    """track → [(frame index, aligned crop)] where the track had landmarks."""
    from lreorg_hub.image.faces import align_face

    out: dict[int, list] = {}
    for i, (frame, frame_faces) in enumerate(zip(frames, faces)):
        for f in frame_faces:
            if f.landmarks is not None:
                crop, _ = align_face(frame, f.landmarks, size)
                out.setdefault(f.track, []).append((i, np.asarray(crop)))
    return out


def consistency(encoder, crops: list[np.ndarray]) -> tuple[float, float]:
    """(TL-ID, TG-ID): mean cosine of adjacent embeddings, and of all pairs."""
    with torch.no_grad():
        e = encoder.embed([Image.fromarray(c) for c in crops])
    e = torch.nn.functional.normalize(e.float(), dim=-1)
    cos = e @ e.T
    n = len(crops)
    local = float(cos.diagonal(1).mean()) if n > 1 else 1.0
    pairs = [float(cos[i, j]) for i, j in itertools.combinations(range(n), 2)]
    return local, float(np.mean(pairs)) if pairs else 1.0


def change(crops: list[np.ndarray]) -> float:
    return float(np.mean([np.abs(a.astype(float) - b).mean() for a, b in zip(crops, crops[1:])]))


def flicker(args, pipe, folder: Path) -> list[dict]:
    from lreorg_hub.image.video import VideoReader, probe_video
    from lreorg_hub.pipeline import ProtectOptions
    from lreorg_hub.pipeline.video import VideoOptions
    from lreorg_hub.scorers import FFHQ_FACE_CROP, IdentityEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)       # the random-weight encoder is the same on every run
        encoder = IdentityEncoder(pretrained=args.identity_weights, crop=FFHQ_FACE_CROP).eval()
    rows = []
    methods = [m for m in args.methods.split(",") if m in pipe.available_methods()]
    for scene in args.scenes.split(","):
        clip = make_clip(folder, scene, args.frames, args.size)
        inputs = [f.image for f in VideoReader(probe_video(clip))]
        for method, draw in itertools.product(methods, ("per-track", "per-frame")):
            outs = {}
            result = pipe.anonymize_video(clip, folder / "out.mp4",
                                          ProtectOptions(method=method),
                                          video=VideoOptions(draw=draw),
                                          on_frame=lambda i, f: outs.__setitem__(i, f))
            frames = [outs[i] for i in sorted(outs)]
            before, after = track_crops(inputs, result.faces), track_crops(frames, result.faces)
            row = {"scene": scene, "method": method, "draw": draw, "frames": len(frames),
                   "tracks": len(after), "seconds": result.seconds}
            for name, k in (("tl_id", 0), ("tg_id", 1)):
                out_v = [consistency(encoder, [c for _, c in after[t]])[k] for t in after]
                in_v = [consistency(encoder, [c for _, c in before[t]])[k] for t in before]
                row[name], row[f"{name}_input"] = float(np.mean(out_v)), float(np.mean(in_v))
                row[f"{name}_relative"] = row[name] / row[f"{name}_input"]
            ratios = [change([c for _, c in after[t]]) / max(change([c for _, c in before[t]]),
                                                               1e-9)
                      if len(after[t]) > 1 else float("nan") for t in after]
            row["stability"] = float(np.nanmean(ratios)) if scene != "still" else None
            row["max_frame_difference"] = int(max(np.abs(f.astype(int) - frames[0]).max()
                                                  for f in frames))
            rows.append(row)
            stable = "" if row["stability"] is None else f"{row['stability']:.2f}"
            same = "" if scene != "still" else f"{row['max_frame_difference']}"
            print(f"{scene:<6}{method:<11}{draw:<11}{row['tl_id']:>10.6f}{row['tg_id']:>10.6f}"
                  f"{row['tl_id_input']:>10.6f}{row['tg_id_input']:>10.6f}{stable:>11}"
                  f"{same:>10}", flush=True)
    return rows


# -- speed ---------------------------------------------------------------------------------
def speed(args, pipe, folder: Path) -> dict:
    from lreorg_hub.pipeline import ProtectOptions
    from lreorg_hub.pipeline.video import VideoOptions

    clip = make_clip(folder, "pan", args.frames, args.size)
    options = ProtectOptions(method=args.methods.split(",")[0])
    video = VideoOptions(batch_frames=args.batch_frames, detect_every=args.detect_every)
    pipe.anonymize_video(clip, folder / "warm.mp4", options, video=video)   # warm-up
    result = pipe.anonymize_video(clip, folder / "out.mp4", options, video=video)
    return {"frames": result.frames, "seconds": result.seconds,
            "fps": result.frames / result.seconds, "timings": result.timings,
            "tracks": result.record.extra["video"]["tracks"]}


# -- memory --------------------------------------------------------------------------------
def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_child(clip: str, detect_every: int) -> None:
    """One clip in this process: peak resident memory before and after (printed as JSON)."""
    from lreorg_hub.pipeline import ProtectOptions
    from lreorg_hub.pipeline.video import VideoOptions

    pipe = demo_pipeline(style_mix=False)
    pipe.detector  # built before the baseline is taken
    base = peak_rss_mib()
    with tempfile.TemporaryDirectory() as tmp:
        result = pipe.anonymize_video(clip, Path(tmp) / "out.mp4",
                                      ProtectOptions(method="lreorg"),
                                      video=VideoOptions(detect_every=detect_every))
    print(json.dumps({"frames": result.frames, "seconds": result.seconds,
                      "peak_rss_mib": peak_rss_mib(), "before_mib": base,
                      "tracks": result.record.extra["video"]["tracks"]}))


def memory(args, folder: Path) -> list[dict]:
    rows = []
    for minutes in args.minutes:
        frames = int(minutes * 60 * 30)
        clip = make_clip(folder, "pan", frames, args.size)
        done = subprocess.run([sys.executable, __file__, "--memory-child", str(clip),
                               "--detect-every", str(args.detect_every)],
                              capture_output=True, text=True, check=True)
        row = {"minutes": minutes, "size": list(args.size), **json.loads(
            done.stdout.strip().splitlines()[-1])}
        rows.append(row)
        print(f"{minutes:>4g} min {frames:>7} frames  peak {row['peak_rss_mib']:>7.0f} MiB  "
              f"(before the clip {row['before_mib']:.0f} MiB)  {row['seconds']:>7.1f} s  "
              f"{frames / row['seconds']:>6.1f} frames/s", flush=True)
        clip.unlink()
    return rows


def size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lreorg bench video", description=__doc__.split("\n\n")[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--speed", action="store_true", help="frames per second")
    mode.add_argument("--memory", action="store_true", help="peak memory, long clips")
    mode.add_argument("--memory-child", metavar="CLIP", help=argparse.SUPPRESS)
    p.add_argument("--frames", type=int, default=48, help="frames per clip (flicker, speed)")
    p.add_argument("--size", type=size, default=(256, 192), help="WxH of the clips")
    p.add_argument("--minutes", type=float, nargs="+", default=[1, 5], help="--memory")
    p.add_argument("--methods", default="lreorg,style-mix")
    p.add_argument("--scenes", default=",".join(SCENES), help="flicker: " + ", ".join(SCENES))
    p.add_argument("--detect-every", type=int, default=1)
    p.add_argument("--batch-frames", type=int, default=8)
    p.add_argument("--full", action="store_true", help="full-size networks, random weights")
    p.add_argument("--bundle"), p.add_argument("--backbone"), p.add_argument("--style-mix")
    p.add_argument("--identity-weights", default=None,
                   help="facenet weights for TL-ID / TG-ID (default: random weights)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.memory_child:
        memory_child(args.memory_child, args.detect_every)
        return 0
    kind = "speed" if args.speed else "memory" if args.memory else "flicker"
    report = {"benchmark": f"video-{kind}", "threads": torch.get_num_threads(),
              "torch": torch.__version__, "python": platform.python_version(),
              "size": list(args.size), "detect_every": args.detect_every}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if kind == "memory":
            print(f"\npeak resident memory, demo weights, {args.size[0]}x{args.size[1]} at 30 "
                  f"frames/s, detect every {args.detect_every} (each clip in its own process)")
            report["rows"] = memory(args, folder)
        else:
            pipe = pipeline(args)
            report.update(device=str(pipe.device), dtype=args.dtype,
                          weights="full-size random" if args.full else
                          "given" if args.bundle or args.style_mix else "demo (random)")
            if kind == "speed":
                report["result"] = speed(args, pipe, folder)
                r = report["result"]
                print(f"\n{r['frames']} frames {args.size[0]}x{args.size[1]}, {r['tracks']} "
                      f"track(s), {report['weights']} weights, {pipe.device} {args.dtype}: "
                      f"{r['fps']:.2f} frames/s ({r['seconds']:.1f} s; stages "
                      + ", ".join(f"{k} {v:.1f} s" for k, v in r["timings"].items()) + ")")
            else:
                report["identity_encoder"] = args.identity_weights or \
                    "facenet InceptionResnetV1 with RANDOM weights (public weights not available)"
                print(f"\nflicker, {args.frames} frames {args.size[0]}x{args.size[1]}, "
                      f"{report['weights']} weights; identity encoder: "
                      f"{report['identity_encoder']}")
                print(f"{'scene':<6}{'method':<11}{'draw':<11}{'TL-ID':>10}{'TG-ID':>10}"
                      f"{'input TL':>10}{'input TG':>10}{'stability':>11}{'max diff':>10}")
                report["rows"] = flicker(args, pipe, folder)
    out = Path(args.out or HERE / "results" / f"video_{kind}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
