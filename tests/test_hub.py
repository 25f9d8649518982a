"""Publishing: the dry-run folder is exactly what would be uploaded, the card's metadata parses
with huggingface_hub's own card classes, and pushing offline fails with a clear message."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard, ModelCardData

from lreorg_hub.bundle import publish as hub
from lreorg_hub.cli import main
from lreorg_hub.bundle import LReOrg

from publish_setup import COMMIT, make_bundle, results_of, write_weights


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """(bundle folder, weights folder): trained, fitted, with its records (module-wide)."""
    folder = tmp_path_factory.mktemp("made")
    write_weights(folder)
    return make_bundle(folder), folder


@pytest.fixture
def results_json(made, tmp_path):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results_of(*made)))
    return path


def push_args(made, out, *extra):
    bundle, folder = made
    return ["push", str(bundle), "someone/lreorg-tiny", "--dry-run", "--out", str(out),
            "--backbone", str(folder / "backbone.pt"), *extra]


def test_dry_run_writes_exactly_the_upload_folder(made, results_json, tmp_path, capsys):
    bundle, _ = made
    out = tmp_path / "upload"
    rc = main(push_args(made, out, "--eval", str(results_json), "--backbone-revision", COMMIT))
    assert rc == 0, capsys.readouterr().err
    assert "dry run" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(hub.UPLOAD_FILES)
    # training.json stays local: its values are in the card
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"]["revision"] == COMMIT and config["backbone"]["size"] == 64
    assert config["provenance"]["training"]["identity_encoder"]["weights"].endswith("facenet.pt")
    loaded = LReOrg.from_pretrained(out)
    original = LReOrg.from_pretrained(bundle)
    for name, tensor in original.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)

    card = ModelCard.load(out / "README.md")
    assert isinstance(card.data, ModelCardData)
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["library_name"] == "lreorg-hub"
    assert data["pipeline_tag"] == "image-to-image"
    assert {"face-anonymization", "privacy", "differential-privacy"} <= set(data["tags"])
    assert data["base_model"] == config["backbone"]["repo_id"] == "AIRI-Institute/HairFastGAN"
    assert data["base_model_revision"] == COMMIT and data["base_model_relation"] == "adapter"
    # model-index, as the Hub reads it: huggingface_hub parses it back into EvalResults
    found = {(r.metric_type, r.metric_value) for r in card.data.eval_results}
    assert found == {("psr", 66.67), ("detection_rate", 100.0), ("apr", 75.0), ("fid", 12.5)}
    first = card.data.eval_results[0]
    assert (first.task_type, first.dataset_name, first.dataset_split) == \
        ("image-to-image", "CelebA-HQ", "test")
    assert data["model-index"][0]["name"] == "lreorg-tiny"
    text = card.text
    assert 'LReOrg.from_pretrained("someone/lreorg-tiny")' in text
    assert "| lreorg | 66.7 | 100.0 | 75.0 | 12.50 |" in text
    assert "| blur | 33.3 | 66.7 | 50.0 | – |" in text
    assert "| Rec rate (%) | 50.0 | 100.0 |" in text
    assert "Judge: facenet casia-webface (match when cosine similarity ≥ 0.4)" in text
    assert "fewer than 2,000" in text  # the FID warning reaches the card
    assert "round-trip error" in text and "above it" not in text
    assert "Nvidia Source Code License-NC" in text and "CC BY-NC-SA 4.0" in text
    assert "Trained on: FFHQ" in text and "base_model_relation: adapter" in text
    assert "**Not fitted: gender.**" in text  # unfitted anonymizers are named
    assert "(a local copy), sha256" in text and "seed 5" in text
    assert "k·ε in total" in text and "Secret randomness" in text and "Scope." in text
    assert "Out of scope (misuse)" in text and "## Limitations" in text
    assert "@inproceedings{lreorg2024" in text
    assert "[More Information Needed]" not in text and "{{" not in text


def test_push_refuses_with_one_line_per_reason(made, tmp_path, capsys):
    """Random scorers, a backbone that is not the recorded one, results of another bundle
    and an unpinned revision: each is one line, all are given at once, nothing is written."""
    bundle, folder = made
    other = tmp_path / "other"
    other.mkdir()
    write_weights(other)
    random_bundle = make_bundle(other, random_scorers=True)
    results = results_of(bundle, folder)  # an evaluation of the first bundle
    (tmp_path / "r.json").write_text(json.dumps(results))
    from conftest import build_tiny_backbone, save_as_e4e_checkpoint

    save_as_e4e_checkpoint(build_tiny_backbone(seed=1), tmp_path / "not_it.pt")
    capsys.readouterr()
    rc = main(["push", str(random_bundle), "someone/x", "--dry-run", "--out",
               str(tmp_path / "o"), "--backbone", str(tmp_path / "not_it.pt"),
               "--eval", str(tmp_path / "r.json")])
    assert rc == 2 and not (tmp_path / "o").exists()
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"lreorg push: refusing to publish {random_bundle}:"
    problems = [ln[4:] for ln in lines[1:]]
    assert all(ln.startswith("  - ") for ln in lines[1:]) and len(problems) == 5, lines
    assert problems[0] == ("the bundle's backbone revision is 'main', not a commit: pass the "
                           "40-character commit of AIRI-Institute/HairFastGAN with "
                           "--backbone-revision")
    assert problems[1] == ("training's identity encoder had random weights (pretrained: "
                           "null); train with the published weights")
    assert problems[2] == ("training's CLIP had random weights (pretrained: null); train "
                           "with the published weights")
    assert problems[3].startswith("the backbone differs from the recorded one: "
                                  "AIRI-Institute/HairFastGAN/pretrained_models/encoder4editing"
                                  "/e4e_ffhq_encode.pt@main has sha256 ")
    assert f"(local file {other / 'backbone.pt'})" in problems[3]
    assert problems[4].startswith("the evaluation is of another bundle: results.json records "
                                  "model.safetensors sha256 ")


def test_push_refuses_a_backbone_of_another_resolution_and_unrecorded_bundles(
        made, tmp_path, capsys, tiny_bundle):
    bundle, folder = made
    lied = tmp_path / "lied"
    import shutil

    shutil.copytree(bundle, lied)
    config = json.loads((lied / "config.json").read_text())
    config["backbone"]["size"] = 1024  # what the old trainer wrote for a 64 px backbone
    (lied / "config.json").write_text(json.dumps(config))
    assert main(push_args((lied, folder), tmp_path / "o", "--backbone-revision", COMMIT)) == 2
    err = capsys.readouterr().err
    assert ("  - the card names a 1024 px backbone but training used a 64 px generator "
            f"(local file {folder / 'backbone.pt'})") in err.splitlines()
    # a bundle without records (made by hand) and an evaluation without a bundle record
    tiny_bundle.backbone["revision"] = COMMIT
    tiny_bundle.save_pretrained(tmp_path / "bare")
    results = results_of(bundle, folder)
    del results["config"]["provenance"]["bundle"]
    with pytest.raises(hub.PublishRefused) as refused:
        hub.build_upload_folder(tmp_path / "bare", tmp_path / "o2", eval_results=results)
    assert refused.value.problems == [
        "the bundle records no training provenance (config.json has no provenance.training): "
        "train it with `lreorg train`",
        "the anonymizers are fitted but the bundle has no provenance.fitting: fit them with "
        "`lreorg fit-anonymizers`",
        "the evaluation records no bundle sha256 (results.json of an older `lreorg eval`, or "
        "of the image baselines only): evaluate this bundle"]


def test_a_bundle_trained_on_a_local_file_names_it(tmp_path):
    """Trained on a local file without saying which Hub file it copies: the bundle names
    the local file and its real resolution (not the 1024 px Hub default at main)."""
    from lreorg_hub.training.build import bundle_backbone
    from lreorg_hub.training.config import TrainingConfig

    used = {"source": "local", "path": "/x/demo/backbone.pt", "size": 128}
    assert bundle_backbone(TrainingConfig(), used) == {
        "repo_id": "local/backbone.pt", "filename": "backbone.pt", "revision": None,
        "format": "e4e", "size": 128}
    hub_used = {"source": "hub", "repo_id": "a/b", "filename": "f.pt", "revision": COMMIT,
                "format": "e4e", "size": 1024}
    assert bundle_backbone(TrainingConfig(), hub_used)["revision"] == COMMIT


def test_card_without_evaluation_or_training_says_so(tiny_bundle):
    tiny_bundle.backbone["revision"] = COMMIT
    text = hub.render_card(tiny_bundle).text
    assert "Not evaluated yet" in text and "## Training" not in text
    high = hub.render_card(tiny_bundle, training={"roundtrip_error": 0.2,
                                                  "roundtrip_warn": 1e-4}).text
    assert "**0.2**" in high and "not exactly invertible in float32" in high


def test_dry_run_refuses_a_folder_that_is_not_empty(made, tmp_path):
    bundle_dir = made[0]
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        hub.build_upload_folder(bundle_dir, out, backbone_revision=COMMIT)
    assert (out / "keep.txt").read_text() == "mine"


def test_push_offline_is_a_clear_error(made, capsys):
    bundle_dir = made[0]
    with pytest.raises(hub.HubUnavailableError, match="offline mode is on .*--dry-run"):
        hub.push(bundle_dir, "someone/x", backbone_revision=COMMIT)
    assert main(["push", str(bundle_dir), "someone/x", "--backbone-revision", COMMIT]) == 2
    assert "cannot push to someone/x" in capsys.readouterr().err


def test_bad_side_files_are_clear_errors(tmp_path):
    bundle_dir = tmp_path
    (bundle_dir / "training.json").write_text(json.dumps({"roundtrip_error": "small"}))
    with pytest.raises(ValueError, match="roundtrip_error must be a non-negative number"):
        hub.read_training_metadata(bundle_dir)
    (tmp_path / "r.json").write_text("{}")
    with pytest.raises(ValueError, match="not an lreorg eval results.json"):
        hub.read_eval_results(tmp_path / "r.json")
    with pytest.raises(FileNotFoundError, match="lreorg eval writes"):
        hub.read_eval_results(tmp_path / "missing.json")


def test_a_bundle_on_a_local_backbone_is_not_published(photo_bundle, tmp_path):
    photo_bundle.save_pretrained(tmp_path / "local")
    with pytest.raises(hub.PublishRefused, match="'local/tiny', a local checkpoint, not a Hub "):
        hub.build_upload_folder(tmp_path / "local", tmp_path / "out", backbone_revision=COMMIT)
    assert not (tmp_path / "out").exists()
