"""`lreorg anonymize`: originals and everything outside --out are never touched, no output
overwrites another, one run per --out, names shown escaped, the private log, the limits
(issue 15). Files are compared by SHA-256 before and after every run."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from dataset_helpers import digests
from lreorg_hub.cli import main


def photo(size: int = 256) -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR)


def run(argv, capsys):
    code = main(["anonymize", *argv, "--method", "blur", "--quiet"])
    return code, capsys.readouterr().err


# -- originals -------------------------------------------------------------------------------
def _photo_inside_out(t: Path):
    (t / "out").mkdir()
    photo().save(t / "out" / "a.png")
    return ["out/a.png"], ("the input out/a.png lies inside --out out: outputs could replace "
                           "it; give an --out outside the inputs")


def _out_is_the_input_folder(t: Path):
    (t / "photos").mkdir()
    photo().save(t / "photos" / "a.png")
    return ["photos", "photos/a.png"], ("--out out is the input photos itself: give another "
                                        "folder for the outputs (the originals are never "
                                        "written to)")


def _input_folder_inside_out(t: Path):
    (t / "out" / "photos").mkdir(parents=True)
    photo().save(t / "out" / "photos" / "a.png")
    return ["out/photos"], ("the input out/photos lies inside --out out: outputs could "
                            "replace it; give an --out outside the inputs")


def _link_to_a_photo_inside_out(t: Path):
    (t / "photos").mkdir()
    (t / "out").mkdir()
    photo().save(t / "out" / "kept.png")
    os.symlink("../out/kept.png", t / "photos" / "link.png")  # the walk follows file links
    return ["photos"], ("the input photos/link.png lies inside --out out: outputs could "
                        "replace it; give an --out outside the inputs")


@pytest.mark.parametrize("make", [_photo_inside_out, _out_is_the_input_folder,
                                  _input_folder_inside_out, _link_to_a_photo_inside_out])
def test_an_input_inside_out_is_refused_and_nothing_is_written(make, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    inputs, message = make(tmp_path)
    out = "photos" if make is _out_is_the_input_folder else "out"
    message = message.replace("--out out is", f"--out {out} is")
    before = digests(tmp_path)
    code, err = run([*inputs, "--out", out], capsys)
    assert (code, err) == (2, f"lreorg: error: {message}\n")
    assert digests(tmp_path) == before  # inputs, --out and everything else: byte for byte


@pytest.mark.parametrize("planted", ["file", "folder", "summary", "bookkeeping"])
def test_links_planted_in_out_are_never_followed(planted, tmp_path, capsys, monkeypatch):
    """A link where an output file goes is replaced by the file (its target untouched); a
    link where a folder must be is an error for that photo; --out/_lreorg as a link stops the
    run before anything is written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos" / "nested").mkdir(parents=True)
    photo().save(tmp_path / "photos" / "a.png")
    photo(200).save(tmp_path / "photos" / "nested" / "b.png")
    (tmp_path / "elsewhere").mkdir()
    photo(64).save(tmp_path / "elsewhere" / "decoy.png")
    out = tmp_path / "out"
    out.mkdir()
    link, target = {"file": ("a.png", "../elsewhere/decoy.png"),
                    "folder": ("nested", "../elsewhere"),
                    "summary": ("summary.json", "../elsewhere/decoy.png"),
                    "bookkeeping": ("_lreorg", "../elsewhere")}[planted]
    os.symlink(target, out / link)
    outside = digests(tmp_path, skip=out)
    code, err = run(["photos", "--out", "out"], capsys)
    assert digests(tmp_path, skip=out) == outside  # nothing outside --out changed
    if planted == "bookkeeping":
        assert (code, err) == (2, "lreorg: error: out/_lreorg is a symbolic link, and links "
                                  "inside --out are never followed: remove it, or use another "
                                  "--out\n")
        assert sorted(p.name for p in out.iterdir()) == ["_lreorg"]
        return
    summary = json.loads((out / "summary.json").read_text())
    if planted == "folder":
        assert code == 1 and summary["failed"] == [{
            "input": "photos/nested/b.png",
            "error": "out/nested is a symbolic link, and links inside --out are never "
                     "followed: remove it, or use another --out"}]
        assert (out / "nested").is_symlink()
    else:
        assert code == 0 and not (out / link).is_symlink()
        assert Image.open(out / "a.png").size == (256, 256)
        assert Image.open(out / "nested" / "b.png").size == (200, 200)


# -- no output overwrites another ------------------------------------------------------------
def test_colliding_names_each_keep_their_own_image_and_record(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "photos"
    (folder / "x.png").mkdir(parents=True)     # a folder named like x.jpg's output
    (folder / "_lreorg").mkdir()               # a folder named like the run's bookkeeping
    names = ["x.jpg", "x.json.png", "summary.tar.png", "summary.png", "a.jpg", "a.png",
             "A.webp", "x.png/in.png", "_lreorg/in.png"]
    sizes = {}
    for k, name in enumerate(names):
        sizes[f"photos/{name}"] = (256 - 8 * k, 256 - 8 * k)  # every input its own size
        photo(256 - 8 * k).save(folder / name)
    code, err = run(["photos", "--out", "out"], capsys)
    assert code == 0, err
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    outputs = {p["input"]: p["output"] for p in summary["processed"]}
    assert outputs == {
        "photos/A.webp": "A.png", "photos/_lreorg/in.png": "_lreorg_1/in.png",
        "photos/a.jpg": "a_1.png", "photos/a.png": "a_2.png",
        "photos/summary.png": "summary_1.png", "photos/summary.tar.png": "summary.tar.png",
        "photos/x.jpg": "x.png", "photos/x.json.png": "x.json.png",
        "photos/x.png/in.png": "x.png_1/in.png"}
    assert "_1, _2, ... is appended" in summary["naming"]
    for given, output in outputs.items():  # each input's own image and its own record
        assert Image.open(tmp_path / "out" / output).size == sizes[given]
        record = json.loads((tmp_path / "out" / (output[:-4] + ".json")).read_text())
        assert record["output"] == output and record["size"] == list(sizes[given])
    assert set(summary) == {"method", "naming", "processed", "failed"}


def test_a_second_run_on_the_same_out_is_refused(tmp_path, capsys, monkeypatch):
    from lreorg_hub.dataset import OutDir

    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    photo().save(tmp_path / "photos" / "a.png")
    with OutDir(tmp_path / "out") as first:  # a run in progress holds the lock
        first.lock()
        before = digests(tmp_path)
        code, err = run(["photos", "--out", "out"], capsys)
        assert (code, err) == (2, "lreorg: error: another lreorg run is writing to --out out "
                                  "(it holds out/_lreorg/lock): wait for it to end, or use "
                                  "another --out\n")
        assert digests(tmp_path) == before
    code, _ = run(["photos", "--out", "out"], capsys)  # released when the first one ends
    assert code == 0 and (tmp_path / "out" / "a.png").is_file()


# -- one line means one line -----------------------------------------------------------------
def test_names_with_newlines_and_escapes_are_shown_escaped(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    photo().save(tmp_path / "photos" / "a.png")
    evil = "evil\nlreorg: 0 failed\x1b[2K.png"
    (tmp_path / "photos" / evil).write_bytes(b"not an image")
    code, err = run(["photos", "--out", "out"], capsys)
    assert code == 1
    assert err == ("lreorg: skipped photos/evil\\nlreorg: 0 failed\\x1b[2K.png: cannot read "
                   "image 'photos/evil\\nlreorg: 0 failed\\x1b[2K.png': not a recognised "
                   "image format\n")
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [p["input"] for p in summary["processed"]] == ["photos/a.png"]
    assert [f["input"] for f in summary["failed"]] == [f"photos/{evil}"]  # one entry each
    (tmp_path / "bad\nout\x07").write_text("a file, not a folder")  # a bad --out, too
    code, err = run(["photos", "--out", "bad\nout\x07"], capsys)
    assert (code, err) == (2, "lreorg: error: --out bad\\nout\\x07 exists and is not a folder: "
                              "give a folder for the outputs\n")


# -- the private log -------------------------------------------------------------------------
def test_private_log_holds_what_the_public_record_leaves_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    photo().save(tmp_path / "photos" / "alice smith.png")
    (tmp_path / "photos" / "broken.png").write_bytes(b"no")
    code, _ = run(["photos", "--out", "out", "--private-log", "private.jsonl"], capsys)
    assert code == 1
    public = (tmp_path / "out" / "alice smith.json").read_text()
    record = json.loads(public)
    assert set(record) == {"output", "size", "record"}
    assert "photos" not in public and "box" not in public and "score" not in public
    log = tmp_path / "private.jsonl"
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [(e["input"], e["status"]) for e in lines] == [
        ("photos/alice smith.png", "anonymized"), ("photos/broken.png", "failed")]
    face = lines[0]["diagnostics"]["faces"][0]
    assert len(face["box"]) == 4 and 0.9 < face["score"] <= 1.0
    code, _ = run(["photos", "--out", "out", "--private-log", "private.jsonl"], capsys)
    assert len(log.read_text().splitlines()) == 4  # a rerun appends


@pytest.mark.parametrize("where, message", [
    ("out/private.jsonl", "--private-log out/private.jsonl lies inside --out out: it holds "
                          "input paths and detector scores, and --out is what gets published;"
                          " put the log outside it"),
    ("photos/a.png", "--private-log photos/a.png is (inside) the input photos: put the log "
                     "apart from the inputs"),
    ("open.jsonl", "--private-log open.jsonl can be read or written by others (mode 644): "
                   "make it owner-only with `chmod 600 open.jsonl`"),
    ("notes.txt", "--private-log notes.txt exists and is not an lreorg private log: give a new "
                  "file"),
])
def test_a_bad_private_log_is_refused_before_anything_is_written(where, message, tmp_path,
                                                                 capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "photos").mkdir()
    photo().save(tmp_path / "photos" / "a.png")
    (tmp_path / "open.jsonl").write_text("")
    os.chmod(tmp_path / "open.jsonl", 0o644)
    (tmp_path / "notes.txt").write_text("my notes\n")
    os.chmod(tmp_path / "notes.txt", 0o600)
    before = digests(tmp_path)
    code, err = run(["photos", "--out", "out", "--private-log", where], capsys)
    assert (code, err) == (2, f"lreorg: error: {message}\n")
    assert digests(tmp_path) == before and not (tmp_path / "out").exists()


# -- limits ----------------------------------------------------------------------------------
def test_limits_are_in_help_and_equal_the_library(capsys):
    from lreorg_hub.cli.args import LIMITS_NOTE
    from lreorg_hub.dataset import MAX_ITEM_BYTES
    from lreorg_hub.image.io import DEFAULT_MAX_PIXELS
    from lreorg_hub.pipeline import LReOrgPipeline

    assert DEFAULT_MAX_PIXELS == 50_000_000 and MAX_ITEM_BYTES == 160 * 2 ** 20
    assert LReOrgPipeline().max_faces == 64
    for command in ("anonymize", "anonymize-dataset"):
        assert main([command, "--help"]) == 0
        text = " ".join(capsys.readouterr().out.split())
        assert " ".join(LIMITS_NOTE.split()) in text and "--max-faces N" in text
    assert "50 megapixels (50,000,000 pixels" in LIMITS_NOTE and "64" in LIMITS_NOTE
    assert "160 MiB" in LIMITS_NOTE


def test_max_faces_refuses_a_photo_with_more_faces(tmp_path, capsys, photo_bundle,
                                                   tiny_backbone):
    from conftest import save_as_e4e_checkpoint

    photo_bundle.save_pretrained(tmp_path / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, tmp_path / "tiny.pt")
    two = Image.new("RGB", (512, 256))
    two.paste(photo(), (0, 0))
    two.paste(photo(), (256, 0))
    two.save(tmp_path / "two.png")
    code = main(["anonymize", str(tmp_path / "two.png"), "--out", str(tmp_path / "out"),
                 "--bundle", str(tmp_path / "bundle"), "--backbone", str(tmp_path / "tiny.pt"),
                 "--device", "cpu", "--max-faces", "1", "--quiet"])
    assert code == 1
    failed = json.loads((tmp_path / "out" / "summary.json").read_text())["failed"]
    assert failed[0]["error"] == ("this photo has 2 faces to regenerate, more than the limit "
                                  "of 1 per photo (max_faces / --max-faces); choose faces "
                                  "with faces= / --faces or raise the limit")
    assert main(["anonymize", str(tmp_path / "two.png"), "--out", str(tmp_path / "o"),
                 "--method", "blur", "--max-faces", "0"]) == 2
    assert "max_faces must be an integer in 1..4096, got 0" in capsys.readouterr().err
