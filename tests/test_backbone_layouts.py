"""Reference layouts (tests/reference/*.json, copied from the project's structural reference) versus the backbone classes, compared on the
meta device (no memory, no weights): every key, shape, dtype, kind and the order.

Also the shared helpers of the backbone tests: where the reference lives, reading a
layout, and random state dicts with exactly that layout (imported by test_checkpoints).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest
import torch

from lreorg_hub.backbones import E4EEncoder, StyleGAN2Generator


def reference_dir() -> Path:
    """``tests/reference``: the layouts live in the repository, so nothing beside the clone is needed."""
    path = Path(__file__).resolve().parent / "reference"
    if not path.is_dir():
        raise FileNotFoundError(f"reference layouts not found at {path}")
    return path


@lru_cache(maxsize=None)
def load_layout(name: str) -> dict:
    """One reference JSON file (``name`` without or with ``.json``)."""
    name = name if name.endswith(".json") else name + ".json"
    return json.loads((reference_dir() / name).read_text())


def layout_entries(name: str, prefix: str | None = None) -> list[dict]:
    """The ordered state-dict entries, optionally only those under ``prefix.`` (stripped)."""
    entries = load_layout(name)["state_dict"]
    if prefix is None:
        return list(entries)
    p = prefix + "."
    return [dict(e, key=e["key"][len(p):]) for e in entries if e["key"].startswith(p)]


_DTYPES = {"float32": torch.float32, "int64": torch.int64, "float16": torch.float16}


def random_state_dict(entries: list[dict], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Random tensors with exactly the keys, shapes and dtypes of ``entries`` (in order)."""
    sd = {}
    for e in entries:
        dtype = _DTYPES[e["dtype"]]
        if dtype.is_floating_point:
            t = torch.randn(e["shape"], generator=generator, dtype=dtype)
            if e["key"].endswith("running_var"):
                t = t.abs() + 0.5  # a valid variance
        else:
            t = torch.randint(0, 1000, e["shape"], generator=generator, dtype=dtype)
        sd[e["key"]] = t
    return sd


def module_layout(module: torch.nn.Module) -> list[dict]:
    """A module's state dict described like the reference entries."""
    params = {n for n, _ in module.named_parameters()}
    return [{"key": k, "shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
             "kind": "parameter" if k in params else "buffer"}
            for k, v in module.state_dict(keep_vars=True).items()]


def assert_same_layout(module: torch.nn.Module, entries: list[dict]) -> None:
    got = module_layout(module)
    got_keys, want_keys = [e["key"] for e in got], [e["key"] for e in entries]
    assert set(got_keys) == set(want_keys), (
        f"missing {sorted(set(want_keys) - set(got_keys))[:5]}, "
        f"unexpected {sorted(set(got_keys) - set(want_keys))[:5]}")
    assert got_keys == want_keys, "same keys, different order"
    for g, w in zip(got, entries):
        assert g == {k: w[k] for k in ("key", "shape", "dtype", "kind")}, (g, w)


def _meta(cls, **kwargs):
    with torch.device("meta"):
        return cls(**kwargs)


def test_reference_layouts_live_in_the_repository():
    # The test command must pass on a clone with nothing beside it.
    root = Path(__file__).resolve().parents[1]
    assert reference_dir().is_relative_to(root)
    assert (root / "tests" / "reference" / "stylegan2_generator_1024.json").is_file()


def test_reference_helper_finds_the_files():
    names = {p.name for p in reference_dir().glob("*.json")}
    assert {"stylegan2_generator_1024.json", "stylegan2_generator_256.json",
            "e4e_encoder_ffhq.json", "e4e_ffhq_encode_checkpoint.json"} <= names


@pytest.mark.parametrize("size", [1024, 256])
def test_generator_layout_matches_reference(size):
    ref = load_layout(f"stylegan2_generator_{size}")
    gen = _meta(StyleGAN2Generator, size=size)
    assert_same_layout(gen, ref["state_dict"])
    assert sum(p.numel() for p in gen.parameters()) == ref["total_parameter_count"]
    assert sum(b.numel() for b in gen.buffers()) == ref["total_buffer_elements"]
    cfg = ref["config"]
    assert gen.n_latent == cfg["n_latent"] and gen.num_layers == cfg["num_noise_layers"]
    assert {str(k): v for k, v in gen.channels.items()} == cfg["channels"]


def test_generator_kernel_buffers_hold_the_reference_constants():
    ref = load_layout("stylegan2_generator_256")["constant_buffers"]
    gen = StyleGAN2Generator(size=8, style_dim=8, n_mlp=1, channel_base=16, channel_max=8)
    sd = gen.state_dict()
    for key in ("convs.0.conv.blur.kernel", "to_rgbs.0.upsample.kernel"):
        assert torch.equal(sd[key], torch.tensor(ref[key]))


def test_encoder_layout_matches_reference():
    ref = load_layout("e4e_encoder_ffhq")
    enc = _meta(E4EEncoder)
    assert_same_layout(enc, ref["state_dict"])
    assert sum(p.numel() for p in enc.parameters()) == ref["total_parameter_count"]
    by_top = {}
    for n, p in enc.named_parameters():
        by_top[n.split(".")[0]] = by_top.get(n.split(".")[0], 0) + p.numel()
    assert by_top == ref["parameter_count_by_top_module"]


def test_encoder_14_head_variant_matches_reference_counts():
    ref = load_layout("e4e_encoder_ffhq")
    var = ref["variant_stylegan_size_256"]
    enc = _meta(E4EEncoder, n_styles=14)
    entries = [e for e in ref["state_dict"]
               if not any(e["key"].startswith(f"styles.{i}.") for i in range(14, 18))]
    assert_same_layout(enc, entries)
    assert len(enc.state_dict()) == var["num_state_dict_entries"]
    assert sum(p.numel() for p in enc.parameters()) == var["total_parameter_count"]


def test_split_e4e_checkpoint_is_encoder_then_decoder():
    """The prefixed file layout is exactly encoder layout + 1024 px generator layout."""
    ck = load_layout("e4e_ffhq_encode_checkpoint")
    enc = layout_entries("e4e_ffhq_encode_checkpoint", "encoder")
    dec = layout_entries("e4e_ffhq_encode_checkpoint", "decoder")
    assert len(enc) + len(dec) == ck["num_state_dict_entries"] == len(ck["state_dict"])
    assert [e["key"] for e in ck["state_dict"][: len(enc)]] == ["encoder." + e["key"]
                                                                  for e in enc]
    assert_same_layout(_meta(E4EEncoder), enc)
    assert_same_layout(_meta(StyleGAN2Generator, size=1024), dec)
    assert ck["top_level_keys"]["latent_avg"]["shape"] == [18, 512]
