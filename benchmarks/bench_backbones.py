"""Benchmark the image backbones at full size (random weights: cost does not depend on the
values): e4e encode (256 px → W+), StyleGAN2 synthesis at 1024 px and the 256 px preview.

    python benchmarks/bench_backbones.py [--quick] [--batch-sizes 1,8] [--repeats 5]
    lreorg bench backbones ...           (same flags, through the CLI)

Reports the median (and min) wall time over the repeats after one warm-up, and the peak
resident memory the operation added (Linux: VmHWM after resetting it through
/proc/self/clear_refs; elsewhere the growth of ru_maxrss, a lower bound). On CUDA it
reports torch.cuda.max_memory_allocated instead.

For comparison it also times, on the same weights and inputs, a *straightforward*
implementation of the same functions (``--baseline``, on by default at batch 1): the
rosinality-style generator (per-sample weights in a groups=N convolution, conv_transpose2d
followed by a naive upfirdn2d blur over N·C single-channel images, unfused activation)
and a plain module-by-module NCHW e4e forward. These baselines live only in this script;
they are not part of the library. The script checks that both give the same outputs.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import resource
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "backbones.json"


# ======================================================================================
# Baselines for comparison only (script-local, NOT library code)
# ======================================================================================
def _baseline_upfirdn2d(x, kernel, up=1, pad=(0, 0)):
    """Naive upfirdn2d: zero insertion by reshaping, padding, and a single-channel
    convolution over all N·C planes (the pure-PyTorch fallback style)."""
    n, c, h, w = x.shape
    k = kernel.shape[0]
    y = x.reshape(n * c, h, 1, w, 1)
    y = F.pad(y, [0, up - 1, 0, 0, 0, up - 1])
    y = y.reshape(n * c, 1, h * up, w * up)
    y = F.pad(y, [pad[0], pad[1], pad[0], pad[1]])
    y = F.conv2d(y, torch.flip(kernel, (0, 1)).view(1, 1, k, k))
    return y.reshape(n, c, y.shape[-2], y.shape[-1])


def _baseline_modconv(conv, x, style):
    """Rosinality-style modulated conv: modulate the weight per sample, then one grouped
    convolution (or grouped conv_transpose2d + naive blur when upsampling)."""
    n, i, h, w = x.shape
    o, k = conv.out_channel, conv.kernel_size
    s = F.linear(style, conv.modulation.weight * conv.modulation.scale,
                 conv.modulation.bias * conv.modulation.lr_mul)
    weight = conv.scale * conv.weight * s.view(n, 1, i, 1, 1)
    if conv.demodulate:
        weight = weight * torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8).view(n, o, 1, 1, 1)
    if conv.upsample:
        weight = weight.transpose(1, 2).reshape(n * i, o, k, k)
        out = F.conv_transpose2d(x.reshape(1, n * i, h, w), weight, stride=2, groups=n)
        out = out.view(n, o, out.shape[-2], out.shape[-1])
        return _baseline_upfirdn2d(out, conv.blur.kernel, pad=(1, 1))
    out = F.conv2d(x.reshape(1, n * i, h, w), weight.view(n * o, i, k, k),
                   padding=conv.padding, groups=n)
    return out.view(n, o, h, w)


def _baseline_styled(layer, x, style, noise):
    out = _baseline_modconv(layer.conv, x, style)
    if noise is not None:
        out = out + layer.noise.weight * noise
    return F.leaky_relu(out + layer.activate.bias.view(1, -1, 1, 1), 0.2) * math.sqrt(2)


def _baseline_torgb(layer, x, style, skip):
    out = _baseline_modconv(layer.conv, x, style) + layer.bias
    if skip is not None:
        out = out + _baseline_upfirdn2d(skip, layer.upsample.kernel, up=2, pad=(2, 1))
    return out


def baseline_synthesis(gen, w):
    """Straightforward synthesis of W+ codes with the stored noise (same function)."""
    n = w.shape[0]
    noises = [getattr(gen.noises, f"noise_{j}") for j in range(gen.num_layers)]
    x = gen.input.input.repeat(n, 1, 1, 1)
    x = _baseline_styled(gen.conv1, x, w[:, 0], noises[0])
    skip = _baseline_torgb(gen.to_rgb1, x, w[:, 1], None)
    for k in range(len(gen.to_rgbs)):
        x = _baseline_styled(gen.convs[2 * k], x, w[:, 2 * k + 1], noises[2 * k + 1])
        x = _baseline_styled(gen.convs[2 * k + 1], x, w[:, 2 * k + 2], noises[2 * k + 2])
        skip = _baseline_torgb(gen.to_rgbs[k], x, w[:, 2 * k + 3], skip)
    return skip


def _bn(bn, x):
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0,
                        bn.eps)


def _baseline_unit(unit, x):
    if isinstance(unit.shortcut_layer, torch.nn.MaxPool2d):
        sc = F.max_pool2d(x, 1, unit.stride)
    else:
        sc = _bn(unit.shortcut_layer[1], F.conv2d(x, unit.shortcut_layer[0].weight,
                                                  stride=unit.stride))
    bn0, c1, pr, c2, bn2, se = unit.res_layer
    r = F.prelu(F.conv2d(_bn(bn0, x), c1.weight, padding=1), pr.weight)
    r = _bn(bn2, F.conv2d(r, c2.weight, stride=unit.stride, padding=1))
    g = F.adaptive_avg_pool2d(r, 1)
    g = torch.sigmoid(F.conv2d(F.relu(F.conv2d(g, se.fc1.weight)), se.fc2.weight))
    return r * g + sc


def _baseline_head(head, x):
    for m in head.convs:
        x = m(x)
    return F.linear(x.view(-1, head.out_c), head.linear.weight * head.linear.scale,
                    head.linear.bias)


def baseline_encode(enc, x):
    """Plain module-by-module e4e forward (NCHW, one head at a time, BN not folded)."""
    x = F.prelu(_bn(enc.input_layer[1], F.conv2d(x, enc.input_layer[0].weight, padding=1)),
                enc.input_layer[2].weight)
    taps = []
    for i, unit in enumerate(enc.body):
        x = _baseline_unit(unit, x)
        if i in enc._taps:
            taps.append(x)
    c1, c2, c3 = taps

    def up_add(a, b):
        return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) + b

    w0 = _baseline_head(enc.styles[0], c3)
    w = w0.repeat(enc.n_styles, 1, 1).permute(1, 0, 2).clone()
    feat = c3
    for i in range(1, enc.n_styles):
        if i == 3:
            p2 = up_add(c3, enc.latlayer1(c2))
            feat = p2
        elif i == 7:
            p1 = up_add(p2, enc.latlayer2(c1))
            feat = p1
        w[:, i] += _baseline_head(enc.styles[i], feat)
    return w


# ======================================================================================
# Measurement
# ======================================================================================
def _rss_tools():
    """(reset, peak_bytes, label) for the best peak-memory measure available here."""
    status, clear = Path("/proc/self/status"), Path("/proc/self/clear_refs")

    def vmhwm() -> int:
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise OSError("no VmHWM")

    def vmrss() -> int:
        for line in status.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise OSError("no VmRSS")

    try:
        clear.write_text("5")  # resets VmHWM to the current RSS (Linux ≥ 4.0)
        vmhwm()
        return (lambda: clear.write_text("5")), vmhwm, vmrss, "VmHWM (reset per run)"
    except OSError:
        scale = 1 if sys.platform == "darwin" else 1024
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale  # noqa: E731
        return (lambda: None), peak, peak, "ru_maxrss growth (lower bound)"


def measure(fn: Callable[[], torch.Tensor], repeats: int, device: torch.device) -> dict:
    """Warm up once, then time ``repeats`` calls; peak memory added by one call."""
    cuda = device.type == "cuda"
    reset, peak, current, _ = _rss_tools()
    with torch.inference_mode():
        out = fn()  # warm-up (oneDNN primitive creation, allocator)
        del out
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
        else:
            reset()
            base = current()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = fn()
            if cuda:
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            del out
        mem = (torch.cuda.max_memory_allocated() if cuda else peak()) - base
    return {"median_s": statistics.median(times), "min_s": min(times), "times_s": times,
            "peak_mem_mb": round(mem / 2 ** 20, 1)}


def _max_rel_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-12)).item()


def run(args) -> dict:
    from lreorg_hub.backbones import E4EEncoder, StyleGAN2Generator

    device = torch.device(args.device)
    torch.set_grad_enabled(False)
    t0 = time.perf_counter()
    gen = StyleGAN2Generator(size=1024).eval().to(device)
    # Non-zero noise gains and biases so every term of the computation is exercised.
    g = torch.Generator().manual_seed(0)
    for name, p in gen.named_parameters():
        if p.dim() <= 1 or name.endswith("bias"):
            p.copy_(torch.randn(p.shape, generator=g).mul_(0.1).add_(
                1.0 if name.endswith("modulation.bias") else 0.0))
    enc = E4EEncoder().eval().to(device)
    for name, b in enc.named_buffers():
        if name.endswith("running_var"):
            b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    build_s = time.perf_counter() - t0

    results = {"device": str(device), "threads": torch.get_num_threads(),
               "torch": torch.__version__, "python": platform.python_version(),
               "cpu": platform.processor() or platform.machine(),
               "memory_measure": _rss_tools()[3] if device.type == "cpu"
               else "torch.cuda.max_memory_allocated",
               "repeats": args.repeats, "build_s": round(build_s, 2), "rows": []}
    rows = results["rows"]

    def add(task, impl, batch, m, **extra):
        row = {"task": task, "impl": impl, "batch": batch, **m, **extra}
        rows.append(row)
        print(f"  {task:<18} {impl:<9} batch {batch}: median {m['median_s']:.3f} s "
              f"(min {m['min_s']:.3f}), peak +{m['peak_mem_mb']:.0f} MB", flush=True)

    for batch in args.batch_sizes:
        gb = torch.Generator().manual_seed(batch)
        x = (torch.rand(batch, 3, 256, 256, generator=gb) * 2 - 1).to(device)
        w = (torch.randn(batch, 18, 512, generator=gb) * 0.5).to(device)
        baseline = args.baseline and batch in args.baseline_batch_sizes
        reps = args.repeats
        if "encode" in args.tasks:
            add("encode", "ours", batch, measure(lambda: enc(x), reps, device))
            if baseline:
                diff = _max_rel_diff(enc(x), baseline_encode(enc, x))
                add("encode", "baseline", batch,
                    measure(lambda: baseline_encode(enc, x), reps, device), max_rel_diff=diff)
        if "generate" in args.tasks:
            add("generate_1024", "ours", batch, measure(lambda: gen(w), reps, device))
            if baseline:
                diff = _max_rel_diff(gen(w), baseline_synthesis(gen, w))
                add("generate_1024", "baseline", batch,
                    measure(lambda: baseline_synthesis(gen, w), reps, device),
                    max_rel_diff=diff)
        if "preview" in args.tasks:
            add("generate_256", "ours", batch,
                measure(lambda: gen(w, output_size=256), reps, device))
        if "modconv" in args.tasks and baseline:
            _modconv_rows(gen, batch, reps, device, add)
    return results


def _modconv_rows(gen, batch, reps, device, add):
    """The two most expensive layers (1024 px block) alone: ours vs the baseline."""
    g = torch.Generator().manual_seed(1)
    for name, layer, res in (("modconv_up_512to1024", gen.convs[14].conv, 512),
                             ("modconv_1024", gen.convs[15].conv, 1024)):
        x = torch.randn(batch, layer.in_channel, res, res, generator=g).to(device)
        s = torch.randn(batch, gen.style_dim, generator=g).to(device)
        diff = _max_rel_diff(layer(x, s), _baseline_modconv(layer, x, s))
        add(name, "ours", batch, measure(lambda: layer(x, s), reps, device))
        add(name, "baseline", batch, measure(lambda: _baseline_modconv(layer, x, s), reps,
                                             device), max_rel_diff=diff)


def format_table(results: dict) -> str:
    rows = results["rows"]
    base = {(r["task"], r["batch"]): r for r in rows if r["impl"] == "baseline"}
    lines = [f"device {results['device']}, {results['threads']} threads, torch "
             f"{results['torch']}; memory: {results['memory_measure']}",
             f"{'task':<22}{'impl':<10}{'batch':>5}{'median s':>10}{'min s':>9}"
             f"{'per img s':>10}{'peak MB':>9}{'vs base':>9}{'rel diff':>10}"]
    for r in rows:
        b = base.get((r["task"], r["batch"]))
        ratio = f"{r['median_s'] / b['median_s']:.2f}x" if b and r["impl"] == "ours" else ""
        diff = f"{r['max_rel_diff']:.1e}" if "max_rel_diff" in r else ""
        lines.append(f"{r['task']:<22}{r['impl']:<10}{r['batch']:>5}{r['median_s']:>10.3f}"
                     f"{r['min_s']:>9.3f}{r['median_s'] / r['batch']:>10.3f}"
                     f"{r['peak_mem_mb']:>9.0f}{ratio:>9}{diff:>10}")
    return "\n".join(lines)


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="lreorg bench backbones", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results path")
    p.add_argument("--repeats", type=int, default=5, help="timed runs per row (median)")
    p.add_argument("--batch-sizes", type=_ints, default=[1, 8], help="e.g. 1,8")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--quick", action="store_true", help="2 repeats, batch 1 only")
    p.add_argument("--tasks", default="encode,generate,preview,modconv",
                   help="comma list of encode,generate,preview,modconv")
    p.add_argument("--no-baseline", dest="baseline", action="store_false",
                   help="skip the straightforward reference implementations")
    p.add_argument("--baseline-batch-sizes", type=_ints, default=[1],
                   help="batch sizes at which the baselines run (they are slow)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    args = p.parse_args(argv)
    if args.quick:
        args.repeats, args.batch_sizes = 2, [1]
    args.tasks = {t.strip() for t in args.tasks.split(",") if t.strip()}
    return args


def benchmark(argv=None) -> dict:
    """Run the benchmark (CLI flags in ``argv``), print the table, write and return the
    results."""
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"bench backbones: batches {args.batch_sizes}, repeats {args.repeats}, "
          f"device {args.device}, tasks {sorted(args.tasks)}", flush=True)
    results = run(args)
    print()
    print(format_table(results))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"\nwrote {args.out}")
    return results


def main(argv=None) -> int:
    """CLI entry point (``lreorg bench backbones``); returns the exit status."""
    benchmark(argv)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))  # run from a checkout without installing
    sys.exit(main())
