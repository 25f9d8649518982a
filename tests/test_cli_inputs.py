"""`lreorg anonymize` with bad input: every argument checked before any photo, one line, exit
status 2; per-photo failures of any kind recorded while the run goes on."""

import json
import os

import pytest
from PIL import Image
from skimage import data

from lreorg_hub.cli import main


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "a.png"
    Image.fromarray(data.astronaut()).save(path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory, photo_bundle, tiny_backbone, tiny_style_mix):
    from conftest import save_as_e4e_checkpoint

    root = tmp_path_factory.mktemp("weights")
    photo_bundle.save_pretrained(root / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, root / "tiny.pt")
    tiny_style_mix.save_pretrained(root / "sm")
    return root


def run(argv, capsys):
    code = main(["anonymize", *argv, "--quiet"])
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize("argv, message", [
    (["--method", "blur", "--strength", "1e9"],
     "strength for blur must be a number in (0, 1] (σ as a fraction of the face size), got "
     "1000000000.0"),
    (["--method", "pixelate", "--strength", "1000"],
     "strength for pixelate must be a number in (0, 1] (block side as a fraction of the face "
     "size), "
     "got 1000.0"),
    (["--method", "mask", "--strength", "1.5"], "strength for mask must be a number in (0, 1] (opacity)"),
    (["--method", "blur", "--strength", "nan"], "argument --strength: expected a number, got "
                                                "'nan'"),
    (["--method", "blur", "--epsilon", "1"], "epsilon does not apply to method 'blur'; it "
                                             "takes: strength"),
    (["--method", "blur", "--seed", "3"], "seed does not apply to method 'blur'"),
    (["--method", "blur", "--bundle", "b"], "--bundle does not apply to --method blur"),
    (["--method", "blur", "--aligned"], "method 'blur' works on whole photos, not on aligned crops (drop aligned / --aligned)"),
    (["--method", "blur", "--device", "tpu"], "device must be auto, cpu, cuda or cuda:N, got "
                                              "'tpu'"),
    (["--method", "blur", "--min-face-size", "0"], "min_face_size must be an integer number "
                                                   "of pixels in 1..10000, got 0"),
    (["--method", "blur", "--revision", "main"], "--revision does not apply to --method blur"),
    (["--method", "swirl"], "argument --method: invalid choice: 'swirl'"),
    (["--bundle", "b", "--epsilon", "-1"], "epsilon must be >= 0 (the privacy budget), got -1.0"),
    (["--bundle", "b", "--epsilon", "lots"], "argument --epsilon: expected a number, got 'lots'"),
    (["--bundle", "b", "--samples", "0"], "samples must be in 1..16 (each sample is one more "
                                          "draw: k samples spend k·ε), got 0"),
    (["--bundle", "b", "--samples", "100000"], "samples must be in 1..16"),
    (["--bundle", "b", "--seed", "-1"], "seed must be in 0..18446744073709551615 (2**64 - 1), "
                                        "got -1"),
    (["--bundle", "b", "--seed", "99999999999999999999"], "seed must be in 0.."),
    (["--bundle", "b", "--rank-window", "5,2"], "rank_window (a=5, b=2) is empty: a must be "
                                                "<= b"),
    (["--bundle", "b", "--rank-window", "3"], "argument --rank-window: expected A,B (two "
                                              "integers), got '3'"),
    (["--bundle", "b", "--anonymize", "face"], "unknown keyword 'face'; valid keywords: "
                                               "identity, gender"),
    (["--bundle", "b", "--anonymize", ""], "nothing to anonymize"),
    (["--bundle", "b", "--anonymize", "identity", "--recover", "identity"],
     "keyword(s) identity cannot be both anonymized and recovered"),
    (["--bundle", "b", "--anonymize", "gender", "--epsilon", "1"],
     "epsilon applies only when identity is anonymized (anonymize: gender)"),
    (["--bundle", "b", "--mechanism", "laplace"], "argument --mechanism: invalid choice"),
    (["--bundle", "b", "--faces", "-1"], "face indices count from 0 (left to right), got -1"),
    (["--bundle", "b", "--faces", "x"], "argument --faces: expected comma-separated integers"),
    (["--bundle", "b", "--output-size", "100"], "output size must be a power of two >= 4"),
    (["--bundle", "b", "--strength", "0.5"], "strength does not apply to method 'lreorg'"),
    (["--bundle", "b", "--style-rows", "1,3"], "style_rows does not apply to method 'lreorg'"),
    (["--bundle", "b", "--aligned", "--faces", "0"], "faces cannot be chosen for an aligned crop: it is one face"),
    (["--method", "k-anonymity", "--bundle", "b", "--seed", "1"],
     "seed does not apply to method 'k-anonymity'; it takes: anonymize, recover"),
    (["--method", "laplace", "--bundle", "b", "--epsilon", "0"],
     "the Laplace mechanism needs epsilon > 0"),
    (["--method", "style-mix", "--backbone", "x.pt"], "--method style-mix needs --style-mix "
                                                      "(fitted groups"),
    (["--method", "style-mix", "--recover", "age"], "recover does not apply to method "
                                                    "'style-mix'"),
    (["--method", "style-mix", "--anonymize", "identity,age"],
     "style-mix anonymizes identity only"),
    ([], "--bundle (Hub repo id or folder) is required for method 'lreorg'"),
    (["--wat"], "unrecognized arguments: --wat"),
])
def test_bad_arguments_stop_before_anything_is_read(photo, tmp_path, capsys, argv, message):
    out = tmp_path / "out"
    code, err = run([str(photo), "--out", str(out), *argv], capsys)
    assert code == 2
    assert err.startswith("lreorg: error: ") and message in err
    assert err.count("\n") == 1                       # one line
    assert not out.exists() or not any(out.iterdir())  # nothing processed


@pytest.mark.parametrize("argv, message", [
    (["--rank-window", "2,99"], "rank_window (a=2, b=99) must lie within 1..8 (the number of "
                                "identity groups)"),
    (["--output-size", "128"], "output size 128 is larger than the generator's 64 px"),
])
def test_limits_of_the_loaded_weights_stop_before_the_first_photo(photo, weights, tmp_path,
                                                                   capsys, argv, message):
    out = tmp_path / "out"
    code, err = run([str(photo), "--out", str(out), "--bundle", str(weights / "bundle"),
                     "--backbone", str(weights / "tiny.pt"), "--device", "cpu", *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists()  # a refused start writes nothing, --out included


def test_unfitted_anonymizer_is_named_before_the_first_photo(photo, tiny_backbone, weights,
                                                             tmp_path, capsys):
    from lreorg_hub.bundle import LReOrg

    rows = tiny_backbone.generator.n_latent
    LReOrg(keywords=["identity", "gender"], num_groups=8, num_members=64,
           cdfnet=dict(latent_dim=32, num_rows=rows, cond_dim=16, num_blocks=2, hidden_dim=32,
                       dense_growth=8, dense_layers=2)).save_pretrained(tmp_path / "unfitted")
    code, err = run([str(photo), "--out", str(tmp_path / "out"), "--bundle",
                     str(tmp_path / "unfitted"), "--backbone", str(weights / "tiny.pt"),
                     "--device", "cpu"], capsys)
    assert code == 2
    assert "cannot anonymize 'identity' with this bundle: the identity anonymizer (GIA groups) " \
           "is not fitted in this bundle" in err
    assert not (tmp_path / "out").exists()
    code, err = run([str(photo), "--out", str(tmp_path / "out"), "--bundle",
                     str(tmp_path / "unfitted"), "--backbone", str(weights / "tiny.pt"),
                     "--device", "cpu", "--recover", "age"], capsys)
    assert code == 2 and "unknown keyword 'age'; valid keywords: identity, gender" in err


@pytest.mark.parametrize("make, message", [
    (lambda d: (d / "file.txt").write_text("x") and d / "file.txt",
     "exists and is not a folder: give a folder for the outputs"),
    (lambda d: (d / "file.txt").write_text("x") and d / "file.txt" / "sub",
     "cannot be created: Not a directory"),
])
def test_bad_out_is_refused_up_front(photo, tmp_path, capsys, make, message):
    out = make(tmp_path)
    code, err = run([str(photo), "--out", str(out), "--method", "blur"], capsys)
    assert code == 2 and f"--out {out} " in err and message in err


def test_unreadable_paths_are_listed_and_the_run_goes_on(photo, tmp_path, capsys):
    folder = tmp_path / "photos"
    (folder / "nested").mkdir(parents=True)
    Image.open(photo).save(folder / "summary.png")           # would clash with summary.json
    Image.open(photo).save(folder / "nested" / "b.png")
    (folder / "text.png").write_text("hello, not an image")
    os.mkfifo(folder / "pipe.jpg")                            # must not block the run
    os.symlink("loop2.png", folder / "loop1.png")
    os.symlink("loop1.png", folder / "loop2.png")
    os.symlink("nowhere.png", folder / "dangling.png")
    os.symlink("..", folder / "nested" / "up")               # a folder loop
    os.mkfifo(tmp_path / "direct.png")
    out = tmp_path / "out"
    (out / "a.png").mkdir(parents=True)                      # a folder where a.png would go
    code, err = run([str(folder), str(photo), str(tmp_path / "direct.png"),
                     str(tmp_path / "missing.png"), "--out", str(out), "--method", "blur"],
                    capsys)
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    assert summary["method"] == "blur"
    outputs = {os.path.basename(p["input"]): p["output"] for p in summary["processed"]}
    assert outputs == {"summary.png": "summary_1.png", "b.png": "nested/b.png"}
    failed = {os.path.basename(f["input"]): f["error"] for f in summary["failed"]}
    assert failed == {
        "direct.png": "a FIFO (named pipe), not a regular file: not read",
        "missing.png": "no such file or folder",
        "pipe.jpg": "a FIFO (named pipe), not a regular file: not read",
        "loop1.png": "symbolic link loop (the link points back to itself)",
        "loop2.png": "symbolic link loop (the link points back to itself)",
        "dangling.png": "dangling symbolic link (its target 'nowhere.png' does not exist)",
        "up": "symbolic link to a folder: not followed",
        "text.png": f"cannot read image '{folder / 'text.png'}': not a recognised image format",
        "a.png": f"cannot write {out / 'a.png'}: a folder is in the way",
    }
    assert (out / "summary_1.png").is_file() and (out / "nested" / "b.png").is_file()
    assert not (out / "a.json").exists()          # nothing half-written for the failed photo
    for name in failed:
        assert "skipped " in err and name in err


def test_any_failure_of_one_photo_is_recorded(photo, tmp_path, capsys, monkeypatch):
    """Fault injection: an internal error (not a ValueError) on one photo ends nothing."""
    from lreorg_hub.pipeline import LReOrgPipeline

    real = LReOrgPipeline.__call__

    def flaky(self, image, *args, **kwargs):
        if os.path.basename(str(image)) == "bad.png":
            raise RuntimeError("CUDA error: an illegal memory access was encountered")
        return real(self, image, *args, **kwargs)

    monkeypatch.setattr(LReOrgPipeline, "__call__", flaky)
    Image.open(photo).save(tmp_path / "bad.png")
    code, err = run([str(tmp_path / "bad.png"), str(photo), "--out", str(tmp_path / "out"),
                     "--method", "pixelate"], capsys)
    assert code == 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [p["output"] for p in summary["processed"]] == ["a.png"]
    assert summary["failed"][0]["error"] == ("unexpected error (RuntimeError): CUDA error: an "
                                             "illegal memory access was encountered")


def test_style_mix_from_the_command_line(photo, weights, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run([str(photo), "--out", str(out), "--method", "style-mix", "--backbone",
                     str(weights / "tiny.pt"), "--style-mix", str(weights / "sm"), "--seed", "4",
                     "--samples", "2", "--mechanism", "strict", "--device", "cpu"], capsys)
    assert code == 0, err
    record = json.loads((out / "a.json").read_text())["record"]
    assert record["method"] == "style-mix" and record["mechanism"] == "strict"
    assert record["method_label"] == "style-mix (training-free baseline)"
    assert record["samples"] == 2 and record["extra"]["style_rows"] == [2, 4]


def test_fit_style_mix_command(weights, tmp_path, capsys):
    from lreorg_hub.bundle import StyleMixAnonymizer

    assert main(["fit-style-mix", str(tmp_path / "sm"), "--backbone", str(weights / "tiny.pt"),
                 "--groups", "4", "--members", "16", "--samples", "64", "--seed", "0"]) == 0
    loaded = StyleMixAnonymizer.from_pretrained(tmp_path / "sm")
    assert loaded.fitted and loaded.num_groups == 4 and loaded.rows == (2, 4)


def test_a_text_file_as_backbone_is_one_clear_line(photo, weights, tmp_path, capsys):
    (tmp_path / "notes.pt").write_text("hello, I am not a checkpoint\n")
    code, err = run([str(photo), "--out", str(tmp_path / "out"), "--bundle",
                     str(weights / "bundle"), "--backbone", str(tmp_path / "notes.pt"),
                     "--device", "cpu"], capsys)
    assert code == 2 and err.count("\n") == 1
    assert "could not be read as a PyTorch checkpoint" in err and "weights_only" not in err
