"""Publishing: the dry-run folder is exactly what would be uploaded, the card's metadata parses
with huggingface_hub's own card classes, and pushing offline fails with a clear message."""

from __future__ import annotations

import json

import pytest
import torch
from huggingface_hub import ModelCard, ModelCardData

from lreorg_hub.bundle import publish as hub
from lreorg_hub.cli import main
from lreorg_hub.evaluation import EvalConfig
from lreorg_hub.bundle import LReOrg

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _row(label, psr, detection, apr, fid):
    return {"method": label, "label": label, "epsilon": None, "faces": 3, "psr": psr,
            "detection": detection, "apr": apr, "apr_per_keyword": {}, "fid": fid,
            "similarity": {"count": 3}}


@pytest.fixture
def results_json(tmp_path):
    results = {"config": EvalConfig(judge="facenet casia-webface").to_dict(),
               "photos": {"evaluated": 3, "no_face": [], "failed": []}, "faces": 3,
               "main": ["original", "lreorg", "blur"], "sweep": {},
               "methods": {"original": _row("original (input)", 0.0, 1.0, 1.0, 0.0),
                           "lreorg": _row("lreorg", 2 / 3, 1.0, 0.75, 12.5),
                           "blur": _row("blur", 1 / 3, 2 / 3, 0.5, None)},
               "recovery": {"identity": 0.5, "gender": 1.0},
               "preserved_attributes": ["gender", "age"]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return path


@pytest.fixture
def bundle_dir(tiny_bundle, tmp_path):
    folder = tmp_path / "bundle"
    tiny_bundle.save_pretrained(folder)
    (folder / "training.json").write_text(json.dumps(
        {"steps": 120000, "roundtrip_error": 3.2e-6, "roundtrip_warn": 1e-4}))
    return folder


def test_dry_run_writes_exactly_the_upload_folder(bundle_dir, results_json, tmp_path, capsys,
                                                  tiny_bundle):
    out = tmp_path / "upload"
    rc = main(["push", str(bundle_dir), "someone/lreorg-tiny", "--dry-run", "--out", str(out),
               "--eval", str(results_json), "--backbone-revision", COMMIT])
    assert rc == 0
    assert "dry run" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == sorted(hub.UPLOAD_FILES)
    # training.json stays local: its values are in the card
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"]["revision"] == COMMIT
    loaded = LReOrg.from_pretrained(out)
    for name, tensor in tiny_bundle.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor, rtol=0, atol=0)

    card = ModelCard.load(out / "README.md")
    assert isinstance(card.data, ModelCardData)
    data = card.data.to_dict()
    assert data["license"] == "mit" and data["library_name"] == "lreorg-hub"
    assert data["pipeline_tag"] == "image-to-image"
    assert {"face-anonymization", "privacy", "differential-privacy"} <= set(data["tags"])
    assert data["base_model"] == config["backbone"]["repo_id"] == "AIRI-Institute/HairFastGAN"
    assert data["base_model_revision"] == COMMIT
    text = card.text
    assert 'LReOrg.from_pretrained("someone/lreorg-tiny")' in text
    assert "| lreorg | 66.7 | 100.0 | 75.0 | 12.50 |" in text
    assert "| blur | 33.3 | 66.7 | 50.0 | – |" in text
    assert "| Rec rate (%) | 50.0 | 100.0 |" in text
    assert "Judge: facenet casia-webface (match when cosine similarity ≥ 0.4)" in text
    assert "round-trip error" in text and "**3.2e-06**" in text and "above it" not in text
    assert "k·ε in total" in text and "Secret randomness" in text and "Scope." in text
    assert "Out of scope (misuse)" in text and "## Limitations" in text
    assert "@inproceedings{lreorg2024" in text
    assert "[More Information Needed]" not in text and "{{" not in text


def test_card_without_evaluation_or_training_says_so(tiny_bundle):
    tiny_bundle.backbone["revision"] = COMMIT
    text = hub.render_card(tiny_bundle).text
    assert "Not evaluated yet" in text and "## Training" not in text
    high = hub.render_card(tiny_bundle, training={"roundtrip_error": 0.2,
                                                  "roundtrip_warn": 1e-4}).text
    assert "**0.2**" in high and "not exactly invertible in float32" in high


def test_unpinned_backbone_is_refused(bundle_dir, tmp_path, capsys):
    rc = main(["push", str(bundle_dir), "someone/x", "--dry-run", "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "backbone revision is 'main', not a commit" in err and "--backbone-revision" in err


def test_dry_run_refuses_a_folder_that_is_not_empty(bundle_dir, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="not an empty folder"):
        hub.build_upload_folder(bundle_dir, out, backbone_revision=COMMIT)
    assert (out / "keep.txt").read_text() == "mine"


def test_push_offline_is_a_clear_error(bundle_dir, capsys):
    with pytest.raises(hub.HubUnavailableError, match="offline mode is on .*--dry-run"):
        hub.push(bundle_dir, "someone/x", backbone_revision=COMMIT)
    assert main(["push", str(bundle_dir), "someone/x", "--backbone-revision", COMMIT]) == 2
    assert "cannot push to someone/x" in capsys.readouterr().err


def test_bad_side_files_are_clear_errors(bundle_dir, tmp_path):
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
    with pytest.raises(ValueError, match="'local/tiny', a local checkpoint, not a Hub repo"):
        hub.build_upload_folder(tmp_path / "local", tmp_path / "out", backbone_revision=COMMIT)
    assert not (tmp_path / "out").exists()
