"""Damaged or wrong weights files are refused with one clear sentence, before anything large
is built; an unreachable Hub costs one short probe, not huggingface_hub's retries."""

import json
import os
import shutil
import time

import pytest
import torch

from lreorg_hub.backbones import CheckpointLayoutError, CheckpointReadError, load_backbone
from lreorg_hub.bundle import BundleError, LReOrg


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    from conftest import build_tiny_backbone, build_tiny_bundle, save_as_e4e_checkpoint

    root = tmp_path_factory.mktemp("weights")
    build_tiny_bundle(torch.Generator().manual_seed(0)).save_pretrained(root / "bundle")
    save_as_e4e_checkpoint(build_tiny_backbone(), root / "backbone.pt")
    return root


def _copy(saved, tmp_path):
    shutil.copytree(saved / "bundle", tmp_path / "b")
    return tmp_path / "b"


def _edit_config(bundle, **changes):
    config = json.loads((bundle / "config.json").read_text())
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".")
            config[outer][inner] = value
        else:
            config[key] = value
    (bundle / "config.json").write_text(json.dumps(config))


# -- backbone files ---------------------------------------------------------------------------
def test_a_jpeg_is_not_a_checkpoint(tmp_path):
    from PIL import Image

    Image.new("RGB", (8, 8)).save(tmp_path / "photo.pt", format="JPEG")
    with pytest.raises(CheckpointReadError) as info:
        load_backbone(str(tmp_path / "photo.pt"))
    msg = str(info.value)
    assert "is not a PyTorch checkpoint: it is a JPEG image" in msg
    assert "weights_only=False" not in msg and "\n" not in msg


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("echo this must never run",))


def test_a_pickle_with_code_is_refused_without_torch_advice(tmp_path, capfd):
    torch.save({"state_dict": _RunsCode()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointReadError) as info:
        load_backbone(str(tmp_path / "evil.pt"))
    msg = str(info.value)
    assert "holding Python objects other than tensors" in msg
    assert "weights_only" not in msg and "\n" not in msg and info.value.__cause__ is None
    assert "this must never run" not in capfd.readouterr().out


def test_a_plain_pickle_is_one_sentence_without_torch_warnings(tmp_path, recwarn):
    import pickle

    (tmp_path / "plain.pkl").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(CheckpointReadError, match="is not a PyTorch checkpoint; expected"):
        load_backbone(str(tmp_path / "plain.pkl"))
    assert not [w for w in recwarn if "pickle protocol" in str(w.message)]


@pytest.mark.parametrize("cut", ["empty", "half"])
def test_a_truncated_checkpoint_says_so(saved, tmp_path, cut):
    raw = (saved / "backbone.pt").read_bytes()
    (tmp_path / "t.pt").write_bytes(b"" if cut == "empty" else raw[: len(raw) // 2])
    with pytest.raises(CheckpointReadError, match="could not be read as a PyTorch checkpoint"):
        load_backbone(str(tmp_path / "t.pt"))


def test_non_finite_backbone_weights_are_refused(saved, tmp_path):
    ckpt = torch.load(saved / "backbone.pt", weights_only=True)
    ckpt["state_dict"]["decoder.conv1.conv.weight"].view(-1)[3] = float("nan")
    torch.save(ckpt, tmp_path / "nan.pt")
    with pytest.raises(CheckpointLayoutError, match=r"hold NaN or ∞ values \('conv1.conv.weight'"):
        load_backbone(str(tmp_path / "nan.pt"))


# -- bundle files -----------------------------------------------------------------------------
@pytest.mark.parametrize("damage, message", [
    (lambda raw: raw[: len(raw) - 1000], "corrupted or truncated"),
    (lambda raw: raw[:100], "corrupted or truncated"),
    (lambda raw: b"definitely not safetensors", "corrupted or truncated"),
])
def test_damaged_safetensors_is_a_bundle_error(saved, tmp_path, damage, message):
    bundle = _copy(saved, tmp_path)
    weights = bundle / "model.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(BundleError, match=message) as info:
        LReOrg.from_pretrained(bundle)
    assert str(weights) in str(info.value)


@pytest.mark.parametrize("text, message", [("{not json", "is not valid JSON"),
                                           ("[1, 2]", "must hold a JSON object")])
def test_config_that_is_not_a_json_object_names_the_file(saved, tmp_path, text, message):
    bundle = _copy(saved, tmp_path)
    (bundle / "config.json").write_text(text)
    with pytest.raises(BundleError, match=message) as info:
        LReOrg.from_pretrained(bundle)
    assert str(bundle / "config.json") in str(info.value)


@pytest.mark.parametrize("changes, message", [
    ({"rank_window": [5, 99]}, r"rank_window b = 99 is out of range \(5..8\)"),
    ({"rank_window": [0, 3]}, r"rank_window a = 0 is out of range"),
    ({"num_members": 10**9}, "num_members = 1000000000 is out of range"),
    ({"num_groups": 7.5}, "num_groups must be an integer"),
    ({"cdfnet.num_blocks": 10**6}, r"cdfnet.num_blocks = 1000000 is out of range \(1..64\)"),
    ({"cdfnet.latent_dim": -3}, "cdfnet.latent_dim = -3 is out of range"),
    ({"cdfnet.clamp": 0}, "cdfnet.clamp must be a number in"),
    ({"num_members": 900_000, "cdfnet.latent_dim": 4096, "cdfnet.num_rows": 64},
     "GiB; refusing"),
    ({"epsilon": -1}, "epsilon must be >= 0"),
    ({"keywords": ["identity", "nose"]}, "unknown keyword 'nose'"),
])
def test_config_values_out_of_range_fail_before_building(saved, tmp_path, monkeypatch,
                                                        changes, message):
    bundle = _copy(saved, tmp_path)
    _edit_config(bundle, **changes)
    built = []
    monkeypatch.setattr(LReOrg, "__init__", lambda self, *a, **k: built.append(1))
    with pytest.raises(BundleError, match=message):
        LReOrg.from_pretrained(bundle)
    assert built == []          # refused before any model (meta or real) was constructed


def test_config_shapes_that_disagree_with_the_weights_are_named(saved, tmp_path):
    bundle = _copy(saved, tmp_path)
    _edit_config(bundle, **{"cdfnet.num_rows": 6})
    with pytest.raises(BundleError, match="config.json and model.safetensors do not match"):
        LReOrg.from_pretrained(bundle)


def test_non_finite_bundle_weights_are_refused(saved, tmp_path):
    from safetensors.torch import load_file, save_file

    bundle = _copy(saved, tmp_path)
    tensors = load_file(bundle / "model.safetensors")
    tensors["identity_anonymizer.members"].view(-1)[0] = float("inf")
    save_file(tensors, bundle / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(BundleError, match="non-finite values .* identity_anonymizer.members"):
        LReOrg.from_pretrained(bundle)


def _tamper(saved, tmp_path, change):
    from safetensors.torch import load_file, save_file

    bundle = _copy(saved, tmp_path)
    tensors = load_file(bundle / "model.safetensors")
    change(tensors)
    save_file(tensors, bundle / "model.safetensors", metadata={"format": "pt"})
    return bundle


@pytest.mark.parametrize("name, dtype, kind", [
    ("cdfnet.condition_blocks.0.phi1.fc_x.weight", torch.int8, "must be a float"),
    ("identity_anonymizer.member_group", torch.float32, "must be an integer"),
    ("identity_anonymizer.fitted", torch.uint8, "must be a bool"),
])
def test_tensors_of_the_wrong_dtype_are_named(saved, tmp_path, name, dtype, kind):
    """int8 weights used to load as zeros, float indices as casts: each is refused by name."""
    bundle = _tamper(saved, tmp_path, lambda t: t.__setitem__(name, t[name].to(dtype)))
    with pytest.raises(BundleError, match=f"wrong dtype: {name} is .* in the weights but {kind}"):
        LReOrg.from_pretrained(bundle)


def test_group_indices_out_of_range_are_refused(saved, tmp_path):
    """A member_group of 99 used to make every draw return one member."""
    def out_of_range(t):
        t["identity_anonymizer.member_group"][3] = 99

    bundle = _tamper(saved, tmp_path, out_of_range)
    with pytest.raises(BundleError, match=r"identity_anonymizer.member_group holds 1 group "
                                          r"index\(es\) outside 0..7 \(e.g. 99\)"):
        LReOrg.from_pretrained(bundle)

    def one_group_empty(t):
        groups = t["identity_anonymizer.member_group"]
        groups[groups == 5] = 4

    bundle = _tamper(saved, tmp_path / "empty", one_group_empty)
    with pytest.raises(BundleError, match="leaves 1 of 8 group.s. without members .e.g. group 5"):
        LReOrg.from_pretrained(bundle)


def test_non_finite_codes_are_refused(tiny_bundle):
    codes = torch.zeros(2, 4, 16)
    codes[1, 2, 3] = float("nan")
    with pytest.raises(ValueError, match="codes contain NaN"):
        tiny_bundle.reorganize(codes)


# -- missing bundles and an unreachable Hub ---------------------------------------------------
@pytest.fixture
def unreachable_hub(monkeypatch):
    """Online mode, but the Hub endpoint refuses connections (a closed local port)."""
    import socket

    from huggingface_hub import constants

    from lreorg_hub import reachability

    with socket.socket() as s:           # a port that was free a moment ago: nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(reachability, "_answers", {})
    return port


@pytest.mark.parametrize("name", ["BUNDLE", "someone/lreorg-ffhq"])
def test_placeholder_bundle_says_none_is_published_after_one_short_try(unreachable_hub, name,
                                                                       tmp_path):
    start = time.perf_counter()
    with pytest.raises(BundleError) as info:
        LReOrg.from_pretrained(name, cache_dir=tmp_path)
    elapsed = time.perf_counter() - start
    msg = str(info.value)
    assert "No trained LReOrg bundle is published yet" in msg and "lreorg demo-bundle" in msg
    assert elapsed < 3.0, elapsed        # huggingface_hub alone retries for ~23 s


def test_unreachable_hub_backbone_is_one_short_try(unreachable_hub, tmp_path, monkeypatch):
    from lreorg_hub.backbones import BackboneNotAvailableError
    from lreorg_hub.backbones.sources import ENV_PATH

    monkeypatch.delenv(ENV_PATH, raising=False)
    start = time.perf_counter()
    with pytest.raises(BackboneNotAvailableError, match="hf download"):
        load_backbone(None, cache_dir=tmp_path)
    assert time.perf_counter() - start < 3.0


def test_missing_local_bundle_says_what_to_do(tmp_path):
    with pytest.raises(BundleError, match="is not a folder with an LReOrg bundle.*demo-bundle"):
        LReOrg.from_pretrained(tmp_path / "nowhere")


def test_cli_placeholder_bundle_is_one_line_exit_2(unreachable_hub, tmp_path, capsys):
    from lreorg_hub.cli import main

    assert main(["info", "BUNDLE"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lreorg: error: ") and err.count("\n") == 1
    assert "No trained LReOrg bundle is published yet" in err
