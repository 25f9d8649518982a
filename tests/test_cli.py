import json

from lreorg_hub.cli import main


def test_info_shows_config_and_fitted_state(tiny_bundle, tmp_path, capsys):
    tiny_bundle.save_pretrained(tmp_path / "bundle")
    assert main(["info", str(tmp_path / "bundle")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["config"]["num_groups"] == 8
    assert info["fitted"]["identity"] is True and info["fitted"]["hair color"] is True


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lreorg: error: ") and "is not a folder with an LReOrg bundle" in err


def test_keywords_json(capsys):
    assert main(["keywords", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert rows[1] == {"keyword": "gender", "subcategories": ["male", "female"],
                       "prompts": ["a photo of a male.", "a photo of a female."],
                       "region": "inner"}


def _photo_folder(tmp_path):
    from PIL import Image
    from skimage import data

    photos = tmp_path / "photos"
    (photos / "nested").mkdir(parents=True)
    Image.fromarray(data.astronaut()).save(photos / "astronaut.jpg", quality=95)
    Image.fromarray(data.chelsea()).save(photos / "nested" / "cat.png")   # no face
    (photos / "broken.png").write_bytes(b"not an image at all")
    (photos / "notes.txt").write_text("ignored: not an image suffix")
    return photos


def test_anonymize_folder_end_to_end(photo_bundle, tiny_backbone, tmp_path, capsys):
    from PIL import Image

    from conftest import save_as_e4e_checkpoint

    photo_bundle.save_pretrained(tmp_path / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, tmp_path / "tiny.pt")
    photos = _photo_folder(tmp_path)
    out = tmp_path / "out"
    code = main(["anonymize", str(photos), "--out", str(out), "--bundle",
                 str(tmp_path / "bundle"), "--backbone", str(tmp_path / "tiny.pt"),
                 "--recover", "gender,age", "--epsilon", "2", "--samples", "2", "--seed", "0",
                 "--save-crops", "--device", "cpu"])
    assert code == 1                                     # two inputs failed
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.png" in err and "No face was found" in err
    assert "1 photo(s) anonymized" in err
    result = Image.open(out / "astronaut.png")
    assert result.size == (512, 512) and not result.getexif()
    record = json.loads((out / "astronaut.json").read_text())
    assert record["record"]["recover"] == ["gender", "age"] and record["record"]["seed"] == 0
    assert record["record"]["epsilon"] == 2.0 and record["record"]["samples"] == 2
    assert record["record"]["faces"] == 1 and "input" not in record  # no input path
    assert sorted(p.name for p in (out / "astronaut_faces").iterdir()) == [
        "face0_anonymized.png", "face0_input.png", "face0_sample0.png", "face0_sample1.png"]
    summary = json.loads((out / "summary.json").read_text())
    assert [f["input"].rsplit("/", 1)[1] for f in summary["failed"]] == ["broken.png", "cat.png"]
    assert not (out / "nested" / "cat.png").exists()


def test_anonymize_with_an_image_baseline_needs_no_bundle(tmp_path):
    from PIL import Image
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "a.png")
    assert main(["anonymize", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"),
                 "--method", "pixelate", "--quiet"]) == 0
    record = json.loads((tmp_path / "out" / "a.json").read_text())
    assert record["record"]["method"] == "pixelate"


def test_anonymize_without_bundle_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    assert main(["anonymize", str(tmp_path / "in"), "--out", str(tmp_path / "o"),
                 "--method", "blur"]) == 2
    assert "no input images found" in capsys.readouterr().err
    (tmp_path / "in" / "a.png").write_bytes(b"")
    assert main(["anonymize", str(tmp_path / "in"), "--out", str(tmp_path / "o")]) == 2
    assert "--bundle (Hub repo id or folder) is required" in capsys.readouterr().err


def test_the_whole_parser_builds_without_torch():
    """`lreorg --help` and every sub-command's --help start fast: no torch, no networks."""
    import subprocess
    import sys

    code = ("import sys\nfrom lreorg_hub.cli import build_parser\nbuild_parser()\n"
            "heavy = [m for m in ('torch', 'gradio', 'open_clip', 'facenet_pytorch', 'ray')"
            " if m in sys.modules]\nassert not heavy, heavy")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-1000:]
