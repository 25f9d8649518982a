"""Dataset anonymization: three input formats, two engines (this process and a local Ray),
per-item seeds from a key file, resumption after a killed driver or a killed Ray actor.

The micro backbone and bundle are built by the real classes, saved to disk and loaded the
way the CLI and every Ray actor load them; inputs are generated crops (aligned: no detector)
plus scikit-image photos where detection matters.
"""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dataset_helpers import face_crops, micro, ray_local  # noqa: F401 (fixtures)
from lreorg_hub.cli import main
from lreorg_hub.pipeline import ProtectOptions
from lreorg_hub.dataset import (RECORD_COLUMN, DatasetOptions, DatasetRunError, KeyFileError,
                                PipelineSpec, anonymize_dataset, default_key_path, item_seed,
                                load_or_create_key)

KEY = bytes(range(32))
SALT = "00112233445566778899aabbccddeeff"  # one salt for runs compared byte for byte
N_ITEMS = 200


# One torch thread in this process (2 shared cores run faster so); the local run that the
# Ray engine is compared with asks for its threads itself, as a user would (--threads).
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory):
    """200 generated crops in two sub-folders (PNG and JPEG), plus one corrupt file."""
    root = tmp_path_factory.mktemp("folder_src")
    for i, data in enumerate(face_crops(N_ITEMS)):
        sub = root / ("a" if i % 2 else "b")
        sub.mkdir(exist_ok=True)
        if i % 10 == 0:  # some JPEGs, with EXIF that must not reach the output
            img = Image.open(io.BytesIO(data))
            exif = Image.Exif()
            exif[0x010F] = "SecretCam"
            img.save(sub / f"img{i:03d}.jpg", exif=exif)
        else:
            (sub / f"img{i:03d}.png").write_bytes(data)
    (root / "b" / "corrupt.png").write_bytes(b"\x89PNG not really")
    return root


OPTIONS = dict(aligned=True, shard_size=40, batch_size=16)


def dataset_options(**kwargs) -> DatasetOptions:
    """The run's settings, the rest as the library's one options type."""
    run = {k: kwargs.pop(k) for k in ("no_face", "batch_size", "shard_size") if k in kwargs}
    return DatasetOptions(protect=ProtectOptions(**kwargs), **run)


def with_(options: dict, **changes) -> dict:
    return {**options, **changes}


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "_lreorg" not in p.parts}


def manifest_entries(path: Path) -> list[dict]:
    entries = []
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn line
        if "shard" in entry:  # not the final mark
            entries.append(entry)
    return entries


def manifest_shards(path: Path) -> list[int]:
    return [e["shard"] for e in manifest_entries(path)]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def local_run(micro, image_folder, tmp_path_factory):
    """The reference run: local engine, one torch thread like a default Ray actor
    (cpus_per_actor=1), while this process is set to two."""
    out = tmp_path_factory.mktemp("local_out")
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        summary = anonymize_dataset(image_folder, out, KEY, options=dataset_options(**OPTIONS),
                                    pipeline=micro, threads=1, salt=SALT)
        assert torch.get_num_threads() == 2  # the caller's setting is given back
        entries = manifest_entries(out / "_lreorg" / "manifest.jsonl")
        assert {e["threads"] for e in entries} == {1}
    finally:
        torch.set_num_threads(before)
    return out, summary


# ---------------------------------------------------------------------------------------------
def test_key_file_is_owner_only_reused_and_kept_apart(tmp_path):
    out = tmp_path / "out"
    key_path = tmp_path / "keys" / "run.key"
    key, created = load_or_create_key(key_path, out)
    assert created and len(key) == 32
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert load_or_create_key(key_path, out) == (key, False)
    with pytest.raises(KeyFileError, match="inside the output folder"):
        load_or_create_key(out / "secret.key", out)
    (tmp_path / "bad.key").write_text("zz")
    (tmp_path / "bad.key").chmod(0o600)
    with pytest.raises(KeyFileError, match="cannot read the key file"):
        load_or_create_key(tmp_path / "bad.key", out)
    assert not _inside(default_key_path(out), out)
    # seeds: deterministic per (key, salt, id), different across ids, salts and keys, 63-bit
    s = item_seed(key, SALT, "a/img001.png")
    assert s == item_seed(key, SALT, "a/img001.png") and 0 <= s < 2 ** 63
    assert s != item_seed(key, SALT, "a/img002.png")
    assert s != item_seed(b"x" * 32, SALT, "a/img001.png")
    assert s != item_seed(key, "f" * 32, "a/img001.png")


def _inside(path: Path, folder: Path) -> bool:
    return folder.resolve() in path.resolve().parents


def test_folder_layout_records_and_no_secrets(local_run, image_folder):
    out, summary = local_run
    assert summary == {"items": N_ITEMS + 1, "shards": 6, "shards_done_now": 6,
                       "shards_skipped": 0, "output": str(out), "anonymized": N_ITEMS,
                       "no_face": 0, "errors": 1, "no_face_items": [],
                       "failed_items": ["b/corrupt.png"]}
    inputs, outputs = files(image_folder), files(out)
    # the same tree, names and formats; the corrupt item has no output
    assert set(outputs) == (set(inputs) - {"b/corrupt.png"}) | {"records.jsonl"}
    for name in ("a/img001.png", "b/img000.jpg"):
        img = Image.open(out / name)
        assert img.format == ("PNG" if name.endswith("png") else "JPEG")
        assert img.size == (32, 32) and not img.getexif() and "exif" not in img.info
        before = np.asarray(Image.open(image_folder / name).convert("RGB"), dtype=int)
        assert np.abs(before - np.asarray(img.convert("RGB"), dtype=int)).mean() > 5
    recs = records(out)
    assert [r["id"] for r in recs] == sorted(inputs)  # each item exactly once, in order
    bad = next(r for r in recs if r["id"] == "b/corrupt.png")
    assert bad["status"] == "error" and "cannot read image" in bad["error"]
    good = next(r for r in recs if r["id"] == "a/img001.png")
    assert good["status"] == "anonymized" and good["method"] == "lreorg"
    assert good["epsilon"] == 1.0 and good["epsilon_total"] == 1.0 and good["faces_found"] == 1
    # nothing about the secret or the derived seeds beside the outputs
    text = "\n".join(p.read_text() for p in out.rglob("*.json*"))
    assert KEY.hex() not in text and all(r.get("seed") is None for r in recs)
    assert {r.get("seed_source") for r in recs if r["status"] == "anonymized"} == {"derived"}
    assert str(item_seed(KEY, SALT, "a/img001.png")) not in text


def test_rerun_skips_everything_and_changes_nothing(local_run, image_folder, micro):
    out, _ = local_run
    before = files(out)
    summary = anonymize_dataset(image_folder, out, KEY, options=dataset_options(**OPTIONS),
                                pipeline=micro)
    assert summary["shards_skipped"] == 6 and summary["shards_done_now"] == 0
    assert files(out) == before
    with pytest.raises(DatasetRunError, match="other settings.*options"):
        anonymize_dataset(image_folder, out, KEY,
                          options=dataset_options(**with_(OPTIONS, samples=2)), pipeline=micro)


def test_interrupted_driver_resumes_exactly_once(local_run, image_folder, micro, tmp_path):
    """Interrupted driver: a KeyboardInterrupt after two shards, then a kill between a
    shard's outputs and its manifest line (simulated), and a half-written temp file. The
    resumed run has every item exactly once, byte-identical to the uninterrupted run."""
    out, _ = local_run
    resumed = tmp_path / "resumed"
    done = []

    def stop_after_two(entry):
        done.append(entry["shard"])
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        anonymize_dataset(image_folder, resumed, KEY, options=dataset_options(**OPTIONS),
                          pipeline=micro, on_shard=stop_after_two, salt=SALT)
    manifest = resumed / "_lreorg" / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    assert len(lines) == 2 and not (resumed / "records.jsonl").exists()
    manifest.write_text(lines[0] + "\n" + lines[1][:7])  # shard 2: outputs, torn entry
    (resumed / "a" / ".img001.png.tmp-deadbeef").write_bytes(b"half")
    summary = anonymize_dataset(image_folder, resumed, KEY, options=dataset_options(**OPTIONS),
                                pipeline=micro)
    assert summary["shards_skipped"] == 1 and summary["shards_done_now"] == 5
    assert files(resumed) == files(out)
    assert sorted(manifest_shards(manifest)) == list(range(6))  # each shard once


def test_ray_engine_is_bit_identical_and_survives_a_killed_actor(local_run, image_folder,
                                                                 micro, ray_local, tmp_path):
    out, _ = local_run
    ray_out = tmp_path / "ray"
    marker = tmp_path / "killed-once"
    summary = anonymize_dataset(image_folder, ray_out, KEY, options=dataset_options(**OPTIONS),
                                pipeline=micro, engine="ray", actors=1, salt=SALT,
                                _fault={"shard": 1, "marker": str(marker)})
    assert marker.exists()  # an actor really died half-way through shard 1
    assert summary["shards_done_now"] == 6 and summary["errors"] == 1
    assert files(ray_out) == files(out)  # every image and record byte-identical
    entries = manifest_entries(ray_out / "_lreorg" / "manifest.jsonl")
    assert {e["threads"] for e in entries} == {1}  # one per CPU of the actor
    assert sorted(manifest_shards(ray_out / "_lreorg" / "manifest.jsonl")) == list(range(6))


# ---------------------------------------------------------------------------------------------
def _table_images(n: int):
    data = face_crops(n, seed=3)
    data[5] = b"broken bytes"
    return data


def test_parquet_keeps_schema_and_adds_records(micro, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    n = 60
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    table = pa.table({
        "uid": [f"u{i:03d}" for i in range(n)],
        "image": pa.array([{"bytes": b, "path": f"/private/photos/{i}.png"}
                           for i, b in enumerate(_table_images(n))], type=image_type),
        "label": list(range(n))})
    src = tmp_path / "faces.parquet"
    pq.write_table(table, src, row_group_size=17)  # shards cross row groups
    out = tmp_path / "out"
    summary = anonymize_dataset(src, out, KEY,
                                options=dataset_options(**with_(OPTIONS, shard_size=25)),
                                pipeline=micro, id_column="uid")
    assert summary["anonymized"] == n - 1 and summary["errors"] == 1
    result = pq.read_table(out / "faces.parquet")
    assert result.schema.names == ["uid", "image", "label", RECORD_COLUMN]
    assert result.schema.field("image").type == image_type
    assert result.column("uid").to_pylist() == [f"u{i:03d}" for i in range(n) if i != 5]
    assert result.column("label").to_pylist() == [i for i in range(n) if i != 5]
    row = result.slice(0, 1).to_pylist()[0]
    assert row["image"]["path"] == "0.png"  # the name only, not the private folder
    img = Image.open(io.BytesIO(row["image"]["bytes"]))
    assert img.size == (32, 32) and row["image"]["bytes"] != _table_images(n)[0]
    rec = json.loads(row[RECORD_COLUMN])
    assert rec["id"] == "u000" and rec["status"] == "anonymized"
    assert rec["seed"] is None and rec["seed_source"] == "derived"
    bad = [r for r in records(out) if r["status"] == "error"]
    assert [r["id"] for r in bad] == ["u005"]
    assert not (out / "_lreorg" / "parts").exists() or not any((out / "_lreorg" / "parts")
                                                               .iterdir())


def test_saved_hf_dataset_loads_back_with_the_same_features(micro, tmp_path):
    import datasets
    n = 50
    images = [Image.open(io.BytesIO(b)) for b in face_crops(n, seed=4)]
    ds = datasets.Dataset.from_dict({"image": images, "label": [i % 3 for i in range(n)]})
    ds = ds.cast_column("image", datasets.Image())
    src = tmp_path / "hf"
    ds.save_to_disk(str(src))
    out = tmp_path / "out"
    summary = anonymize_dataset(src, out, KEY,
                                options=dataset_options(**with_(OPTIONS, shard_size=20)),
                                pipeline=micro)
    assert summary["anonymized"] == n and summary["shards"] == 3
    back = datasets.load_from_disk(str(out))
    assert back.num_rows == n
    assert back.features["image"] == datasets.Image() and RECORD_COLUMN in back.features
    assert back["label"] == ds["label"]
    first = back[0]["image"]
    assert isinstance(first, Image.Image) and first.size == (32, 32)
    assert not np.array_equal(np.asarray(first.convert("RGB")), np.asarray(images[0]))
    assert json.loads(back[7][RECORD_COLUMN])["id"] == "row-7"


def test_photos_without_a_face_pass_or_drop(micro, tmp_path):
    from skimage import data

    src = tmp_path / "photos"
    src.mkdir()
    Image.fromarray(data.astronaut()).save(src / "astronaut.png")
    Image.fromarray(data.coffee()).save(src / "coffee.png")
    for action in ("pass", "drop"):
        out = tmp_path / action
        summary = anonymize_dataset(src, out, KEY, options=dataset_options(no_face=action),
                                    pipeline=micro)
        assert summary["anonymized"] == 1 and summary["no_face"] == 1
        recs = {r["id"]: r for r in records(out)}
        assert recs["coffee.png"]["status"] == "no-face"
        assert recs["astronaut.png"]["faces_found"] == recs["astronaut.png"]["faces"] == 1
        if action == "pass":
            assert np.array_equal(np.asarray(Image.open(out / "coffee.png")), data.coffee())
        else:
            assert not (out / "coffee.png").exists()
        assert (out / "astronaut.png").exists()


def test_cli_creates_an_owner_only_key_outside_out_and_resumes(micro, image_folder, tmp_path,
                                                               monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    out = tmp_path / "cli"
    argv = ["anonymize-dataset", str(image_folder), "--out", str(out), "--bundle",
            micro.bundle, "--backbone", micro.backbone, "--aligned", "--device", "cpu",
            "--shard-size", "100", "--quiet"]
    key_path = default_key_path(out)
    typo = [a if a != micro.bundle else micro.bundle + "-typo" for a in argv]
    assert main(typo) == 2
    assert "is not a folder with an LReOrg bundle" in capsys.readouterr().err
    assert not key_path.exists() and not out.exists()  # a refused start leaves nothing
    assert main(argv) == 1  # one corrupt item: reported, not fatal
    err = capsys.readouterr().err
    assert f"new master secret written to {key_path}" in err
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600 and not _inside(key_path, out)
    assert key_path.read_text().strip() not in "".join(
        p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())
    assert main(argv) == 1
    assert "new master secret" not in capsys.readouterr().err
    assert len(records(out)) == N_ITEMS + 1



def test_a_refused_start_writes_nothing_and_a_corrected_one_runs(micro, image_folder, tmp_path):
    out = tmp_path / "out"
    asked = []

    def key() -> bytes:
        asked.append(1)
        return KEY
    bad = PipelineSpec(bundle=str(tmp_path / "no-such-bundle"), backbone=micro.backbone,
                       device="cpu")
    with pytest.raises(ValueError, match="is not a folder with an LReOrg bundle"):
        anonymize_dataset(image_folder, out, key, options=dataset_options(**OPTIONS),
                          pipeline=bad)
    assert not out.exists() and not asked  # no run.json to be refused against, no key made
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    with pytest.raises(DatasetRunError, match="holds no items"):
        anonymize_dataset(empty, out, key, pipeline=micro)
    for bad_pool, message in [(dict(actors=0), "actors must be"),
                              (dict(threads=0), "threads must be"),
                              (dict(cpus_per_actor=0.0), "cpus_per_actor > 0")]:
        with pytest.raises(ValueError, match=message):
            anonymize_dataset(image_folder, out, key, pipeline=micro, engine="ray", **bad_pool)
    assert not out.exists() and not asked
    small = dataset_options(**with_(OPTIONS, shard_size=100))
    summary = anonymize_dataset(image_folder, out, key, options=small, pipeline=micro)
    assert summary["shards_done_now"] == 3 and asked == [1]
    anonymize_dataset(image_folder, out, key, options=small, pipeline=micro)
    assert asked == [1]  # a finished run needs no key


def test_fifos_and_dangling_links_are_recorded_never_opened(micro, tmp_path):
    import os
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    crops = face_crops(2, seed=5)
    (src / "a.png").write_bytes(crops[0])
    os.mkfifo(src / "pipe.png")  # opening it for reading would block the run forever
    (src / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (src / "linked.png").symlink_to(tmp_path / "target.png")
    (tmp_path / "target.png").write_bytes(crops[1])
    (src / "sub" / "loop").symlink_to(src)  # a link to a folder: not followed
    out = tmp_path / "out"
    summary = anonymize_dataset(src, out, KEY, options=dataset_options(**OPTIONS), pipeline=micro)
    assert summary["items"] == 4 and summary["anonymized"] == 2 and summary["errors"] == 2
    by_id = {r["id"]: r for r in records(out)}
    assert sorted(by_id) == ["a.png", "gone.png", "linked.png", "pipe.png"]
    assert by_id["pipe.png"]["error"] == ("cannot read file: not a regular file (a FIFO, socket "
                                          "or device); not read")
    assert by_id["gone.png"]["error"] == "cannot read file: a link to nothing; not read"
    assert sorted(files(out)) == ["a.png", "linked.png", "records.jsonl"]
    assert not (out / "linked.png").is_symlink()


def test_cli_interrupted_says_how_to_resume(micro, image_folder, tmp_path, monkeypatch, capsys):
    import lreorg_hub.dataset.engines as engines
    real_write, calls = engines.write_shard, []

    def ctrl_c_on_the_second_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_write(*args, **kwargs)
    monkeypatch.setattr(engines, "write_shard", ctrl_c_on_the_second_shard)
    key_path = tmp_path / "keys" / "k.key"
    out = tmp_path / "out"
    argv = ["anonymize-dataset", str(image_folder), "--out", str(out), "--bundle",
            micro.bundle, "--backbone", micro.backbone, "--aligned", "--device", "cpu",
            "--shard-size", "50", "--key-file", str(key_path), "--quiet"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert (f"lreorg: interrupted; the finished shards in {out} are kept: run the same command "
            f"with --key-file {key_path} to resume") in err
    assert manifest_shards(out / "_lreorg" / "manifest.jsonl") == [0]
    assert main(argv) == 1  # the corrupt item
    assert sorted(manifest_shards(out / "_lreorg" / "manifest.jsonl")) == [0, 1, 2, 3, 4]
