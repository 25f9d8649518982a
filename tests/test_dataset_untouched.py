"""`anonymize-dataset` (issue 15): the source and everything outside --out are never
touched (by SHA-256 before and after, on both engines), one run per --out, items without a
face dropped by default and listed, every method on both engines, a refused start writes
nothing, the private log."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from dataset_helpers import digests, face_crops, micro, ray_local  # noqa: F401 (fixtures)
from lreorg_hub.cli import main
from lreorg_hub.dataset import (DatasetOptions, DatasetRunError, OutDir, OutputFolderError,
                                PipelineSpec, anonymize_dataset)
from lreorg_hub.pipeline import ProtectOptions

KEY = bytes(range(32))
BLUR = DatasetOptions(ProtectOptions(method="blur"), shard_size=1)
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photo(size: int = 256) -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR)


def no_face() -> Image.Image:
    return Image.fromarray(data.coffee()).resize((256, 192), Image.BILINEAR)


def photos(folder: Path, names=("a/p.png", "b/p.png")) -> Path:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        photo().save(folder / name)
    return folder


def records(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "records.jsonl").read_text()
                                    .splitlines())}


# -- originals -------------------------------------------------------------------------------
def _table(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"image": [face_crops(1)[0]]}), path)
    return path


def _saved(path: Path):
    import datasets
    datasets.Dataset.from_dict({"image": [photo()]}).cast_column(
        "image", datasets.Image()).save_to_disk(str(path))
    return path


@pytest.mark.parametrize("source, out, message", [
    (lambda t: _table(t / "out" / "faces.parquet"), "out",
     "the input {src} lies inside --out {out}: outputs could replace it; give an --out outside "
     "the inputs"),
    (lambda t: _saved(t / "out" / "hf"), "out",
     "the input {src} lies inside --out {out}: outputs could replace it; give an --out outside "
     "the inputs"),
    (lambda t: photos(t / "out" / "photos"), "out",
     "the input {src} lies inside --out {out}: outputs could replace it; give an --out outside "
     "the inputs"),
    (lambda t: photos(t / "photos"), "photos",
     "--out {out} is the input {src} itself: give another folder for the outputs (the "
     "originals are never written to)"),
    (lambda t: photos(t / "photos"), "photos/anon",
     "--out {out} lies inside the source {src}: give an --out outside it"),
    (lambda t: _saved(t / "hf"), "hf/anon",
     "--out {out} lies inside the source {src}: give an --out outside it"),
])
def test_a_source_and_out_that_overlap_are_refused(source, out, message, tmp_path, capsys):
    src, out = source(tmp_path), tmp_path / out
    capsys.readouterr()  # what building the source printed
    before = digests(tmp_path)
    argv = ["anonymize-dataset", str(src), "--out", str(out), "--method", "blur", "--quiet"]
    assert main(argv) == 2
    assert capsys.readouterr().err == \
        f"lreorg: error: {message.format(src=src, out=out)}\n"
    assert digests(tmp_path) == before  # no key, no run.json, nothing at all


def test_a_new_run_goes_only_into_an_empty_folder(tmp_path):
    src = photos(tmp_path / "photos")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a").mkdir()
    photo(64).save(tmp_path / "out" / "a" / "p.png")  # would be replaced by a's output
    before = digests(tmp_path)
    with pytest.raises(DatasetRunError, match=r"^--out .*/out is not empty and holds no lreorg "
                                              r"run \(a, …\): outputs could replace files "
                                              r"there; give a new or empty folder$"):
        anonymize_dataset(src, tmp_path / "out", KEY, options=BLUR)
    assert digests(tmp_path) == before


def _resume_with(planted: str, tmp_path: Path, engine: str):
    """A finished run; shard 1 (b/p.png) forgotten so a rerun redoes it; a link planted."""
    src = photos(tmp_path / "photos")
    out = tmp_path / "out"
    anonymize_dataset(src, out, KEY, options=BLUR)
    manifest = out / "_lreorg" / "manifest.jsonl"
    manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines()
                                if '"shard": 1' not in line and "finalized" not in line))
    (tmp_path / "elsewhere").mkdir()
    photo(64).save(tmp_path / "elsewhere" / "p.png")
    (tmp_path / "elsewhere" / "manifest.jsonl").write_text("mine\n")
    if planted == "folder":
        shutil.rmtree(out / "b")
        os.symlink("../elsewhere", out / "b")
    elif planted == "file":
        (out / "b" / "p.png").unlink()
        os.symlink("../../elsewhere/p.png", out / "b" / "p.png")
    elif planted == "manifest":
        manifest.rename(tmp_path / "elsewhere" / "manifest.jsonl")
        os.symlink("../../elsewhere/manifest.jsonl", manifest)
    else:  # the manifest as a hard link to a file outside: an append would write into it
        manifest.rename(tmp_path / "elsewhere" / "manifest.jsonl")
        os.link(tmp_path / "elsewhere" / "manifest.jsonl", manifest)
    outside = digests(tmp_path, skip=out)
    try:
        return anonymize_dataset(src, out, KEY, options=BLUR, engine=engine,
                                 cpus_per_actor=1.0)
    finally:
        assert digests(tmp_path, skip=out) == outside  # the source and the rest untouched


@pytest.mark.parametrize("planted", ["folder", "file", "manifest", "hardlink"])
def test_links_planted_in_out_are_never_followed(planted, tmp_path):
    out = tmp_path / "out"
    if planted == "file":  # the link itself is replaced by the output
        assert _resume_with(planted, tmp_path, "local")["anonymized"] == 2
        assert not (out / "b" / "p.png").is_symlink()
        assert Image.open(out / "b" / "p.png").size == (256, 256)
        return
    if planted == "hardlink":
        with pytest.raises(OutputFolderError, match=f"^cannot append to {out}/_lreorg/"
                                                    f"manifest.jsonl: it is not a regular file "
                                                    f"with one name"):
            _resume_with(planted, tmp_path, "local")
        return
    where = out / ("b" if planted == "folder" else "_lreorg/manifest.jsonl")
    with pytest.raises(OutputFolderError, match=f"^{where} is a symbolic link, and links "
                                                f"inside --out are never followed"):
        _resume_with(planted, tmp_path, "local")


def test_ray_actors_never_follow_a_link_planted_in_out(tmp_path, ray_local):
    with pytest.raises(OutputFolderError, match=f"^{tmp_path / 'out' / 'b'} is a symbolic "
                                                f"link, and links inside --out are never "
                                                f"followed: remove it, or use another --out$"):
        _resume_with("folder", tmp_path, "ray")


def test_a_second_run_on_the_same_out_is_refused(tmp_path):
    src = photos(tmp_path / "photos")
    with OutDir(tmp_path / "out") as first:  # a run in progress holds the lock
        first.lock()
        before = digests(tmp_path)
        with pytest.raises(OutputFolderError, match=r"^another lreorg run is writing to --out "
                                                    r".*/out \(it holds .*/out/_lreorg/lock\): "
                                                    r"wait for it to end, or use another "
                                                    r"--out$"):
            anonymize_dataset(src, tmp_path / "out", KEY, options=BLUR)
        assert digests(tmp_path) == before
    assert anonymize_dataset(src, tmp_path / "out", KEY, options=BLUR)["anonymized"] == 2


# -- a missed face is never published silently -----------------------------------------------
def test_items_without_a_face_are_dropped_by_default_and_listed(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    photo().save(src / "face.png")
    no_face().save(src / "coffee\nrow.png")
    (src / "broken\x1b.png").write_bytes(b"no")
    out = tmp_path / "out"
    argv = ["anonymize-dataset", str(src), "--out", str(out), "--method", "blur",
            "--key-file", str(tmp_path / "k.key"), "--quiet"]
    assert main(argv) == 1  # the broken item
    err = capsys.readouterr().err.splitlines()
    assert err[-2:] == [f"lreorg: no face found in 1 item(s), dropped from the output "
                        f"(--no-face drop): coffee\\nrow.png (all listed in "
                        f"{out / 'records.jsonl'})",
                        f"lreorg: 1 item(s) failed, left out of the output: broken\\x1b.png "
                        f"(all listed in {out / 'records.jsonl'})"]
    assert sorted(p.name for p in out.iterdir()) == ["_lreorg", "face.png", "records.jsonl"]
    rec = records(out)["coffee\nrow.png"]
    assert rec == {"id": "coffee\nrow.png", "status": "no-face", "output": "dropped",
                   "note": "No face was found, so nothing was anonymized: the item is left "
                           "out of the output (--no-face drop, the default)."}
    passed = tmp_path / "passed"
    assert main([*argv[:3], str(passed), *argv[4:], "--no-face", "pass"]) == 1
    assert "published UNCHANGED (--no-face pass): a face the detector missed is visible in " \
           "them: coffee\\nrow.png" in capsys.readouterr().err
    rec = records(passed)["coffee\nrow.png"]
    assert rec["output"] == "unchanged" and "published UNCHANGED" in rec["note"]
    assert Image.open(passed / "coffee\nrow.png").tobytes() == no_face().tobytes()


# -- every method, both engines; a refused start writes nothing -------------------------------
METHODS = ["blur", "pixelate", "mask", "k-anonymity"]


def _method_run(method: str, tmp_path: Path, micro: PipelineSpec, engine: str) -> Path:
    if method == "k-anonymity":  # a latent method without a random draw: aligned crops
        src = tmp_path / "crops"
        src.mkdir(parents=True, exist_ok=True)
        for k, crop in enumerate(face_crops(2, seed=9)):
            (src / f"c{k}.png").write_bytes(crop)
        spec, protect = micro, ProtectOptions(method=method, aligned=True)
    else:
        src, spec, protect = photos(tmp_path / "photos"), PipelineSpec(device="cpu"), \
            ProtectOptions(method=method)
    out = tmp_path / f"out-{engine}"
    summary = anonymize_dataset(src, out, KEY, options=DatasetOptions(protect, shard_size=1),
                                pipeline=spec, engine=engine, cpus_per_actor=1.0)
    assert summary["anonymized"] == 2 and summary["errors"] == 0
    assert {r["method"] for r in records(out).values()} == {method}
    assert {r["seed"] for r in records(out).values()} == {None}
    return out


@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_a_dataset_locally(method, tmp_path, micro):
    out = _method_run(method, tmp_path, micro, "local")
    for name, digest in digests(out).items():
        if name.endswith(".png"):  # every output differs from its input
            source = tmp_path / ("crops" if method == "k-anonymity" else "photos") / name
            assert digest != digests(source.parent)[source.name]


# An image method and a latent one in the default suite (~5 s each); pixelate and mask take
# the image method's path (blur's) and run with -m slow.
@pytest.mark.parametrize("method", ["blur", "k-anonymity",
                                    *(pytest.param(m, marks=pytest.mark.slow)
                                      for m in ("pixelate", "mask"))])
def test_every_method_runs_on_ray_as_locally(method, tmp_path, micro, ray_local):
    local = _method_run(method, tmp_path, micro, "local")
    ray = _method_run(method, tmp_path, micro, "ray")
    assert digests(ray, skip=ray / "_lreorg") == digests(local, skip=local / "_lreorg")


@pytest.mark.parametrize("argv, message", [
    (["--method", "blur", "--epsilon", "1"], "epsilon does not apply to method 'blur'; it "
                                             "takes: strength"),
    (["--method", "k-anonymity", "--bundle", "no-such-bundle", "--aligned"],
     "could not load the LReOrg bundle 'no-such-bundle'"),
    (["--method", "blur", "--cell-root", "photos"], "--cell-root applies to table sources"),
    (["--method", "blur", "--max-faces", "0"], "max_faces must be an integer in 1..4096"),
    (["--method", "blur", "--private-log", "out/log.jsonl"], "--private-log out/log.jsonl "
                                                              "lies inside --out out"),
])
def test_a_refused_start_writes_nothing(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    photos(tmp_path / "photos")
    before = digests(tmp_path)
    assert main(["anonymize-dataset", "photos", "--out", "out", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lreorg: error: ") and message in err and err.count("\n") == 1
    assert digests(tmp_path) == before  # no key, no --out, no run.json


# -- the private log -------------------------------------------------------------------------
@pytest.mark.parametrize("engine", ["local", "ray"])
def test_private_log_per_item_on_both_engines(engine, tmp_path, request):
    if engine == "ray":
        request.getfixturevalue("ray_local")
    src = photos(tmp_path / "photos", ("alice.png", "bob.png"))
    (src / "broken.png").write_bytes(b"no")
    out, log = tmp_path / "out", tmp_path / "private.jsonl"
    anonymize_dataset(src, out, KEY, options=BLUR, engine=engine, private_log=log,
                      cpus_per_actor=1.0)
    assert oct(log.stat().st_mode & 0o777) == "0o600"
    lines = {e["id"]: e for e in map(json.loads, log.read_text().splitlines())}
    assert sorted(lines) == ["alice.png", "bob.png", "broken.png"]
    assert lines["alice.png"]["input"] == str(src.resolve() / "alice.png")
    assert lines["alice.png"]["status"] == "anonymized"
    assert 0.9 < lines["alice.png"]["diagnostics"]["faces"][0]["score"] <= 1
    assert lines["broken.png"]["status"] == "error"
    public = (out / "records.jsonl").read_text()
    assert "box" not in public and "score" not in public and str(src) not in public
    from lreorg_hub.privacy import PrivacyRecord
    fields = set(PrivacyRecord.__dataclass_fields__)
    assert set(records(out)["alice.png"]) == {"id", "status"} | fields  # to_dict, no more
