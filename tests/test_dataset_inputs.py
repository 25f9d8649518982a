"""`anonymize-dataset` inputs that must not reach the machine (issue 15): table cells whose
path leads anywhere but their folder, oversized items, and key files that are exposed, not
files, or another run's; the per-run salt of the item seeds."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
import stat
from pathlib import Path

import pytest
from PIL import Image
from skimage import data

from dataset_helpers import digests, face_crops, micro  # noqa: F401 (fixture)
from lreorg_hub.cli import main
from lreorg_hub.dataset import (DatasetOptions, DatasetRunError, anonymize_dataset, cells,
                                load_or_create_key)
from lreorg_hub.pipeline import ProtectOptions

KEY = bytes(range(32))
BLUR = DatasetOptions(ProtectOptions(method="blur"))
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def photo() -> Image.Image:
    return Image.fromarray(data.astronaut()).resize((256, 256), Image.BILINEAR)


def parquet(path: Path, cells_: list) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"image": pa.array(cells_, type=image_type)}), path)
    return path


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


# -- table cells -----------------------------------------------------------------------------
def test_cell_paths_are_read_only_below_the_tables_folder(tmp_path):
    data_dir, private = tmp_path / "data", tmp_path / "private"
    (data_dir / "images").mkdir(parents=True)
    private.mkdir()
    photo().save(data_dir / "images" / "a.png")
    photo().save(private / "someone.png")
    os.symlink("../private/someone.png", data_dir / "link.png")
    os.symlink("images/a.png", data_dir / "inside.png")   # a link that stays inside: read
    os.mkfifo(data_dir / "pipe.png")                       # must not block the run
    with open(data_dir / "big.png", "wb") as f:
        f.truncate(cells.MAX_ITEM_BYTES + 1)               # sparse: no disk, no memory
    (data_dir / "anon" / "_lreorg").mkdir(parents=True)  # --out, still empty of outputs
    photo().save(data_dir / "anon" / "_lreorg" / "old.png")
    paths = ["images/a.png", "inside.png", str(private / "someone.png"),
             "../private/someone.png", "link.png", "/proc/self/environ", "/etc/passwd",
             "pipe.png", "big.png", "missing.png", "anon/_lreorg/old.png", ""]
    src = parquet(data_dir / "faces.parquet", [{"bytes": None, "path": p} for p in paths])
    out, log = data_dir / "anon", tmp_path / "private.jsonl"
    before = digests(tmp_path, skip=out)
    summary = anonymize_dataset(src, out, KEY, options=BLUR, private_log=log)
    after = digests(tmp_path, skip=out)
    assert after.pop("private.jsonl") and after == before  # nothing else outside --out
    status = [(r["id"], r["status"], r.get("error")) for r in records(out)]
    big = f"{cells.MAX_ITEM_BYTES + 1:,}"
    assert status == [
        ("row-0", "anonymized", None), ("row-1", "anonymized", None),
        ("row-2", "error", "the image cell's path is absolute: only paths relative to the "
                           "table's folder are read (name the folder that holds the images "
                           "with --cell-root to read absolute paths below it)"),
        ("row-3", "error", "the image cell's path climbs out of its folder ('..'): not read"),
        ("row-4", "error", "the image cell's path leads outside the table's folder (through "
                           "a symbolic link): not read"),
        ("row-5", "error", "the image cell's path is absolute: only paths relative to the "
                           "table's folder are read (name the folder that holds the images "
                           "with --cell-root to read absolute paths below it)"),
        ("row-6", "error", "the image cell's path is absolute: only paths relative to the "
                           "table's folder are read (name the folder that holds the images "
                           "with --cell-root to read absolute paths below it)"),
        ("row-7", "error", "the file the image cell names: not a regular file (a FIFO, socket "
                           "or device); not read"),
        ("row-8", "error", f"the file the image cell names: {big} bytes, more than the limit "
                           f"of {cells.MAX_ITEM_BYTES:,} bytes for one item; not read"),
        ("row-9", "error", "the file the image cell names: no such file"),
        ("row-10", "error", "the image cell's path leads into --out (an output, not an "
                            "original): not read"),
        ("row-11", "error", "the image cell has neither bytes nor a path"),
    ]
    assert summary["anonymized"] == 2
    public = (out / "records.jsonl").read_text() + (out / "faces.parquet").read_bytes().decode(
        "latin-1")
    assert "someone" not in public and "private" not in public
    logged = {e["id"]: e for e in map(json.loads, log.read_text().splitlines())}
    assert logged["row-2"]["cell_path"] == str(private / "someone.png")
    assert logged["row-2"]["input"] == str(src) and logged["row-2"]["row"] == 2


def test_an_explicit_cell_root_reads_absolute_paths_below_it_only(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    photo().save(images / "a.png")
    src = parquet(tmp_path / "t" / "faces.parquet", [
        {"bytes": None, "path": str(images / "a.png")},
        {"bytes": None, "path": "a.png"},
        {"bytes": None, "path": str(tmp_path / "t" / "faces.parquet")},
        {"bytes": None, "path": "/proc/self/environ"}])
    anonymize_dataset(src, tmp_path / "out", KEY, options=BLUR, cell_root=images)
    assert [(r["status"], r.get("error")) for r in records(tmp_path / "out")] == [
        ("anonymized", None), ("anonymized", None),
        ("error", "the image cell's path leads outside --cell-root: not read"),
        ("error", "the image cell's path leads outside --cell-root: not read")]
    os.symlink("/", tmp_path / "everything")  # a root that holds /proc: still refused there
    src = parquet(tmp_path / "u" / "faces.parquet", [{"bytes": None, "path": "/proc/self/environ"},
                                                     {"bytes": None, "path": "dev/zero"}])
    anonymize_dataset(src, tmp_path / "out2", KEY, options=BLUR, cell_root=tmp_path / "everything")
    assert {r["error"] for r in records(tmp_path / "out2")} == {
        "the image cell's path leads to a system file (/proc, /sys or /dev): not read"}


def test_path_only_cells_written_by_datasets_are_read(tmp_path, monkeypatch):
    """`datasets` writes images it did not embed as {bytes: null, path} (to_parquet): such a
    table used to stop the whole run; now every cell is read from its confined path."""
    import datasets

    (tmp_path / "data").mkdir()
    for name in ("a.png", "b.png"):
        photo().save(tmp_path / "data" / name)
    monkeypatch.chdir(tmp_path / "data")
    ds = datasets.Dataset.from_dict({"image": ["a.png", "b.png"], "label": [0, 1]})
    ds.cast_column("image", datasets.Image()).to_parquet("faces.parquet")
    monkeypatch.chdir(tmp_path)
    summary = anonymize_dataset(tmp_path / "data" / "faces.parquet", tmp_path / "out", KEY,
                                options=BLUR)
    assert summary["anonymized"] == 2 and summary["errors"] == 0
    import pyarrow.parquet as pq
    rows = pq.read_table(tmp_path / "out" / "faces.parquet").to_pylist()
    assert [r["image"]["path"] for r in rows] == ["a.png", "b.png"]
    assert Image.open(io.BytesIO(rows[0]["image"]["bytes"])).size == (256, 256)


def test_an_oversized_cell_is_an_item_error(tmp_path, monkeypatch):
    monkeypatch.setattr(cells, "MAX_ITEM_BYTES", 10_000)  # the rule, on a small number
    small, large = face_crops(1)[0], io.BytesIO()
    photo().save(large, format="PNG")
    src = parquet(tmp_path / "faces.parquet", [{"bytes": small, "path": None},
                                               {"bytes": large.getvalue(), "path": None}])
    anonymize_dataset(src, tmp_path / "out", KEY, options=BLUR)
    assert records(tmp_path / "out")[1]["error"] == (
        f"the image cell holds {len(large.getvalue()):,} bytes, more than the limit of 10,000 "
        f"bytes for one item; not read")


# -- keys ------------------------------------------------------------------------------------
def _key(path: Path, mode: int = 0o600) -> Path:
    path.write_text(os.urandom(32).hex() + "\n")
    os.chmod(path, mode)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda t: _key(t / "k.key", 0o644),
     "the key file {k} can be read or written by others (mode 644): make it owner-only with "
     "`chmod 600 {k}` and check that nobody copied it"),
    (lambda t: _key(t / "k.key", 0o620),
     "the key file {k} can be read or written by others (mode 620)"),
    (lambda t: os.mkfifo(t / "k.key") or t / "k.key",
     "the key file {k} is a FIFO, not a regular file: not read"),
    (lambda t: Path("/dev/zero"), "the key file /dev/zero is a device or socket, not a "
                                  "regular file: not read"),
    (lambda t: (t / "k.key").mkdir() or t / "k.key", "the key file {k} is a folder"),
    (lambda t: _key(t / "k.key") and (t / "k.key").write_text("ab" * 3000) and t / "k.key",
     "the key file {k} holds 6,000 bytes, more than a key file's 4,096: not read"),
])
def test_a_bad_key_file_is_refused_without_reading_it(make, message, tmp_path, capsys):
    (tmp_path / "src").mkdir()
    photo().save(tmp_path / "src" / "a.png")
    key = make(tmp_path)
    argv = ["anonymize-dataset", str(tmp_path / "src"), "--out", str(tmp_path / "out"),
            "--method", "blur", "--key-file", str(key), "--quiet"]
    before = digests(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lreorg: error: {message.format(k=key)}") and err.count("\n") == 1
    assert digests(tmp_path) == before


def test_key_paths_expand_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    key, created = load_or_create_key("~/keys/run.key", tmp_path / "out")
    assert created and (tmp_path / "home" / "keys" / "run.key").is_file()
    assert stat.S_IMODE((tmp_path / "home" / "keys" / "run.key").stat().st_mode) == 0o600
    assert load_or_create_key("~/keys/run.key", tmp_path / "out") == (key, False)
    assert not (tmp_path / "~").exists() and not Path("~").exists()


def test_resuming_with_another_key_is_refused(tmp_path, capsys):
    src = tmp_path / "photos"
    src.mkdir()
    for name in ("a.png", "b.png"):
        photo().save(src / name)
    out = tmp_path / "out"
    one = DatasetOptions(ProtectOptions(method="blur"), shard_size=1)
    anonymize_dataset(src, out, KEY, options=one)
    run = json.loads((out / "_lreorg" / "run.json").read_text())
    assert run["key_fingerprint"] == hmac.new(KEY, b"lreorg key fingerprint v1",
                                              hashlib.sha256).hexdigest()
    assert KEY.hex() not in json.dumps(run) and len(bytes.fromhex(run["salt"])) == 16
    manifest = out / "_lreorg" / "manifest.jsonl"
    manifest.write_text(manifest.read_text().splitlines()[0] + "\n")  # shard 1 to redo
    before = digests(tmp_path)
    with pytest.raises(DatasetRunError, match=f"^{out} holds a run started with another key: "
                                              f"resume it with the key file of its first run "
                                              f"\\(--key-file\\), or use another --out$"):
        anonymize_dataset(src, out, b"another key, 32 bytes long......", options=one)
    argv = ["anonymize-dataset", str(src), "--out", str(out), "--method", "blur",
            "--shard-size", "1", "--quiet", "--key-file"]
    assert main([*argv, str(_key(tmp_path / "other.key"))]) == 2
    assert "holds a run started with another key" in capsys.readouterr().err
    assert main([*argv, str(tmp_path / "new.key")]) == 2  # a new key would never match
    assert capsys.readouterr().err == (
        f"lreorg: error: {out} holds a run started with a key, and the key file "
        f"{tmp_path / 'new.key'} does not exist: pass the --key-file of that run, or use "
        f"another --out\n")
    assert digests(tmp_path) == {**before, "other.key": digests(tmp_path)["other.key"]}
    assert anonymize_dataset(src, out, KEY, options=one)["shards_done_now"] == 1


def test_two_runs_never_share_coins_under_one_key(tmp_path, micro):
    """Two tables with ids row-0, row-1 and the same photos, one key: each run's salt gives
    its own draws; the same salt (a deliberate reproduction) gives the same."""
    import pyarrow.parquet as pq

    spec = micro
    options = DatasetOptions(ProtectOptions(aligned=True))
    crops = [{"bytes": c, "path": None} for c in face_crops(3, seed=7)]
    outputs = []
    for name, salt in [("one", None), ("two", None), ("three", "ab" * 16), ("four", "ab" * 16)]:
        src = parquet(tmp_path / name / "faces.parquet", crops)
        anonymize_dataset(src, tmp_path / f"out-{name}", KEY, options=options, pipeline=spec,
                          salt=salt)
        outputs.append([c["bytes"] for c in pq.read_table(
            tmp_path / f"out-{name}" / "faces.parquet").column("image").to_pylist()])
    assert all(a != b for a, b in zip(outputs[0], outputs[1]))   # own coins per run
    assert outputs[2] == outputs[3]                               # same salt, same coins
    with pytest.raises(ValueError, match=r"a run's salt is 16 bytes written in hex \(32 "
                                         r"characters\), got 'abc'"):
        anonymize_dataset(tmp_path / "one" / "faces.parquet", tmp_path / "o", KEY, salt="abc")


def test_a_run_json_of_an_older_lreorg_is_refused(tmp_path):
    src = tmp_path / "photos"
    src.mkdir()
    photo().save(src / "a.png")
    (tmp_path / "out" / "_lreorg").mkdir(parents=True)
    (tmp_path / "out" / "_lreorg" / "run.json").write_text(json.dumps({"version": 1}))
    with pytest.raises(DatasetRunError, match="holds a run started by an older lreorg"):
        anonymize_dataset(src, tmp_path / "out", KEY, options=BLUR)
