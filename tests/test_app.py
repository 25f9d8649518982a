"""The app's start-up (flags and environment variables decide the weights once, shown in a
banner) and its handlers, in process. The served app is tested in test_app_live.py."""

import importlib

import gradio as gr
import pytest

from conftest import save_as_e4e_checkpoint

BACKBONE_VARS = ("LREORG_BACKBONE_PATH", "LREORG_BACKBONE_REPO", "LREORG_BACKBONE_FILE",
                 "LREORG_BACKBONE_REVISION", "LREORG_BUNDLE", "LREORG_DEMO",
                 "LREORG_IDENTITY_WEIGHTS")


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    for var in BACKBONE_VARS:
        monkeypatch.delenv(var, raising=False)
    return importlib.import_module("app")


@pytest.fixture(scope="module")
def weights_on_disk(tmp_path_factory, photo_bundle, tiny_backbone):
    root = tmp_path_factory.mktemp("weights")
    photo_bundle.save_pretrained(root / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, root / "tiny_e4e.pt")
    return root / "bundle", root / "tiny_e4e.pt"


@pytest.fixture(scope="module")
def demo_runtime():
    from lreorg_hub import serving as sv

    return sv.load_runtime(sv.ServingConfig(demo=True, identity_weights=None))


def _markdown(demo: gr.Blocks) -> str:
    return "\n".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))


def _component(demo: gr.Blocks, cls, label: str):
    (found,) = [b for b in demo.blocks.values() if isinstance(b, cls) and b.label == label]
    return found


def test_flags_win_over_environment_variables(app):
    env = {"LREORG_DEMO": "1", "LREORG_BUNDLE": "org/from-env", "LREORG_CACHE_SECONDS": "7"}
    args = app.parse_args([], env)
    assert args.demo and args.bundle == "org/from-env" and args.cache_seconds == 7
    args = app.parse_args(["--bundle", "org/from-flag", "--no-identity"], env)
    assert args.bundle == "org/from-flag" and app.serving_config(args).identity_weights is None
    assert app.parse_args([], {}).demo is False


def test_nothing_downloadable_serves_the_classical_baselines(app, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached facenet file
    demo, _ = app.startup([], environ={})
    runtime = app.RUNTIME
    assert runtime.mode == "baselines" and runtime.methods == ["blur", "pixelate", "mask"]
    text = _markdown(demo)
    assert "Classical baselines only" in text
    assert "No LReOrg bundle given" in text and "--bundle" in text
    assert "--backbone" in text and "LREORG_BACKBONE_PATH" in text and "hf download" in text
    assert "Identity similarity is omitted" in text and "--identity-weights" in text
    anonymize = _component(demo, gr.CheckboxGroup, "Anonymize")
    assert anonymize.interactive is False and "needs a trained LReOrg bundle" in anonymize.info


def test_bundle_and_backbone_from_flags_run_lreorg(app, weights_on_disk, astronaut, tmp_path):
    bundle, backbone = weights_on_disk
    demo, _ = app.startup(["--bundle", str(bundle), "--backbone", str(backbone),
                           "--no-identity"], environ={})
    assert app.RUNTIME.mode == "lreorg" and app.RUNTIME.methods[0] == "lreorg"
    assert "LReOrg** runs with the loaded bundle and backbone" in _markdown(demo)
    photo = tmp_path / "astronaut.png"
    astronaut.save(photo)
    (before, after), gallery, words, record = app.anonymize_photo(
        {"path": str(photo)}, "lreorg", ["identity"], ["gender"], 2.0, "strict", None, None,
        "11", 2, None)
    assert before.size == after.size == astronaut.size
    assert [c.split(":")[0] for _, c in gallery] == [
        "anonymized (identity replaced)", "recovered (gender kept), sample 1", "sample 2"]
    # identity network off: the captions say only what was measured
    assert all("identity similarity" not in c and "face detected" in c for _, c in gallery)
    assert record["mechanism"] == "strict" and record["seed"] == 11
    assert record["epsilon_total"] == pytest.approx(4.0)


def test_backbone_from_environment_without_bundle(app, weights_on_disk, monkeypatch):
    _, backbone = weights_on_disk
    monkeypatch.setenv("LREORG_BACKBONE_PATH", str(backbone))
    demo, _ = app.startup(["--no-identity"], environ={"LREORG_BACKBONE_PATH": str(backbone)})
    runtime = app.RUNTIME
    assert runtime.pipeline.generator is not None and runtime.pipeline.model is None
    assert runtime.mode == "style-mix"
    assert runtime.methods == ["style-mix", "blur", "pixelate", "mask"]
    text = _markdown(demo)
    assert "style-mix (training-free baseline)** runs" in text
    assert "No LReOrg bundle given" in text and "backbone did not load" not in text
    recover = _component(demo, gr.CheckboxGroup, "Recover (keep from your photo)")
    assert recover.interactive is False and "recovers nothing (no CDFNet)" in recover.info


def test_a_broken_bundle_is_named_in_the_banner(app, tmp_path, weights_on_disk):
    _, backbone = weights_on_disk
    (tmp_path / "not_a_bundle").mkdir()
    demo, _ = app.startup(["--bundle", str(tmp_path / "not_a_bundle"), "--backbone",
                           str(backbone), "--no-identity"], environ={})
    assert app.RUNTIME.mode != "lreorg"
    assert "did not load" in _markdown(demo) and "config.json is missing" in _markdown(demo)


def test_unexpected_failures_become_one_generic_sentence(app, demo_runtime, monkeypatch,
                                                          astronaut, tmp_path):
    app.build_app(demo_runtime)
    photo = tmp_path / "a.png"
    astronaut.save(photo)

    def broken(photo, request):
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr(app, "_protect_on_device", broken)
    with pytest.raises(gr.Error) as err:
        app.anonymize_photo({"path": str(photo)}, "lreorg", ["identity"], [], 1.0, "window",
                            None, None, "random", 1, None)
    assert "Something went wrong" in err.value.message
    assert "/srv" not in err.value.message


def test_an_upload_purged_while_queued_is_explained(app, demo_runtime, tmp_path):
    app.build_app(demo_runtime)
    with pytest.raises(gr.Error, match="deleted from the server before its turn came"):
        app.anonymize_photo({"path": str(tmp_path / "gone.png")}, "lreorg", ["identity"], [],
                            1.0, "window", None, None, "random", 1, None)
