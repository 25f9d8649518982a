"""anonymize-dataset on a folder of videos: one clip per task on both engines, the same
exactly-once rules (a killed run resumes, nothing twice, nothing half-written), a record per
clip, per-clip secrets from the key file and the run's salt (the photos' rule) that are never
written, and the output folder's rules (OutDir: no link followed; the private log)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest

from dataset_helpers import micro  # noqa: F401 (fixture)
from lreorg_hub.cli import main
from lreorg_hub.dataset import DatasetOptions, anonymize_dataset
from lreorg_hub.demo_clips import face_sprite, scene_frames, write_clip
from lreorg_hub.image.video import probe_video
from lreorg_hub.pipeline import ProtectOptions

ROOT = Path(__file__).resolve().parents[1]
KEY = bytes(range(32))
SALT = "00112233445566778899aabbccddeeff"  # one salt for runs compared byte for byte

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def clips(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("clips")
    sprite = face_sprite(astronaut, (182, 63, 267, 174))
    (root / "street").mkdir()
    write_clip(root / "pan.mov", scene_frames("pan", sprite, 8, (160, 120)), fps=24,
               audio_seconds=0.3, metadata={"location": "+48.8584+002.2945/"})
    write_clip(root / "street" / "crossing.mp4", scene_frames("crossing", sprite, 8,
                                                              (160, 120)), fps=24)
    write_clip(root / "street" / "crossing.mkv", scene_frames("pan", sprite, 6, (160, 120)),
               fps=24)
    write_clip(root / "wall.mp4", [scene_frames("still", sprite, 1, (160, 120)).__next__()
                                   * 0] * 4, fps=24)
    (root / "street" / "broken.avi").write_bytes(b"RIFF\x00\x00\x00\x00AVI LIST" * 4)
    return root


def options(**kwargs) -> DatasetOptions:
    run = {k: kwargs.pop(k) for k in ("no_face", "batch_size") if k in kwargs}
    return DatasetOptions(protect=ProtectOptions(**kwargs), **run)


def files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and "_lreorg" not in p.parts}


def records(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in map(json.loads, (out / "records.jsonl").read_text()
                                    .splitlines())}


@pytest.fixture(scope="module")
def local_run(micro, clips, tmp_path_factory):
    out = tmp_path_factory.mktemp("local")
    log = tmp_path_factory.mktemp("private") / "log.jsonl"
    summary = anonymize_dataset(clips, out, KEY, options=options(), pipeline=micro, threads=1,
                                salt=SALT, private_log=log)
    return out, summary, log


def test_one_clip_per_task_with_a_record_each(local_run, clips):
    out, summary, _ = local_run
    assert (summary["items"], summary["shards"]) == (5, 5)      # a shard per clip
    assert (summary["anonymized"], summary["no_face"], summary["errors"]) == (3, 1, 1)
    assert summary["no_face_items"] == ["wall.mp4"]             # dropped (the default)
    assert sorted(files(out)) == ["pan.mp4", "records.jsonl", "street/crossing.mkv.mp4",
                                  "street/crossing.mp4"]
    rec = records(out)
    assert rec["pan.mov"]["status"] == "anonymized" and rec["pan.mov"]["frames"] == 8
    assert rec["street/crossing.mp4"]["extra"]["video"]["tracks"] == 2
    assert rec["street/crossing.mkv"]["output"] == "street/crossing.mkv.mp4"
    assert (rec["wall.mp4"]["status"], rec["wall.mp4"]["output"]) == ("no-face", "dropped")
    assert rec["street/broken.avi"]["status"] == "error"
    # named by its id, never by where the source lies
    assert rec["street/broken.avi"]["error"].startswith(
        "VideoLoadError: cannot read video 'street/broken.avi': ")
    assert str(clips) not in (out / "records.jsonl").read_text()
    run = json.loads((out / "_lreorg" / "run.json").read_text())
    assert (run["version"], run["format"], run["salt"]) == (2, "videos", SALT)
    assert KEY.hex() not in json.dumps(run) and len(run["key_fingerprint"]) == 64
    for r in rec.values():
        if r["status"] == "anonymized":
            assert (r["seed"], r["seed_source"]) == (None, "derived")
    text = (out / "records.jsonl").read_text()
    assert not re.search(r"\d{10,}", text) and KEY.hex() not in text
    pan = probe_video(out / "pan.mp4")
    assert (pan.frames, pan.audio) == (8, "aac")
    assert b"+48.8584" not in (out / "pan.mp4").read_bytes()


def test_rerun_skips_and_an_interrupted_run_resumes_exactly_once(local_run, micro, clips,
                                                                 tmp_path):
    out, _, _ = local_run
    before = files(out)
    again = anonymize_dataset(clips, out, KEY, options=options(), pipeline=micro)
    assert again["shards_skipped"] == 5 and files(out) == before
    resumed, done = tmp_path / "resumed", []

    def stop_after_two(entry):
        done.append(entry["shard"])
        if len(done) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        anonymize_dataset(clips, resumed, KEY, options=options(), pipeline=micro, threads=1,
                          on_shard=stop_after_two, salt=SALT)
    (resumed / "street").mkdir(exist_ok=True)
    (resumed / "street" / ".crossing.mp4.tmp-deadbeef").write_bytes(b"half a clip")
    summary = anonymize_dataset(clips, resumed, KEY, options=options(), pipeline=micro,
                                threads=1)
    assert summary["shards_skipped"] == 2 and summary["shards_done_now"] == 3
    assert files(resumed) == before                         # same bytes, each clip once


def test_ray_engine_gives_the_same_clips(local_run, micro, clips, tmp_path):
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=150 * 1024 ** 2,
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}})
    try:
        out, _, _ = local_run
        summary = anonymize_dataset(clips, tmp_path / "ray", KEY, options=options(),
                                    pipeline=micro, engine="ray", actors=1, salt=SALT)
    finally:
        if started:
            ray.shutdown()
    assert summary["shards_done_now"] == 5 and summary["errors"] == 1
    assert files(tmp_path / "ray") == files(out)


def test_video_options_are_checked_before_anything_is_written(micro, clips, tmp_path):
    for bad, message in [(dict(samples=2), "samples must be 1"),
                         (dict(aligned=True), "aligned does not apply to videos")]:
        with pytest.raises(ValueError, match=message):
            anonymize_dataset(clips, tmp_path / "out", KEY, options=options(**bad),
                              pipeline=micro)
        assert not (tmp_path / "out").exists()


def test_a_folder_with_images_and_videos_is_refused(clips, tmp_path, micro):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "a.mp4").write_bytes((clips / "pan.mov").read_bytes())
    (mixed / "b.png").write_bytes(b"\x89PNG")
    with pytest.raises(ValueError, match="holds both images and videos: run them separately"):
        anonymize_dataset(mixed, tmp_path / "out", KEY, pipeline=micro)


def test_cli_takes_a_folder_of_videos(micro, clips, tmp_path, capsys):
    key = tmp_path / "k.key"
    code = main(["anonymize-dataset", str(clips), "--out", str(tmp_path / "out"), "--bundle",
                 micro.bundle, "--backbone", micro.backbone, "--key-file", str(key),
                 "--device", "cpu", "--no-face", "drop", "--quiet"])
    assert code == 1                                      # the broken clip
    assert sorted(files(tmp_path / "out")) == ["pan.mp4", "records.jsonl",
                                               "street/crossing.mkv.mp4",
                                               "street/crossing.mp4"]   # wall.mp4 dropped


def test_a_clips_secret_is_its_item_secret_from_the_key_and_the_salt(local_run, micro, clips,
                                                                     tmp_path):
    """One rule for photos and clips: the clip's run secret is item_secret(key, salt, id)."""
    from lreorg_hub.dataset.engines import local_pipeline
    from lreorg_hub.dataset.keys import item_secret
    from lreorg_hub.pipeline.video import VideoOptions

    out, _, _ = local_run
    pipe = local_pipeline(micro)
    alone = tmp_path / "alone.mp4"
    pipe.anonymize_video(clips / "pan.mov", alone, options().protect,
                         secret=item_secret(KEY, SALT, "pan.mov"),
                         video=VideoOptions(batch_frames=16))
    assert alone.read_bytes() == (out / "pan.mp4").read_bytes()


def test_the_private_log_has_each_clips_path_and_tracks(local_run, clips):
    out, _, log = local_run
    entries = {e["id"]: e for e in map(json.loads, log.read_text().splitlines())}
    assert set(entries) == {"pan.mov", "street/crossing.mp4", "street/crossing.mkv",
                            "wall.mp4", "street/broken.avi"}
    pan = entries["pan.mov"]
    assert (pan["input"], pan["status"], pan["output"]) == (str(clips / "pan.mov"),
                                                            "anonymized", "pan.mp4")
    assert [t["track"] for t in pan["diagnostics"]["tracks"]] == [0]
    assert len(entries["street/crossing.mp4"]["diagnostics"]["tracks"]) == 2
    assert entries["wall.mp4"]["status"] == "no-face"
    broken = entries["street/broken.avi"]
    assert broken["status"] == "error" and str(clips / "street" / "broken.avi") in \
        broken["error"]
    assert os.stat(log).st_mode & 0o077 == 0


def test_a_link_planted_in_out_is_never_followed(micro, clips, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep.txt").write_text("untouched")
    out = tmp_path / "out"

    def stop(entry):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):   # a run started (pan.mov done), then stopped
        anonymize_dataset(clips, out, KEY, options=options(), pipeline=micro, threads=1,
                          salt=SALT, on_shard=stop)
    os.symlink(elsewhere, out / "street")   # where the clips of street/ go
    before = hashlib.sha256((elsewhere / "keep.txt").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match=re.escape(
            f"{out / 'street'} is a symbolic link, and links inside --out are never "
            f"followed: remove it, or use another --out")):
        anonymize_dataset(clips, out, KEY, options=options(), pipeline=micro, threads=1,
                          salt=SALT)
    assert sorted(os.listdir(elsewhere)) == ["keep.txt"]
    assert hashlib.sha256((elsewhere / "keep.txt").read_bytes()).hexdigest() == before


def test_no_face_pass_keeps_the_clip_and_says_so(micro, clips, tmp_path):
    only = tmp_path / "only"
    only.mkdir()
    (only / "wall.mp4").write_bytes((clips / "wall.mp4").read_bytes())
    out = tmp_path / "out"
    summary = anonymize_dataset(only, out, KEY, options=options(no_face="pass"),
                                pipeline=micro, threads=1, salt=SALT)
    assert summary["no_face"] == 1 and probe_video(out / "wall.mp4").frames == 4
    (rec,) = records(out).values()
    assert rec["status"] == "no-face" and "published UNCHANGED" in rec["note"]
