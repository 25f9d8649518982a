"""The backbone benchmark script: its comparison baselines compute the same functions as
the library (so its speed-up claims compare like with like), and its CLI plumbing."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from lreorg_hub.backbones import E4EEncoder, StyleGAN2Generator

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_backbones.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_backbones", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _randomize(module, seed=0):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.dim() <= 1 or name.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return module.eval()


def test_baseline_generator_is_the_same_function(bench):
    gen = _randomize(StyleGAN2Generator(size=32, style_dim=16, n_mlp=2, channel_base=128,
                                        channel_max=16))
    w = torch.randn(3, gen.n_latent, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(bench.baseline_synthesis(gen, w), gen(w),
                                   rtol=1e-5, atol=1e-5)


def test_baseline_encoder_is_the_same_function(bench):
    enc = _randomize(E4EEncoder(n_styles=10, units=(1, 1, 2, 1), base_width=16, style_dim=128,
                                input_size=64))
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2)) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(bench.baseline_encode(enc, x), enc(x), rtol=1e-5, atol=1e-5)


def test_arguments_and_table(bench):
    args = bench.parse_args(["--quick", "--tasks", "encode,generate", "--out", "x.json"])
    assert args.repeats == 2 and args.batch_sizes == [1] and args.tasks == {"encode", "generate"}
    assert bench.parse_args(["--batch-sizes", "1,8"]).batch_sizes == [1, 8]
    rows = [{"task": "encode", "impl": "ours", "batch": 1, "median_s": 1.0, "min_s": 0.9,
             "peak_mem_mb": 10.0},
            {"task": "encode", "impl": "baseline", "batch": 1, "median_s": 2.0, "min_s": 1.9,
             "peak_mem_mb": 20.0, "max_rel_diff": 1e-7}]
    table = bench.format_table({"device": "cpu", "threads": 2, "torch": "x",
                                "memory_measure": "m", "rows": rows})
    assert "0.50x" in table and "1.0e-07" in table
    with torch.inference_mode():
        m = bench.measure(lambda: torch.zeros(1000, 1000), 2, torch.device("cpu"))
    assert len(m["times_s"]) == 2 and m["peak_mem_mb"] >= 0
