"""The bad-input cases of issue 15, run through the real `lreorg` command line, one fresh folder
each: exit status, first line of stderr, and every file outside --out that the run created,
changed or removed (by SHA-256 before and after; an input inside --out counts as outside).

    PYTHONPATH=$PWD python scripts/untouched_cases.py [--only 1.1,6.2] [--json FILE]

To measure an older version, run this script and tests/dataset_helpers.py (hashing, the micro
model) from this tree against that version's package: copy both into its checkout.

Prints a Markdown table. The key file a run creates (outside --out, on purpose) and the
--private-log file are listed apart, in the "by design" column. Runs on any version of the CLI
(the command lines are the same before and after the fixes), each command under a time limit
(a key file that is a FIFO used to hang); the /dev/zero key case runs under a 4 GiB
address-space limit (it used to exhaust memory).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import resource
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

CASES = []


def case(ident: str, title: str):
    def register(fn):
        CASES.append((ident, title, fn))
        return fn
    return register


# -- inputs ---------------------------------------------------------------------------------
def face_photo(size: int = 256) -> Image.Image:
    from skimage import data
    return Image.fromarray(data.astronaut()).resize((size, size), Image.BILINEAR)


def no_face_photo() -> Image.Image:
    from skimage import data
    return Image.fromarray(data.coffee()).resize((256, 192), Image.BILINEAR)


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def write_parquet(path: Path, cells: list[dict]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    image_type = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    pq.write_table(pa.table({"image": pa.array(cells, type=image_type)}), path)


# -- running and snapshots ------------------------------------------------------------------
def snapshot(root: Path, skip: Path | None, extra: list[Path] = ()) -> dict[str, str]:
    """path → digest of every entry under root outside ``skip`` (tests/dataset_helpers.py:
    links never followed, only regular files opened); plus ``extra`` files wherever they are
    (an input inside --out)."""
    from dataset_helpers import digests

    found = digests(root, skip)
    for p in extra:
        if p.is_file() and not p.is_symlink():
            found[str(p.relative_to(root))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return found


def changes(before: dict, after: dict) -> list[str]:
    out = []
    for k in sorted(set(before) | set(after)):
        if k not in before:
            out.append(f"+{k}")
        elif k not in after:
            out.append(f"-{k}")
        elif before[k] != after[k]:
            out.append(f"~{k}")
    return out


def _limits():
    resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))


def lreorg(argv: list[str], tmp: Path, *, timeout: float = 300, cwd: Path | None = None,
           env: dict | None = None, wait: bool = True, limit_memory: bool = False):
    environment = {**os.environ, "XDG_CONFIG_HOME": str(tmp / "config"),
                   "HOME": str(tmp / "home"), "PYTHONPATH": str(ROOT),
                   "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "lreorg_hub.cli", *argv]
    proc = subprocess.Popen(cmd, cwd=cwd or tmp, env=environment, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, errors="replace",
                            preexec_fn=_limits if limit_memory else None)
    if not wait:
        return proc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return "timeout", f"(no answer after {timeout:.0f} s: killed)", err
    return proc.returncode, out, err


def first_line(err: str) -> str:
    import re
    lines = [ln for ln in err.splitlines() if ln.strip() and "it/s" not in ln
             and not ln.startswith(("anonymizing", "\r", "Saving the dataset", "Creating"))
             and not re.match(r"\[?\d{4}-\d\d-\d\d \d\d:", ln)]  # Ray's own log lines
    return lines[0] if lines else ""


def last_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def run_case(tmp: Path, argv, out: Path | None, *, protected=(), by_design=(), **kw):
    """Run one command; (exit, first line, outside changes, by-design writes, stderr)."""
    before = snapshot(tmp, out, list(protected))
    code, _, err = lreorg(argv, tmp, **kw)
    after = snapshot(tmp, out, list(protected))
    diff = changes(before, after)
    design = [d for d in diff if any(d[1:].startswith(p) for p in (*by_design, *THIRD_PARTY))]
    outside = [d for d in diff if d not in design]
    return {"exit": code, "first_line": first_line(err), "last_line": last_line(err),
            "outside": outside, "by_design": design, "stderr": err}


#: What other programs keep in $HOME (Ray's session token, caches): not the run's writes.
THIRD_PARTY = ("home/.cache", "home/.ray", "config/ray")


KEY_DIR = "config/lreorg/dataset-keys"


# -- item 1: originals -----------------------------------------------------------------------
@case("1.1", "CLI: a photo inside --out (`anonymize out/a.png --out out`)")
def _(tmp):
    (tmp / "out").mkdir()
    face_photo().save(tmp / "out" / "a.png")
    r = run_case(tmp, ["anonymize", "out/a.png", "--out", "out", "--method", "blur",
                       "--quiet"], tmp / "out", protected=[tmp / "out" / "a.png"])
    return r


@case("1.2", "CLI: --out is the input folder (`anonymize photos photos/a.png --out photos`)")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "a.png")
    return run_case(tmp, ["anonymize", "photos", "photos/a.png", "--out", "photos",
                          "--method", "blur", "--quiet"], tmp / "photos",
                    protected=[tmp / "photos" / "a.png"])


@case("1.3", "CLI: a file link planted in --out (out/a.png → ../decoy.png)")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "a.png")
    no_face_photo().save(tmp / "decoy.png")
    (tmp / "out").mkdir()
    os.symlink("../decoy.png", tmp / "out" / "a.png")
    return run_case(tmp, ["anonymize", "photos", "--out", "out", "--method", "blur",
                          "--quiet"], tmp / "out")


@case("1.4", "CLI: a folder link planted in --out (out/nested → ../elsewhere)")
def _(tmp):
    (tmp / "photos" / "nested").mkdir(parents=True)
    face_photo().save(tmp / "photos" / "nested" / "b.png")
    (tmp / "elsewhere").mkdir()
    (tmp / "elsewhere" / "keep.txt").write_text("mine")
    (tmp / "out").mkdir()
    os.symlink("../elsewhere", tmp / "out" / "nested")
    return run_case(tmp, ["anonymize", "photos", "--out", "out", "--method", "blur",
                          "--quiet"], tmp / "out")


def dataset(argv, tmp, out, **kw):
    return run_case(tmp, ["anonymize-dataset", *argv, "--out", str(out), "--quiet"], out,
                    by_design=[KEY_DIR, "k.key"], **kw)


@case("1.5", "dataset: a Parquet file inside --out (`out/faces.parquet --out out`)")
def _(tmp):
    (tmp / "out").mkdir()
    write_parquet(tmp / "out" / "faces.parquet", [{"bytes": png_bytes(face_photo()),
                                                   "path": "a.png"}])
    return dataset(["out/faces.parquet", "--method", "blur"], tmp, tmp / "out",
                   protected=[tmp / "out" / "faces.parquet"])


@case("1.6", "dataset: a saved dataset inside --out (`out/hf --out out`)")
def _(tmp):
    import datasets
    ds = datasets.Dataset.from_dict({"image": [face_photo()]}).cast_column(
        "image", datasets.Image())
    ds.save_to_disk(str(tmp / "out" / "hf"))
    files = [p for p in (tmp / "out" / "hf").rglob("*") if p.is_file()]
    return dataset(["out/hf", "--method", "blur"], tmp, tmp / "out", protected=files)


@case("1.7", "dataset: an image folder inside --out (`out/photos --out out`)")
def _(tmp):
    (tmp / "out" / "photos").mkdir(parents=True)
    face_photo().save(tmp / "out" / "photos" / "a.png")
    return dataset(["out/photos", "--method", "blur"], tmp, tmp / "out",
                   protected=[tmp / "out" / "photos" / "a.png"])


def _planted_folder_link(tmp, engine):
    (tmp / "photos" / "sub").mkdir(parents=True)
    face_photo().save(tmp / "photos" / "sub" / "b.png")
    (tmp / "elsewhere").mkdir()
    (tmp / "elsewhere" / "keep.txt").write_text("mine")
    (tmp / "out").mkdir()
    os.symlink("../elsewhere", tmp / "out" / "sub")
    return dataset(["photos", "--method", "blur", "--engine", engine, "--key-file", "k.key",
                    "--cpus-per-actor", "1"], tmp, tmp / "out")


@case("1.8", "dataset (local): a folder link planted in --out (out/sub → ../elsewhere)")
def _(tmp):
    return _planted_folder_link(tmp, "local")


@case("1.9", "dataset (Ray): a folder link planted in --out (out/sub → ../elsewhere)")
def _(tmp):
    return _planted_folder_link(tmp, "ray")


def _planted_on_resume(tmp, engine):
    """A run in --out, one shard forgotten so that a rerun redoes it, and its folder replaced
    by a link to a folder outside --out before the rerun."""
    for sub in ("a", "b"):
        (tmp / "photos" / sub).mkdir(parents=True)
        face_photo().save(tmp / "photos" / sub / "p.png")
    argv = ["photos", "--method", "blur", "--engine", engine, "--key-file", "k.key",
            "--shard-size", "1", "--cpus-per-actor", "1"]
    lreorg(["anonymize-dataset", *argv, "--out", "out", "--quiet"], tmp)
    manifest = tmp / "out" / "_lreorg" / "manifest.jsonl"
    if manifest.is_file():
        manifest.write_text("".join(ln + "\n" for ln in manifest.read_text().splitlines()
                                    if '"shard": 1' not in ln and "finalized" not in ln))
    shutil.rmtree(tmp / "out" / "b", ignore_errors=True)
    (tmp / "elsewhere").mkdir()
    (tmp / "elsewhere" / "keep.txt").write_text("mine")
    os.symlink("../elsewhere", tmp / "out" / "b")
    return dataset(argv, tmp, tmp / "out")


@case("1.11", "dataset (local), resumed: a folder link planted in --out (out/b → ../elsewhere)")
def _(tmp):
    return _planted_on_resume(tmp, "local")


@case("1.12", "dataset (Ray), resumed: a folder link planted in --out (out/b → ../elsewhere)")
def _(tmp):
    return _planted_on_resume(tmp, "ray")


@case("1.10", "dataset: the bookkeeping folder planted as a link (out/_lreorg → ../elsewhere)")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "a.png")
    (tmp / "elsewhere").mkdir()
    (tmp / "out").mkdir()
    os.symlink("../elsewhere", tmp / "out" / "_lreorg")
    return dataset(["photos", "--method", "blur", "--key-file", "k.key"], tmp, tmp / "out")


# -- item 2: collisions and concurrent runs ----------------------------------------------------
def _outputs(tmp: Path, names: list[str]) -> dict:
    (tmp / "photos").mkdir()
    for i, name in enumerate(names):
        face_photo(224 + 16 * i).save(tmp / "photos" / name,
                                      format="JPEG" if name.endswith(".jpg") else "PNG")
    r = run_case(tmp, ["anonymize", "photos", "--out", "out", "--method", "blur", "--quiet"],
                 tmp / "out")
    # Each input's own output: a PNG of its size and a record that says so.
    kept = 0
    try:
        summary = json.loads((tmp / "out" / "summary.json").read_text())
        for item in summary.get("processed", []):
            png = tmp / "out" / item["output"]
            rec = tmp / "out" / (item["output"][:-4] + ".json")
            rec = rec if rec.is_file() else png.with_suffix(".json")
            size = Image.open(png).size if png.is_file() else None
            want = Image.open(item["input"] if os.path.isabs(item["input"])
                              else tmp / item["input"]).size
            ok_rec = rec.is_file() and json.loads(rec.read_text()).get("size") == list(want)
            kept += size == want and ok_rec
    except (OSError, ValueError, KeyError) as e:
        r["note"] = f"summary unreadable: {type(e).__name__}"
    r["note"] = r.get("note") or f"{kept} of {len(names)} inputs kept their own image and record"
    return r


@case("2.1", "CLI: x.jpg and x.json.png in one folder")
def _(tmp):
    return _outputs(tmp, ["x.jpg", "x.json.png"])


@case("2.2", "CLI: a photo named summary.tar.png")
def _(tmp):
    return _outputs(tmp, ["a.png", "summary.tar.png"])


@case("2.3", "CLI: a.jpg and a.png in one folder")
def _(tmp):
    return _outputs(tmp, ["a.jpg", "a.png"])


def _two_at_once(tmp, argv, out):
    """Start a run, wait until it has started writing, start a second on the same --out."""
    first = lreorg(argv, tmp, wait=False)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:
        if any(p.is_file() for p in out.rglob("*.png")):
            break
        time.sleep(0.2)
    before = snapshot(tmp, out)
    overlapping = first.poll() is None  # the first one is still writing when this starts
    code, _, err = lreorg(argv, tmp)
    first.communicate(timeout=600)
    outside = changes(before, snapshot(tmp, out))
    return {"exit": code, "first_line": first_line(err),
            "outside": [d for d in outside if not d[1:].startswith(KEY_DIR)],
            "by_design": [], "stderr": err,
            "note": f"second started while the first was writing: {overlapping}; first run "
                    f"exit {first.returncode}"}


@case("2.4", "dataset: a second run on the same --out while the first runs")
def _(tmp):
    (tmp / "photos").mkdir()
    for i in range(60):
        face_photo(512).save(tmp / "photos" / f"p{i:02d}.png")
    return _two_at_once(tmp, ["anonymize-dataset", "photos", "--out", "out", "--method",
                              "blur", "--shard-size", "1", "--key-file", "k.key", "--quiet"],
                        tmp / "out")


@case("2.5", "CLI: a second `anonymize` on the same --out while the first runs")
def _(tmp):
    (tmp / "photos").mkdir()
    for i in range(60):
        face_photo(512).save(tmp / "photos" / f"p{i:02d}.png")
    return _two_at_once(tmp, ["anonymize", "photos", "--out", "out", "--method", "blur",
                              "--quiet"], tmp / "out")


# -- item 3: missed faces --------------------------------------------------------------------
@case("3.1", "dataset, default --no-face: a photo whose face is not found")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "a.png")
    no_face_photo().save(tmp / "photos" / "missed.png")
    r = dataset(["photos", "--method", "blur", "--key-file", "k.key"], tmp, tmp / "out")
    published = (tmp / "out" / "missed.png").is_file()
    r["note"] = "missed.png published" + (" unchanged" if published and np.array_equal(
        np.asarray(Image.open(tmp / "out" / "missed.png")), np.asarray(no_face_photo()))
        else "") if published else "missed.png not published"
    return r


@case("3.2", "dataset, --no-face pass: what the passed item's record says")
def _(tmp):
    (tmp / "photos").mkdir()
    no_face_photo().save(tmp / "photos" / "missed.png")
    r = dataset(["photos", "--method", "blur", "--key-file", "k.key", "--no-face", "pass"],
                tmp, tmp / "out")
    try:
        rec = json.loads((tmp / "out" / "records.jsonl").read_text().splitlines()[0])
        r["note"] = "record: " + json.dumps({k: v for k, v in rec.items() if k != "id"})
    except (OSError, IndexError, ValueError):
        r["note"] = "no record"
    return r


# -- item 4: every method on datasets --------------------------------------------------------
def _micro(tmp: Path) -> tuple[str, str]:
    from dataset_helpers import write_micro_model
    bundle, backbone = write_micro_model(tmp / "micro")
    return str(bundle), str(backbone)


def _crops(folder: Path, n: int, seed: int = 0) -> None:
    from dataset_helpers import face_crops
    folder.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(face_crops(n, seed=seed)):
        (folder / f"c{i}.png").write_bytes(data)


for _method in ("blur", "pixelate", "mask"):
    @case(f"4.{('blur', 'pixelate', 'mask').index(_method) + 1}",
          f"dataset --method {_method} (local)")
    def _(tmp, method=_method):
        (tmp / "photos").mkdir()
        face_photo().save(tmp / "photos" / "a.png")
        return dataset(["photos", "--method", method, "--key-file", "k.key"], tmp,
                       tmp / "out")


@case("4.4", "dataset --method k-anonymity --aligned (local, micro bundle)")
def _(tmp):
    bundle, backbone = _micro(tmp)
    _crops(tmp / "crops", 3)
    return dataset(["crops", "--method", "k-anonymity", "--aligned", "--bundle", bundle,
                    "--backbone", backbone, "--device", "cpu", "--key-file", "k.key"],
                   tmp, tmp / "out")


@case("4.5", "dataset: a refused start (`--method blur --epsilon 1`) writes nothing")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "a.png")
    r = dataset(["photos", "--method", "blur", "--epsilon", "1"], tmp, tmp / "out")
    r["note"] = f"--out exists: {(tmp / 'out').exists()}; key created: " \
                f"{(tmp / KEY_DIR).exists()}"
    return r


# -- item 5: table cells ---------------------------------------------------------------------
def _cells(tmp: Path, path: str, *, cwd: Path | None = None, extra=()):
    (tmp / "data").mkdir(exist_ok=True)
    write_parquet(tmp / "data" / "faces.parquet", [{"bytes": None, "path": path}])
    r = dataset([str(tmp / "data/faces.parquet"), "--method", "blur", "--key-file",
                 str(tmp / "k.key"), *extra], tmp, tmp / "out", cwd=cwd)
    return _first_record(tmp, r)


@case("5.1", "Parquet cell path: an absolute path to a photo outside the dataset")
def _(tmp):
    (tmp / "private").mkdir()
    face_photo().save(tmp / "private" / "someone.png")
    return _cells(tmp, str(tmp / "private" / "someone.png"))


@case("5.2", "Parquet cell path: /etc/passwd")
def _(tmp):
    return _cells(tmp, "/etc/passwd")


@case("5.3", "Parquet cell path: ../private/someone.png (a `..` escape)")
def _(tmp):
    (tmp / "private").mkdir()
    face_photo().save(tmp / "private" / "someone.png")
    (tmp / "data").mkdir()
    return _cells(tmp, "../private/someone.png", cwd=tmp / "data")


@case("5.4", "Parquet cell path: /proc/self/environ")
def _(tmp):
    return _cells(tmp, "/proc/self/environ")


@case("5.5", "Parquet cell path: a link in the dataset folder to a file outside it")
def _(tmp):
    (tmp / "private").mkdir()
    face_photo().save(tmp / "private" / "someone.png")
    (tmp / "data").mkdir()
    os.symlink("../private/someone.png", tmp / "data" / "link.png")
    return _cells(tmp, "link.png", cwd=tmp / "data")


@case("5.6", "Parquet cell path: a 200 MB file (sparse) beside the table")
def _(tmp):
    (tmp / "data").mkdir()
    with open(tmp / "data" / "big.png", "wb") as f:
        f.truncate(200 << 20)
    return _cells(tmp, "big.png", cwd=tmp / "data")


def _datasets_parquet(tmp: Path, paths: list[str]) -> None:
    """A Parquet file as `datasets` writes one (to_parquet) for images it did not embed:
    cells {bytes: null, path}."""
    import datasets
    ds = datasets.Dataset.from_dict({"image": paths}).cast_column("image", datasets.Image())
    ds.to_parquet(str(tmp / "data" / "faces.parquet"))


@case("5.7", "`datasets` Parquet whose image cells hold a relative path and no bytes")
def _(tmp):
    (tmp / "data").mkdir()
    face_photo().save(tmp / "data" / "a.png")
    old = os.getcwd()
    os.chdir(tmp / "data")  # datasets measures the files by the paths as given
    try:
        _datasets_parquet(tmp, ["a.png"])
    finally:
        os.chdir(old)
    r = dataset([str(tmp / "data/faces.parquet"), "--method", "blur", "--key-file",
                 str(tmp / "k.key")], tmp, tmp / "out", cwd=tmp / "data")
    return _first_record(tmp, r)


@case("5.8", "`datasets` Parquet with absolute image paths, --cell-root naming their folder")
def _(tmp):
    (tmp / "data" / "images").mkdir(parents=True)
    face_photo().save(tmp / "data" / "images" / "a.png")
    _datasets_parquet(tmp, [str(tmp / "data" / "images" / "a.png")])
    r = dataset(["data/faces.parquet", "--method", "blur", "--key-file", "k.key",
                 "--cell-root", "data/images"], tmp, tmp / "out")
    return _first_record(tmp, r)


def _first_record(tmp: Path, r: dict) -> dict:
    try:
        rec = json.loads((tmp / "out" / "records.jsonl").read_text().splitlines()[0])
        r["note"] = f"item {rec['status']}: {rec.get('error') or rec.get('method')}"
    except (OSError, IndexError, ValueError, KeyError):
        r["note"] = "no record"
    return r


# -- item 6: keys ----------------------------------------------------------------------------
def _key_case(tmp, make, key_arg=None, **kw):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "a.png")
    key = make(tmp)
    return dataset([str(tmp / "photos"), "--method", "blur", "--key-file",
                    key_arg or str(key)], tmp, tmp / "out", **kw)


@case("6.1", "key file readable by group and others (0644)")
def _(tmp):
    def make(t):
        (t / "k.key").write_text(os.urandom(32).hex() + "\n")
        os.chmod(t / "k.key", 0o644)
        return t / "k.key"
    return _key_case(tmp, make)


@case("6.2", "key file is a FIFO")
def _(tmp):
    def make(t):
        os.mkfifo(t / "k.key")
        return t / "k.key"
    return _key_case(tmp, make, timeout=30)


@case("6.3", "key file is /dev/zero (4 GiB address-space limit)")
def _(tmp):
    return _key_case(tmp, lambda t: Path("/dev/zero"), timeout=120, limit_memory=True)


@case("6.4", "key file given as --key-file=~/k.key (no shell expansion)")
def _(tmp):
    (tmp / "home").mkdir()
    (tmp / "work").mkdir()
    r = _key_case(tmp, lambda t: None, key_arg="~/k.key", cwd=tmp / "work")
    r["note"] = f"key at ~/k.key: {(tmp / 'home' / 'k.key').is_file()}; folder named '~' " \
                f"made: {(tmp / 'work' / '~').exists()}"
    r["by_design"] += [d for d in r["outside"] if d[1:].startswith(("home/k.key",
                                                                     "work/~"))]
    r["outside"] = [d for d in r["outside"] if d not in r["by_design"]]
    return r


@case("6.5", "resume a run with a different key")
def _(tmp):
    bundle, backbone = _micro(tmp)
    _crops(tmp / "crops", 4)
    common = ["crops", "--aligned", "--bundle", bundle, "--backbone", backbone, "--device",
              "cpu", "--shard-size", "2"]
    (tmp / "k1.key").write_text(os.urandom(32).hex() + "\n")
    os.chmod(tmp / "k1.key", 0o600)
    (tmp / "k2.key").write_text(os.urandom(32).hex() + "\n")
    os.chmod(tmp / "k2.key", 0o600)
    code, _, err = lreorg(["anonymize-dataset", *common, "--out", "out", "--key-file",
                           "k1.key", "--quiet"], tmp)
    # forget shard 1 so that the second run has work to do
    manifest = tmp / "out" / "_lreorg" / "manifest.jsonl"
    if manifest.is_file():
        lines = [ln for ln in manifest.read_text().splitlines()
                 if '"shard": 1' not in ln and "finalized" not in ln]
        manifest.write_text("\n".join(lines) + "\n")
    return dataset([*common, "--key-file", "k2.key"], tmp, tmp / "out")


@case("6.6", "two datasets with ids row-0, row-1 … and the same photos, one key")
def _(tmp):
    bundle, backbone = _micro(tmp)
    from dataset_helpers import face_crops
    crops = face_crops(2, seed=7)
    for name in ("one", "two"):
        (tmp / name).mkdir()
        write_parquet(tmp / name / "faces.parquet", [{"bytes": c, "path": None}
                                                     for c in crops])
    (tmp / "k.key").write_text(os.urandom(32).hex() + "\n")
    os.chmod(tmp / "k.key", 0o600)
    r = None
    for name in ("one", "two"):
        r = dataset([f"{name}/faces.parquet", "--aligned", "--bundle", bundle, "--backbone",
                     backbone, "--device", "cpu", "--key-file", "k.key"], tmp,
                    tmp / f"out-{name}")
    import pyarrow.parquet as pq
    try:
        a, b = (pq.read_table(tmp / f"out-{n}" / "faces.parquet").column("image").to_pylist()
                for n in ("one", "two"))
        r["note"] = "row-0 outputs identical (same coins)" if a[0]["bytes"] == b[0]["bytes"] \
            else "row-0 outputs differ (own coins per run)"
    except OSError:
        r["note"] = "no output"
    return r


# -- item 7: records and the private log -----------------------------------------------------
@case("7.1", "CLI NAME.json and dataset record: which fields")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "alice.png")
    r = run_case(tmp, ["anonymize", "photos", "--out", "out", "--method", "blur", "--quiet"],
                 tmp / "out")
    try:
        rec = json.loads((tmp / "out" / "alice.json").read_text())
        text = json.dumps(rec)
        r["note"] = f"NAME.json keys {sorted(rec)}; input path in it: " \
                    f"{'photos/alice' in text}; 'box'/'score' in it: " \
                    f"{'box' in text or 'score' in text}"
    except OSError:
        r["note"] = "no record"
    return r


@case("7.2", "CLI --private-log outside --out")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "alice.png")
    r = run_case(tmp, ["anonymize", "photos", "--out", "out", "--method", "blur", "--quiet",
                       "--private-log", "private.jsonl"], tmp / "out",
                 by_design=["private.jsonl"])
    log = tmp / "private.jsonl"
    r["note"] = (f"log mode {stat.S_IMODE(log.stat().st_mode):o}, "
                 f"{len(log.read_text().splitlines())} line(s)") if log.is_file() else "no log"
    return r


@case("7.3", "CLI --private-log inside --out")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "alice.png")
    return run_case(tmp, ["anonymize", "photos", "--out", "out", "--method", "blur",
                          "--quiet", "--private-log", "out/private.jsonl"], tmp / "out")


# -- item 9: one line ------------------------------------------------------------------------
@case("9.1", "CLI: a broken photo named 'evil\\nlreorg: 0 failed.png'")
def _(tmp):
    (tmp / "photos").mkdir()
    face_photo().save(tmp / "photos" / "a.png")
    (tmp / "photos" / "evil\nlreorg: 0 failed.png").write_bytes(b"not an image")
    r = run_case(tmp, ["anonymize", "photos", "--out", "out", "--method", "blur", "--quiet"],
                 tmp / "out")
    skipped = [ln for ln in r["stderr"].splitlines() if "skipped" in ln]
    try:
        summary = json.loads((tmp / "out" / "summary.json").read_text())
        entries = len(summary.get("processed", [])) + len(summary.get("failed", []))
    except OSError:
        entries = "?"
    r["note"] = f"stderr lines for it: {len(r['stderr'].splitlines())} " \
                f"(skipped line: {skipped[0] if skipped else None!r}); summary entries: " \
                f"{entries} for 2 inputs"
    return r


# -- item 10: limits -------------------------------------------------------------------------
@case("10.1", "`anonymize --help` and `anonymize-dataset --help` state the limits")
def _(tmp):
    notes = []
    for cmd in ("anonymize", "anonymize-dataset"):
        code, out, err = lreorg([cmd, "--help"], tmp)
        text = " ".join(out.split())
        notes.append(f"{cmd}: 50 MP {'50 megapixel' in text}, --max-faces "
                     f"{'--max-faces' in text}")
    return {"exit": code, "first_line": "", "outside": [], "by_design": [], "stderr": "",
            "note": "; ".join(notes)}


@case("10.2", "CLI: `--max-faces 1` on a photo with two faces (micro bundle)")
def _(tmp):
    bundle, backbone = _micro(tmp)
    (tmp / "photos").mkdir()
    a = face_photo()
    two = Image.new("RGB", (512, 256))
    two.paste(a, (0, 0))
    two.paste(a, (256, 0))
    two.save(tmp / "photos" / "two.png")
    r = run_case(tmp, ["anonymize", "photos", "--out", "out", "--bundle", bundle, "--backbone",
                       backbone, "--device", "cpu", "--quiet", "--max-faces", "1"], tmp / "out")
    return r


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", help="comma-separated case numbers")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    results = []
    for ident, title, fn in CASES:
        if only and ident not in only:
            continue
        tmp = Path(tempfile.mkdtemp(prefix=f"case{ident}-"))
        start = time.time()
        try:
            r = fn(tmp)
        except Exception as e:  # the script must go on: a case that breaks is a row too
            r = {"exit": "script error", "first_line": f"{type(e).__name__}: {e}",
                 "outside": [], "by_design": [], "stderr": ""}
        finally:
            for p in tmp.rglob("*"):  # FIFOs and read-only files must not stop the cleanup
                if p.is_fifo():
                    p.unlink()
            shutil.rmtree(tmp, ignore_errors=True)
        r.pop("stderr", None)
        r.update(case=ident, title=title, seconds=round(time.time() - start, 1))
        results.append(r)
        print(f"{ident}: exit {r['exit']} | {r['first_line'][:150]} | last: "
              f"{r.get('last_line', '')[:200]} | outside: "
              f"{r['outside'] or 'none'} | {r.get('note', '')}", file=sys.stderr, flush=True)
    print("| case | what | exit | first line | written outside --out | by design | note |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        line = r["first_line"].replace("|", "\\|")
        print(f"| {r['case']} | {r['title']} | {r['exit']} | {line} | "
              f"{', '.join(r['outside']) or 'none'} | {', '.join(r['by_design']) or ''} | "
              f"{r.get('note', '')} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
