"""Evaluation: the metric definitions on hand-built cases, and `Evaluator` on scikit-image photos
with small models (tiny backbone and bundle, random-weight InceptionResnetV1 judge, tiny CLIP)."""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from lreorg_hub.scorers import IdentityEncoder, KeywordEncoder
from lreorg_hub.evaluation import (ClipImageFeatures, EvalConfig, Evaluator, markdown_tables,
                                   metrics)
from lreorg_hub.evaluation.features import InceptionFeatures
from lreorg_hub.scorers import WeightsUnavailableError
from lreorg_hub.image.faces import box_iou, still_detected

TINY_CLIP = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=32, layers=2, width=64, patch_size=8, head_width=32),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
)


# --- metric definitions ---------------------------------------------------------------------


def test_psr_is_the_share_below_the_threshold():
    assert metrics.protection_success_rate([0.9, 0.1, 0.5, 0.39], threshold=0.4) == 0.5
    assert metrics.protection_success_rate([0.4], threshold=0.4) == 0.0  # at threshold: a match
    assert metrics.protection_success_rate([], threshold=0.4) is None


def test_recognizer_that_sees_through_the_method_gives_psr_zero():
    g = torch.Generator().manual_seed(0)
    faces = torch.randn(6, 512, generator=g)
    # the "protected" embeddings are the originals up to scale and tiny noise: seen through
    seen = 3.0 * faces + 1e-3 * torch.randn(6, 512, generator=g)
    sims = metrics.identity_similarity(faces, seen)
    assert metrics.protection_success_rate(sims, threshold=0.4) == 0.0
    # orthogonal embeddings are never matched
    other = torch.linalg.qr(torch.randn(512, 6, generator=g))[0].T
    assert metrics.protection_success_rate(metrics.identity_similarity(other[:3], other[3:]),
                                           0.4) == 1.0


def test_detection_rate_and_box_matching():
    assert metrics.detection_rate([True, True, False, True]) == 0.75
    assert metrics.detection_rate([]) is None
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 15, 10]])[0, 0] == pytest.approx(50 / 150)
    iou = box_iou([[0, 0, 10, 10]], [[100, 100, 110, 110], [1, 1, 10, 10]])
    assert iou.shape == (1, 2) and iou[0, 0] == 0 and iou[0, 1] == pytest.approx(0.81)


def test_an_output_without_a_face_lowers_detection_by_its_share(eval_pipeline, small_astronaut):
    astronaut = small_astronaut
    detector = eval_pipeline.detector
    (face,) = detector.locate(astronaut)
    faceless = astronaut.copy()
    faceless.paste((128, 128, 128), [int(v) for v in face.box])  # the face painted over
    outputs = [astronaut, astronaut, faceless, astronaut]
    flags = [still_detected(detector, o, face.box, 0.3) for o in outputs]
    assert flags == [True, True, False, True]
    assert metrics.detection_rate(flags) == 0.75  # exactly one output in four lost


def test_apr_counts_face_keyword_pairs():
    before = {"gender": [0, 1, 1, 0], "age": [1, 1, 0, 0]}
    after = {"gender": [0, 1, 0, 0], "age": [0, 0, 0, 0]}
    apr, per = metrics.attribute_preservation_rate(before, after)
    assert per == {"gender": 0.75, "age": 0.5}
    assert apr == 5 / 8
    with pytest.raises(ValueError, match="gender: 4 input labels but 3 output"):
        metrics.attribute_preservation_rate(before, {"gender": [0, 1, 0], "age": [0] * 4})
    assert metrics.zero_shot_labels(torch.tensor([[0.2, 0.8], [0.6, 0.4]])) == [1, 0]


def test_recovery_rate():
    assert metrics.recovery_rate([True, False, True, True]) == 0.75
    assert metrics.recovery_rate([]) is None


def test_fid_matches_the_frechet_formula():
    # real: the four corners of [-1, 1]²: mean 0, sample covariance (4/3)·I
    real = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    fake = 2 * real + torch.tensor([3.0, 0.0], dtype=torch.float64)  # mean (3, 0), cov (16/3)·I
    # ‖μ1 − μ2‖² + tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) = 9 + 2·(4/3 + 16/3 − 2·8/3)
    assert metrics.frechet_distance(real, fake) == pytest.approx(9 + 8 / 3, rel=1e-6)
    assert metrics.frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    assert metrics.frechet_distance(real[:1], fake) is None


def test_similarity_summary():
    s = metrics.similarity_summary([0.1, 0.2, 0.3, 0.9])
    assert s["count"] == 4 and s["mean"] == pytest.approx(0.375)
    assert sum(s["histogram"]["counts"]) == 4 and len(s["histogram"]["edges"]) == 21
    assert s["quantiles"]["p50"] == pytest.approx(0.25)


def test_default_fid_network_offline_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="--fid-weights"):
        InceptionFeatures(weights_path=str(tmp_path / "missing.pth"))


def test_bad_config_is_refused():
    with pytest.raises(ValueError, match="identity is judged by PSR"):
        EvalConfig(attributes=["identity", "gender"])
    with pytest.raises(ValueError, match=r"epsilon must be >= 0 \(the privacy budget\), got -1"):
        EvalConfig(epsilons=[-1])
    with pytest.raises(ValueError, match="unknown keyword"):
        EvalConfig(recover=["beard"])


# --- the evaluator on photos -------------------------------------------------------------------


@pytest.fixture(scope="module")
def eval_pipeline(photo_bundle, tiny_backbone):
    """The tiny pipeline (bundle, backbone and style-mix groups) with a detector that skips the
    small pyramid scales (speed: the photos below are 256 px, the astronaut's face ~45 px)."""
    from lreorg_hub.image.faces import FaceDetector
    from lreorg_hub.pipeline import LReOrgPipeline
    from lreorg_hub.demo import build_demo_style_mix

    style_mix = build_demo_style_mix(tiny_backbone, seed=0, num_groups=8, num_members=64,
                                     fit_samples=512)
    return LReOrgPipeline(photo_bundle, tiny_backbone.encoder, tiny_backbone.generator,
                          tiny_backbone.latent_avg, device="cpu", style_mix=style_mix,
                          detector=FaceDetector(min_face_size=40, output_size=64))


@pytest.fixture(scope="module")
def small_astronaut(astronaut):
    return astronaut.resize((256, 256), Image.LANCZOS)


@pytest.fixture(scope="module")
def scorers():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        clip = KeywordEncoder(pretrained=None, model_cfg=TINY_CLIP)
        judge = IdentityEncoder(pretrained=None, image_size=96)
    return judge, clip


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    from skimage import data

    folder = tmp_path_factory.mktemp("photos")
    Image.fromarray(data.astronaut()).resize((256, 256), Image.LANCZOS).save(
        folder / "astronaut.png")
    Image.fromarray(data.coffee()).resize((256, 170)).save(folder / "sub_coffee.jpg")  # no face in it
    (folder / "notes.txt").write_text("not a photo")
    return folder


def _evaluator(pipeline, scorers, **config):
    judge, clip = scorers
    config = {"methods": ["lreorg", "style-mix", "mask"], "epsilons": [math.inf],
              "recovery_keywords": ["identity", "gender"], "seed": 7,
              "judge": "facenet (random weights)", **config}
    return Evaluator(pipeline, judge, clip, ClipImageFeatures(clip), EvalConfig(**config))


def test_evaluation_on_photos_writes_tables_json_and_plot(eval_pipeline, scorers, photos,
                                                          tmp_path):
    out = tmp_path / "eval"
    results = _evaluator(eval_pipeline, scorers).run(photos, out, progress=False)
    assert results["photos"]["evaluated"] == 1 and results["faces"] == 1
    assert results["photos"]["no_face"] == ["sub_coffee.jpg"]
    assert results["main"] == ["original", "lreorg", "style-mix", "mask"]
    assert results["sweep"] == {"lreorg": ["lreorg@eps=inf"], "style-mix": ["style-mix@eps=inf"]}
    rows = results["methods"]
    assert rows["style-mix"]["label"] == "style-mix (training-free baseline)"
    # output = input: a recognizer sees through it completely
    assert rows["original"]["psr"] == 0.0 and rows["original"]["detection"] == 1.0
    assert rows["original"]["similarity"]["mean"] == pytest.approx(1.0)
    assert rows["original"]["apr"] == 1.0 and rows["original"]["fid"] is None  # 1 face: no FID
    # the solid mask leaves no face where the face was
    assert rows["mask"]["detection"] == 0.0
    assert set(rows["lreorg"]["apr_per_keyword"]) == {"gender", "age", "expression", "makeup"}
    assert set(results["recovery"]) == {"identity", "gender"}
    saved = json.loads((out / "results.json").read_text())
    assert saved["methods"]["mask"]["detection"] == 0.0
    text = (out / "results.md").read_text()
    assert ("| Method | PSR (%) ↑ (facenet (random weights)) | Detection (%) ↑ | APR (%) ↑ | "
            "FID ↓ |") in text
    assert "| original (input) | 0.0 | 100.0 | 100.0 | – |" in text
    assert "| Attribute | identity | gender |" in text
    with Image.open(out / "privacy_utility.png") as plot:
        assert plot.format == "PNG" and plot.width > 200
    # no pixels on disk: one JSON (+ feature tensors) per photo
    files = sorted(p.suffix for p in (out / "records").iterdir())
    assert files == [".json", ".json", ".safetensors"]


def test_evaluation_resumes_per_photo(eval_pipeline, scorers, photos, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    evaluator = _evaluator(eval_pipeline, scorers, methods=["mask"], epsilons=[])
    first = evaluator.run(photos, out, progress=False)
    calls = []
    monkeypatch.setattr(evaluator, "evaluate_photo",
                        lambda *a, **k: calls.append(a) or (_ for _ in ()).throw(AssertionError))
    again = evaluator.run(photos, out, progress=False)  # every photo already has a record
    assert calls == [] and again["methods"] == first["methods"]
    # one record lost (an interrupted run): only that photo is evaluated again
    (next((out / "records").glob("*.safetensors"))).with_suffix(".json").unlink()
    monkeypatch.undo()
    seen = []
    original = evaluator.evaluate_photo
    monkeypatch.setattr(evaluator, "evaluate_photo",
                        lambda pid, src: seen.append(pid) or original(pid, src))
    evaluator.run(photos, out, progress=False)
    assert seen == ["astronaut.png"]
    other = _evaluator(eval_pipeline, scorers, methods=["blur"], epsilons=[])
    with pytest.raises(ValueError, match="different configuration"):
        other.run(photos, out, progress=False)
    faceless = tmp_path / "faceless"
    faceless.mkdir()
    Image.open(photos / "sub_coffee.jpg").save(faceless / "coffee.png")
    restarted = other.run(faceless, out, progress=False, restart=True)  # old records dropped
    assert restarted["main"] == ["original", "blur"] and restarted["photos"]["evaluated"] == 0
    assert sorted(p.name for p in (out / "records").iterdir()) == [
        f"{hashlib.sha1(b'coffee.png').hexdigest()[:16]}.json"]


def test_unknown_method_is_refused(eval_pipeline, scorers):
    with pytest.raises(ValueError, match="cannot run with what is loaded; available: original"):
        _evaluator(eval_pipeline, scorers, methods=["deepprivacy"])
    # options that a method cannot take are refused before any photo
    with pytest.raises(ValueError, match="'k-anonymity' anonymizes identity: anonymize must"):
        _evaluator(eval_pipeline, scorers, methods=["k-anonymity"], anonymize=["gender"],
                   recover=["age"])


def test_markdown_layout_from_results():
    row = {"method": "m", "label": "m", "epsilon": None, "faces": 2, "psr": 0.984,
           "detection": 1.0, "apr": 0.82, "apr_per_keyword": {"gender": 0.5}, "fid": 40.1,
           "similarity": {"count": 2, "mean": 0.1, "quantiles": {"p05": 0, "p25": 0, "p50": 0.1,
                                                                 "p75": 0, "p95": 0.2}}}
    results = {"config": EvalConfig(judge="J").to_dict(), "photos": {"evaluated": 2,
               "no_face": [], "failed": []}, "faces": 2, "main": ["m"], "sweep": {},
               "methods": {"m": row}, "recovery": {"gender": 0.99},
               "preserved_attributes": ["gender"]}
    text = markdown_tables(results)
    assert "| m | 98.4 | 100.0 | 82.0 | 40.10 |" in text
    assert "| Rec rate | 99.0 |" in text
    assert np.isfinite(row["fid"])


# --- the command line --------------------------------------------------------------------------


def test_cli_eval_offline_judge_is_a_clear_error(photos, tmp_path, capsys):
    from lreorg_hub.cli import main

    assert main(["eval", str(photos), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "facenet 'casia-webface' weights are not cached" in err
    assert not (tmp_path / "o").exists()  # nothing written before the scorers load


def test_cli_eval_runs_on_local_files(photo_bundle, tiny_backbone, photos, tmp_path, capsys):
    """The whole command on files: bundle folder, e4e checkpoint, judge state dict, tiny CLIP."""
    from conftest import save_as_e4e_checkpoint
    from facenet_pytorch import InceptionResnetV1

    from lreorg_hub.cli import main

    photo_bundle.save_pretrained(tmp_path / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, tmp_path / "backbone.pt")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        torch.save(InceptionResnetV1(pretrained=None).state_dict(), tmp_path / "judge.pt")
    (tmp_path / "clip.json").write_text(json.dumps(TINY_CLIP))
    out = tmp_path / "eval"
    argv = ["eval", str(photos), "--out", str(out), "--bundle", str(tmp_path / "bundle"),
            "--backbone", str(tmp_path / "backbone.pt"), "--methods", "lreorg,blur",
            "--epsilons", "", "--recovery-keywords", "gender", "--judge",
            str(tmp_path / "judge.pt"), "--clip-pretrained", "none", "--clip-config",
            str(tmp_path / "clip.json"), "--fid-features", "clip", "--min-face-size", "40",
            "--device", "cpu", "--seed", "1", "--quiet"]
    rc = main(argv)
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| Method | PSR (%) ↑ (facenet judge.pt) | Detection (%) ↑ | APR (%) ↑ | FID ↓ |" \
        in printed
    results = json.loads((out / "results.json").read_text())
    assert results["main"] == ["original", "lreorg", "blur"]
    assert results["methods"]["original"]["psr"] == 0.0
    assert results["config"]["fid_features"] == "clip-ViT-B-16"  # the APR CLIP, not L_s's
    assert list(results["recovery"]) == ["gender"]
    # what was evaluated, with which weights (lreorg push checks these)
    from lreorg_hub.bundle.digests import sha256_file

    prov = results["config"]["provenance"]
    assert prov["bundle"]["sha256"] == sha256_file(tmp_path / "bundle" / "model.safetensors")
    assert prov["judge"]["weights"] == str(tmp_path / "judge.pt")
    assert prov["apr_clip"]["weights"] == "random" and prov["apr_clip"]["model_name"] == "ViT-B-16"
    assert results["config"]["dataset"]["name"] == photos.name
    # resumed in a new process's worth of scorers: the random-weight scorers are seeded, so
    # the photo evaluated again gives the same numbers
    first = sorted((out / "records").glob("*.json"))[0]
    first.unlink()
    first.with_suffix(".safetensors").unlink(missing_ok=True)
    assert main(["eval", *argv[1:]]) == 0
    again = json.loads((out / "results.json").read_text())
    assert again["methods"] == results["methods"]


def test_default_fid_network_reads_local_weights(tmp_path, monkeypatch):
    """torchmetrics' real FID InceptionV3, built from a local file of (random) weights with the
    published layout, as an offline machine would."""
    from torch_fidelity import feature_extractor_inceptionv3 as tf

    empty = tmp_path / "empty.pt"
    torch.save({}, empty)
    with monkeypatch.context() as m:  # only to get the architecture's state dict without weights
        m.setattr(tf.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd: None)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            net = tf.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"],
                                                 feature_extractor_weights_path=str(empty))
    torch.save(net.state_dict(), tmp_path / "inception.pt")
    features = InceptionFeatures(weights_path=str(tmp_path / "inception.pt"))
    crops = [Image.fromarray(np.full((64, 64, 3), v, np.uint8)) for v in (30, 200)]
    out = features(crops)
    assert out.shape == (2, 2048) and out.dtype == torch.float64 and torch.isfinite(out).all()
    assert features.name == "inception-v3-fid-2048"
    with pytest.raises(ValueError, match="not a state dict of tensors"):
        torch.save({"a": [1, 2]}, tmp_path / "bad.pt")
        InceptionFeatures(weights_path=str(tmp_path / "bad.pt"))


def test_fid_on_few_images_is_warned_about():
    from lreorg_hub.evaluation.metrics import MIN_FID_IMAGES, fid_sample_warning

    assert MIN_FID_IMAGES == 2000
    assert fid_sample_warning(1) is None  # no FID at all below two faces
    assert fid_sample_warning(2000) is None
    note = fid_sample_warning(4)
    assert note.startswith("FID is computed on 4 face(s), fewer than 2,000")
    results = {"config": EvalConfig().to_dict(), "photos": {"evaluated": 4, "no_face": [],
                                                            "failed": []},
               "faces": 4, "main": [], "sweep": {}, "methods": {}, "recovery": {},
               "preserved_attributes": [], "warnings": [note]}
    assert f"> **Note:** {note}" in markdown_tables(results)


def _sweep_results():
    """Three ε-methods whose points coincide (ε 0.5 to 4 at one point per method; lreorg and
    k-anonymity at the same point) and three methods without ε."""
    def row(label, method, psr, apr, eps=None):
        return {"method": method, "label": label, "epsilon": eps, "psr": psr, "apr": apr,
                "detection": 1.0, "fid": None, "faces": 10, "apr_per_keyword": {},
                "similarity": {"count": 0}}

    methods, sweep, main = {}, {}, []
    for method, base in (("lreorg", 0.6), ("laplace", 0.5), ("k-anonymity", 0.6)):
        methods[method] = row(method, method, 1.0, base)
        main.append(method)
        sweep[method] = []
        for eps in (0.5, 1.0, 4.0, 16.0):
            key = f"{method}@eps={eps}"
            methods[key] = row(method, method, 1.0 if eps < 16 else 0.9, base, eps)
            sweep[method].append(key)
    for method, psr, apr in (("original", 0.0, 1.0), ("blur", 0.9, 0.6), ("mask", 1.0, 0.2)):
        methods[method] = row(method, method, psr, apr)
        main.append(method)
    return {"config": EvalConfig().to_dict(), "main": main, "sweep": sweep, "methods": methods}


def test_privacy_utility_plot_gives_each_method_its_colour_marker_and_labels(tmp_path):
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_hex

    from lreorg_hub.evaluation.report import plot_privacy_utility, privacy_utility_figure

    results = _sweep_results()
    fig = privacy_utility_figure(results)
    assert len(plt.get_fignums()) == 1 and len(fig.axes) == 1  # one figure, one axes
    ax = fig.axes[0]
    styles = [(to_hex(line.get_color()), line.get_marker()) for line in ax.get_lines()]
    styles += [(to_hex(c.get_facecolor()[0]), c.get_paths()[0].vertices.tobytes())
               for c in ax.collections]
    assert len(styles) == 6  # three sweep lines, three single points
    colours = [c for c, _ in styles]
    assert len(set(colours)) == 6
    markers = [m for _, m in styles]
    assert len(set(markers)) == 6
    labels = [t for t in ax.texts if t.get_text().startswith("ε=")]
    # one label per point: the ε values that share a point are listed in it
    assert sorted(t.get_text() for t in labels) == sorted(["ε=0.5, 1, 4", "ε=16"] * 3)
    assert {to_hex(t.get_color()) for t in labels} == set(colours[:3])
    # no two labels overprint, not even those of methods at the same point
    fig.canvas.draw()
    boxes = [t.get_window_extent() for t in labels]
    assert not [(i, j) for i in range(len(boxes)) for j in range(i + 1, len(boxes))
                if boxes[i].overlaps(boxes[j])]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend[:3] == ["lreorg (ε sweep)", "laplace (ε sweep)", "k-anonymity (ε sweep)"]
    plt.close(fig)
    path = plot_privacy_utility(results, tmp_path / "p.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.width > 600
    assert plt.get_fignums() == []
