"""The demo bundle (random weights, real classes and formats) and the settings that reach the
entry points: `lreorg demo-bundle`, LREORG_BACKBONE_* through from_pretrained and the CLI."""

import json

import numpy as np
import pytest
import torch

from lreorg_hub.backbones.sources import ENV_FILE, ENV_PATH, ENV_REPO, ENV_REVISION
from lreorg_hub.cli import main


@pytest.fixture
def clean_env(monkeypatch):
    for var in (ENV_REPO, ENV_FILE, ENV_REVISION, ENV_PATH):
        monkeypatch.delenv(var, raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("demo")
    assert main(["demo-bundle", str(directory)]) == 0
    return directory


def test_demo_bundle_writes_real_formats(demo_dir, capsys):
    from lreorg_hub.backbones import load_backbone
    from lreorg_hub.demo import DEMO_BACKBONE
    from lreorg_hub.bundle import LReOrg

    assert sorted(p.name for p in (demo_dir / "bundle").iterdir()) == [
        "README.md", "config.json", "model.safetensors"]
    model = LReOrg.from_pretrained(demo_dir / "bundle")          # strict load
    assert model.identity_anonymizer.fitted and all(
        model.attribute_anonymizer(k).fitted for k in model.keywords[1:])
    backbone = load_backbone(str(demo_dir / "backbone.pt"))      # weights_only, format detected
    assert backbone.generator.size == DEMO_BACKBONE["size"] and backbone.encoder is not None
    assert (model.cdfnet.num_rows, model.cdfnet.latent_dim) == (
        backbone.n_latent, backbone.generator.style_dim)
    from lreorg_hub.bundle import StyleMixAnonymizer

    style_mix = StyleMixAnonymizer.from_pretrained(demo_dir / "style_mix")  # strict load
    assert style_mix.fitted and (style_mix.num_rows, style_mix.style_dim) == (
        backbone.n_latent, backbone.generator.style_dim)


def test_demo_bundle_refuses_to_overwrite(demo_dir, capsys):
    before = (demo_dir / "bundle" / "model.safetensors").read_bytes()
    assert main(["demo-bundle", str(demo_dir)]) == 2
    assert "already exist" in capsys.readouterr().err
    assert (demo_dir / "bundle" / "model.safetensors").read_bytes() == before


def test_demo_builders_are_seeded_and_leave_the_global_rng_alone():
    from lreorg_hub.demo import build_demo_backbone

    state = torch.random.get_rng_state()
    a, b, c = (build_demo_backbone(s, size=32, latent_samples=16) for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    wa, wb, wc = (x.generator.conv1.conv.weight for x in (a, b, c))
    assert torch.equal(wa, wb) and not torch.equal(wa, wc)


def test_backbone_path_env_reaches_from_pretrained(demo_dir, clean_env):
    from lreorg_hub.pipeline import LReOrgPipeline

    # The demo bundle's config names a Hub repo that does not exist; the variable wins.
    clean_env.setenv(ENV_PATH, str(demo_dir / "backbone.pt"))
    pipe = LReOrgPipeline.from_pretrained(demo_dir / "bundle", device="cpu")
    assert pipe.generator.size == 128 and pipe.encoder.input_size == 128


def test_backbone_repo_env_reaches_from_pretrained(demo_dir, clean_env):
    from lreorg_hub.backbones import BackboneNotAvailableError
    from lreorg_hub.pipeline import LReOrgPipeline

    clean_env.setenv(ENV_REPO, "someone/mirror-of-e4e")
    clean_env.setenv(ENV_FILE, "weights/e4e.pt")
    with pytest.raises(BackboneNotAvailableError) as info:
        LReOrgPipeline.from_pretrained(demo_dir / "bundle", device="cpu")
    assert "someone/mirror-of-e4e" in str(info.value) and "weights/e4e.pt" in str(info.value)


def test_cli_runs_offline_on_the_demo_with_the_env_backbone(demo_dir, clean_env, tmp_path,
                                                            astronaut):
    from PIL import Image

    astronaut.save(tmp_path / "a.jpg")
    clean_env.setenv(ENV_PATH, str(demo_dir / "backbone.pt"))
    out = tmp_path / "out"
    assert main(["anonymize", str(tmp_path / "a.jpg"), "--out", str(out), "--bundle",
                 str(demo_dir / "bundle"), "--device", "cpu", "--quiet"]) == 0
    result = Image.open(out / "a.png")
    assert result.size == astronaut.size
    changed = np.abs(np.asarray(result, dtype=np.int16) - np.asarray(astronaut, dtype=np.int16))
    assert changed.sum() > 0                                     # the face region was replaced
    record = json.loads((out / "a.json").read_text())["record"]
    assert record["seed"] is None and record["method"] == "lreorg"


def test_demo_bundle_into_a_file_or_unwritable_place_is_one_line(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["demo-bundle", str(tmp_path / "file")]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    # Below a regular file nothing can be created, whoever runs the test (root included).
    assert main(["demo-bundle", str(tmp_path / "file" / "demo")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lreorg: error: could not write the demo") and err.count("\n") == 1


def test_cli_runs_style_mix_offline_on_the_demo(demo_dir, clean_env, tmp_path, astronaut):
    """The training-free baseline with only the backbone (from the environment) and groups."""
    astronaut.save(tmp_path / "a.jpg")
    clean_env.setenv(ENV_PATH, str(demo_dir / "backbone.pt"))
    out = tmp_path / "out"
    assert main(["anonymize", str(tmp_path / "a.jpg"), "--out", str(out), "--method",
                 "style-mix", "--style-mix", str(demo_dir / "style_mix"), "--device", "cpu",
                 "--quiet"]) == 0
    record = json.loads((out / "a.json").read_text())["record"]
    assert record["method"] == "style-mix" and record["seed"] is None
    assert record["method_label"] == "style-mix (training-free baseline)"
