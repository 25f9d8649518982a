"""Checkpoint loading: random tensors with the reference layouts, saved with torch.save in
the real files' nesting and strict-loaded through the loaders (no key renamed anywhere);
clear errors for wrong layouts; the Hub path and its offline error.
"""

from __future__ import annotations

import argparse
import logging

import pytest
import torch

from lreorg_hub.backbones import (Backbone, BackboneNotAvailableError, BackboneSource,
                                  CheckpointLayoutError, CheckpointReadError, E4EEncoder,
                                  StyleGAN2Generator,
                                  load_backbone, load_e4e_checkpoint,
                                  load_rosinality_checkpoint, read_checkpoint)
from lreorg_hub.backbones.sources import ENV_FILE, ENV_PATH, ENV_REPO, ENV_REVISION
from test_backbone_layouts import layout_entries, load_layout, random_state_dict

TINY_G = dict(size=32, style_dim=64, n_mlp=2, channel_base=128, channel_max=16)
TINY_E = dict(n_styles=8, units=(1, 1, 1, 1), base_width=8, style_dim=64, input_size=64)


def _assert_loaded_exactly(module: torch.nn.Module, saved: dict[str, torch.Tensor]) -> None:
    got = module.state_dict()
    assert list(got) == list(saved)
    for k, v in saved.items():
        assert got[k].dtype == v.dtype and torch.equal(got[k], v), k
    assert not any(t.is_meta for t in got.values())
    assert all(p.requires_grad for p in module.parameters())


def _part(sd: dict, prefix: str) -> dict:
    """The ``prefix.`` entries with the prefix removed (what the loader must produce)."""
    return {k[len(prefix) + 1:]: v for k, v in sd.items() if k.startswith(prefix + ".")}


def _tiny_generator_sd(seed=0):
    gen = StyleGAN2Generator(**TINY_G)
    gen.reset_parameters(torch.Generator().manual_seed(seed))
    return gen.state_dict()


def _tiny_e4e_checkpoint(seed=0) -> dict:
    g = torch.Generator().manual_seed(seed)
    enc = E4EEncoder(**TINY_E)
    enc.reset_parameters(g)
    sd = {f"encoder.{k}": v for k, v in enc.state_dict().items()}
    sd.update({f"decoder.{k}": v for k, v in _tiny_generator_sd(seed + 1).items()})
    return {
        "state_dict": sd,
        "latent_avg": torch.randn(64, generator=g).expand(8, -1).clone(),
        "opts": {"encoder_type": "Encoder4Editing", "start_from_latent_avg": True,
                 "dataset_type": "ffhq_encode", "stylegan_size": 1024,  # wrong on purpose
                 "lpips_lambda": 0.8, "progressive_steps": [0, 20000], "device": "cuda:0"},
    }


# --------------------------------------------------------------------------------------
# Round trips with the reference layouts
# --------------------------------------------------------------------------------------
def test_rosinality_256_generator_round_trip(tmp_path):
    """A converted rosinality file: g_ema with the 256 px layout + latent_avg (512,)."""
    g_ema = random_state_dict(layout_entries("stylegan2_generator_256"),
                              torch.Generator().manual_seed(0))
    latent_avg = torch.randn(512, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "stylegan2-256.pt"
    torch.save({"g_ema": g_ema, "latent_avg": latent_avg}, path)

    bb = load_backbone(path)
    assert bb.encoder is None and bb.generator.size == 256 and bb.n_latent == 14
    assert bb.generator.get_config()["channel_multiplier"] == 2
    _assert_loaded_exactly(bb.generator, g_ema)
    assert bb.latent_avg.shape == (14, 512) and torch.equal(bb.latent_avg[5], latent_avg)
    with torch.no_grad():  # a 16 px preview is enough to see the loaded weights run
        img = bb.decode(bb.latent_avg[None] * 0.01, output_size=16)
    assert img.shape == (1, 3, 16, 16) and torch.isfinite(img).all()


def test_train_py_checkpoint_with_namespace_loads_without_latent_avg(tmp_path):
    sd = _tiny_generator_sd()
    path = tmp_path / "010000.pt"
    torch.save({"g": sd, "d": {"convs.0.0.weight": torch.zeros(2)}, "g_ema": sd,
                "g_optim": {"state": {}}, "d_optim": {"state": {}},
                "args": argparse.Namespace(size=32, batch=4), "ada_aug_p": 0.0}, path)
    bb = load_rosinality_checkpoint(path)
    _assert_loaded_exactly(bb.generator, sd)
    assert bb.latent_avg is None and bb.opts == {"size": 32, "batch": 4}


def test_small_e4e_checkpoint_round_trip(tmp_path, caplog):
    ckpt = _tiny_e4e_checkpoint()
    ckpt["discriminator_state_dict"] = {"0.weight": torch.zeros(3)}  # ignored
    ckpt["global_step"] = 123
    path = tmp_path / "e4e_tiny.pt"
    torch.save(ckpt, path)

    with caplog.at_level(logging.INFO, logger="lreorg_hub.backbones"):
        bb = load_backbone(path)
    assert "stylegan_size" in caplog.text  # noted, and ignored: the keys say 32
    assert isinstance(bb, Backbone) and bb.generator.size == 32 and bb.encoder.n_styles == 8
    sd = ckpt["state_dict"]
    _assert_loaded_exactly(bb.encoder, _part(sd, "encoder"))
    _assert_loaded_exactly(bb.generator, _part(sd, "decoder"))
    assert torch.equal(bb.latent_avg, ckpt["latent_avg"])
    assert bb.opts["progressive_steps"] == [0, 20000] and bb.opts["stylegan_size"] == 1024
    assert not bb.encoder.training and not bb.generator.training
    conv = bb.encoder.body[0].res_layer[1].weight  # the fast memory format survives loading
    assert conv.is_contiguous(memory_format=torch.channels_last)

    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        codes = bb.encode(x)
        torch.testing.assert_close(codes, bb.encoder(x) + ckpt["latent_avg"])
        img = bb.decode(codes)
        assert torch.equal(img, bb.decode(codes))  # stored noise: reproducible
    assert codes.shape == (2, 8, 64) and img.shape == (2, 3, 32, 32)
    assert torch.isfinite(img).all()


@pytest.mark.parametrize("shape", [(64,), (1, 64), (8, 64)])
def test_latent_avg_shapes_are_accepted(shape):
    ckpt = _tiny_e4e_checkpoint()
    ckpt["latent_avg"] = torch.ones(shape)
    bb = load_e4e_checkpoint(ckpt)
    assert bb.latent_avg.shape == (8, 64)


def test_wrong_latent_avg_is_rejected():
    ckpt = _tiny_e4e_checkpoint()
    ckpt["latent_avg"] = torch.ones(3, 64)
    with pytest.raises(CheckpointLayoutError, match="latent_avg"):
        load_e4e_checkpoint(ckpt)


@pytest.mark.slow
def test_full_size_e4e_checkpoint_round_trip(tmp_path):
    """The real file's nesting and all 792 tensors (~1.2 GB) through torch.save/load."""
    ref = load_layout("e4e_ffhq_encode_checkpoint")
    sd = random_state_dict(ref["state_dict"], torch.Generator().manual_seed(0))
    latent_avg = torch.randn(512, generator=torch.Generator().manual_seed(1)).expand(18, -1)
    path = tmp_path / "e4e_ffhq_encode.pt"
    torch.save({"state_dict": sd, "latent_avg": latent_avg.clone(),
                "opts": {"encoder_type": "Encoder4Editing", "stylegan_size": 1024,
                         "start_from_latent_avg": True}}, path)
    del sd
    bb = load_backbone(path)
    assert bb.generator.size == 1024 and bb.encoder.n_styles == 18
    again = read_checkpoint(path)["state_dict"]
    _assert_loaded_exactly(bb.encoder, _part(again, "encoder"))
    _assert_loaded_exactly(bb.generator, _part(again, "decoder"))
    with torch.no_grad():
        x = torch.zeros(1, 3, 256, 256)
        img = bb.decode(bb.encode(x), output_size=64)
    assert img.shape == (1, 3, 64, 64)


@pytest.mark.slow
def test_full_size_rosinality_1024_round_trip(tmp_path):
    g_ema = random_state_dict(layout_entries("stylegan2_generator_1024"),
                              torch.Generator().manual_seed(0))
    path = tmp_path / "stylegan2-ffhq-config-f.pt"
    torch.save({"g_ema": g_ema, "latent_avg": torch.zeros(512)}, path)
    bb = load_backbone(path)
    assert bb.generator.size == 1024 and bb.latent_avg.shape == (18, 512)
    _assert_loaded_exactly(bb.generator, g_ema)


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------
def test_missing_and_unexpected_keys_are_named(tmp_path):
    sd = _tiny_generator_sd()
    del sd["convs.1.noise.weight"]
    sd["convs.1.noise.strength"] = torch.zeros(1)
    path = tmp_path / "bad.pt"
    torch.save({"g_ema": sd}, path)
    with pytest.raises(CheckpointLayoutError) as info:
        load_backbone(path)
    msg = str(info.value)
    assert "Missing keys (1): 'convs.1.noise.weight'" in msg
    assert "Unexpected keys (1): 'convs.1.noise.strength'" in msg


def test_many_missing_keys_are_counted_and_shapes_checked():
    ckpt = _tiny_e4e_checkpoint()
    sd = ckpt["state_dict"]
    for k in [k for k in sd if k.startswith("encoder.styles.3.")]:
        del sd[k]
    sd["encoder.latlayer1.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(CheckpointLayoutError) as info:
        load_e4e_checkpoint(ckpt)
    msg = str(info.value)
    assert "Missing keys (" in msg and "more)" in msg and "styles.3.convs.0.weight" in msg
    assert "Shape mismatches (1" in msg and "latlayer1.weight (3, 3, 1, 1)" in msg


def test_missing_constant_kernels_are_filled_in(caplog):
    sd = _tiny_generator_sd()
    kernels = [k for k in sd if k.endswith(".kernel")]
    stripped = {k: v for k, v in sd.items() if k not in kernels}
    with caplog.at_level(logging.WARNING):
        bb = load_rosinality_checkpoint({"g_ema": stripped})
    assert "constant kernel" in caplog.text
    _assert_loaded_exactly(bb.generator, sd)


def test_missing_noise_buffers_fail_loudly():
    sd = {k: v for k, v in _tiny_generator_sd().items() if not k.startswith("noises.")}
    with pytest.raises(CheckpointLayoutError, match="noise"):
        load_rosinality_checkpoint({"g_ema": sd})
    bb = load_rosinality_checkpoint({"g_ema": sd}, allow_missing_noise=True)
    assert torch.isfinite(bb.generator.noises.noise_0).all()


def test_format_errors_are_clear(tmp_path):
    with pytest.raises(CheckpointLayoutError, match="'encoder.' and 'decoder.'"):
        load_e4e_checkpoint({"state_dict": {"decoder." + k: v
                                            for k, v in _tiny_generator_sd().items()}})
    with pytest.raises(CheckpointLayoutError, match="g_ema"):
        load_rosinality_checkpoint({"g": _tiny_generator_sd()})
    path = tmp_path / "other.pt"
    torch.save({"model": {}}, path)
    with pytest.raises(CheckpointLayoutError, match="unknown checkpoint format"):
        load_backbone(path)
    with pytest.raises(BackboneNotAvailableError, match="not found"):
        load_backbone(tmp_path / "nope.pt")
    ckpt = _tiny_e4e_checkpoint()
    ckpt["opts"]["encoder_type"] = "GradualStyleEncoder"
    with pytest.raises(CheckpointLayoutError, match="encoder_type"):
        load_e4e_checkpoint(ckpt)


class _Payload:
    """Pickles to an arbitrary call: what weights_only loading must refuse."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_files_are_read_with_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": _tiny_generator_sd(), "extra": _Payload()}, path)
    with pytest.raises(CheckpointReadError, match="objects other than tensors"):
        read_checkpoint(path)


# --------------------------------------------------------------------------------------
# Hub configuration and offline behaviour
# --------------------------------------------------------------------------------------
@pytest.fixture
def clean_env(monkeypatch):
    for var in (ENV_REPO, ENV_FILE, ENV_REVISION, ENV_PATH):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


def test_source_defaults_env_overrides_and_dicts(clean_env):
    src = BackboneSource()
    assert (src.repo_id, src.filename, src.revision) == (
        "AIRI-Institute/HairFastGAN", "pretrained_models/encoder4editing/e4e_ffhq_encode.pt",
        "main")
    assert BackboneSource.from_env() == src
    clean_env.setenv(ENV_REPO, "someone/mirror")
    clean_env.setenv(ENV_FILE, "e4e.pt")
    clean_env.setenv(ENV_REVISION, "0123abc")
    assert BackboneSource.from_env() == BackboneSource("someone/mirror", "e4e.pt", "0123abc")
    cfg = {"repo_id": "a/b", "filename": "f.pt", "revision": "v1", "format": "e4e",
           "size": 1024, "unrelated": 1}
    assert BackboneSource.from_dict(cfg).repo_id == "a/b"


def test_offline_hub_gives_instructions(clean_env, tmp_path):
    import huggingface_hub.constants

    clean_env.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    clean_env.setenv(ENV_REPO, "someone/mirror")
    with pytest.raises(BackboneNotAvailableError) as info:
        load_backbone(BackboneSource(), cache_dir=tmp_path)
    msg = str(info.value)
    assert "someone/mirror" in msg and ENV_PATH in msg and "hf download" in msg
    assert isinstance(info.value, FileNotFoundError)
    assert info.value.__cause__ is not None


def test_local_files_only_gives_instructions(clean_env, tmp_path):
    import huggingface_hub.constants

    clean_env.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(BackboneNotAvailableError, match="HairFastGAN"):
        load_backbone(None, cache_dir=tmp_path, local_files_only=True)


def test_local_path_from_environment(clean_env, tmp_path):
    path = tmp_path / "local.pt"
    torch.save({"g_ema": _tiny_generator_sd()}, path)
    clean_env.setenv(ENV_PATH, str(path))
    bb = load_backbone()
    assert bb.generator.size == 32 and bb.source == str(path)
