"""`lreorg anonymize` with videos beside photos: OUT/NAME.mp4 + NAME.json per clip, the flags
(--detect-every, --draw, --no-audio, --video-format), bad clips listed while the run goes on,
video-only option checks before anything is read; and the rules every output keeps (written
through OutDir: no link followed, nothing outside --out touched, the naming rule, the private
log, names escaped in messages)."""

import hashlib
import json
import os
import re
import shutil

import av
import pytest

from lreorg_hub.cli import main
from lreorg_hub.demo_clips import face_sprite, scene_frames, write_clip
from lreorg_hub.image.video import probe_video

from test_video_io import bad_inputs


@pytest.fixture(scope="module")
def weights(tmp_path_factory, photo_bundle, tiny_backbone):
    from conftest import save_as_e4e_checkpoint

    root = tmp_path_factory.mktemp("weights")
    photo_bundle.save_pretrained(root / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, root / "tiny.pt")
    return ["--bundle", str(root / "bundle"), "--backbone", str(root / "tiny.pt")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, astronaut):
    root = tmp_path_factory.mktemp("inputs")
    sprite = face_sprite(astronaut, (182, 63, 267, 174))
    astronaut.resize((160, 160)).save(root / "photo.png")
    write_clip(root / "pan.mov", scene_frames("pan", sprite, 10, (160, 120)), fps=24,
               audio_seconds=0.4, metadata={"location": "+48.8584+002.2945/"})
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 40)
    return root


def run(argv, capsys):
    code = main(["anonymize", *argv, "--quiet"])
    return code, capsys.readouterr().err


def test_a_folder_of_photos_and_videos(weights, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run([str(inputs), "--out", str(out), *weights, "--detect-every", "2"], capsys)
    assert code == 1 and f"lreorg: skipped {inputs / 'broken.mp4'}: cannot read video" in err
    assert sorted(p.name for p in out.iterdir()) == ["_lreorg", "pan.json", "pan.mp4",
                                                     "photo.json", "photo.png", "summary.json"]
    summary = json.loads((out / "summary.json").read_text())
    assert [d["output"] for d in summary["processed"]] == ["pan.mp4", "photo.png"]
    assert summary["processed"][0] | {"input": None} == \
        {"input": None, "output": "pan.mp4", "frames": 10, "tracks": 1, "draws": 1}
    record = json.loads((out / "pan.json").read_text())
    assert record["frames"] == 10 and record["size"] == [160, 120]
    video = record["record"]["extra"]["video"]
    assert (video["draws"], video["detect_every"], record["record"]["seed"]) == (1, 2, None)
    assert not re.search(r"\d{10,}", (out / "pan.json").read_text())
    clip = probe_video(out / "pan.mp4")
    assert (clip.frames, clip.audio, clip.codec) == (10, "aac", "h264")
    assert b"+48.8584" not in (out / "pan.mp4").read_bytes()


def test_flags_for_the_ablation_without_audio_in_webm(weights, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    code, err = run([str(inputs / "pan.mov"), "--out", str(out), *weights, "--draw",
                     "per-frame", "--no-audio", "--video-format", "webm"], capsys)
    assert code == 0, err
    record = json.loads((out / "pan.json").read_text())["record"]
    assert record["extra"]["video"]["draws"] == 10 and record["epsilon_total"] == 10.0
    clip = probe_video(out / "pan.webm")
    assert (clip.codec, clip.audio, clip.frames) == ("vp9", None, 10)


@pytest.mark.parametrize("argv, message", [
    (["--detect-every", "0"], "detect_every must be a whole number in 1..1000, got 0"),
    (["--samples", "2"], "a video is anonymized once: samples must be 1"),
    (["--faces", "0"], "faces does not apply to videos"),
    (["--draw", "per-person"], "argument --draw: invalid choice: 'per-person'"),
])
def test_bad_video_arguments_stop_before_anything_is_written(weights, inputs, tmp_path,
                                                             capsys, argv, message):
    out = tmp_path / "out"
    code, err = run([str(inputs / "pan.mov"), "--out", str(out), *weights, *argv], capsys)
    assert code == 2 and message in err and err.count("\n") == 1
    assert not out.exists() or list(out.iterdir()) == []


def test_every_bad_clip_is_one_line_and_the_run_goes_on(weights, inputs, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    cases = bad_inputs(bad)
    files = [str(path) for path, _ in cases.values()]
    out = tmp_path / "out"
    code, err = run([*files, str(inputs / "pan.mov"), "--out", str(out), *weights], capsys)
    assert code == 1
    summary = json.loads((out / "summary.json").read_text())
    failed = {f["input"]: f["error"] for f in summary["failed"]}
    for name, (path, message) in cases.items():
        assert message in failed[str(path)], name
        assert f"lreorg: skipped {path}: " in err
    assert [d["output"] for d in summary["processed"]] == ["pan.mp4"]
    names = sorted(p.name for p in out.rglob("*") if p.is_file() and "_lreorg" not in p.parts)
    assert names == ["pan.json", "pan.mp4", "summary.json"]   # nothing half-written
    with av.open(str(out / "pan.mp4")) as c:
        assert len(list(c.decode(video=0))) == 10


# -- the rules of every output (issue 15) hold for clips ---------------------------------------

def _digests(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def test_a_clip_never_writes_through_a_link_planted_in_out(weights, inputs, tmp_path, capsys):
    clips = tmp_path / "clips"
    (clips / "street").mkdir(parents=True)
    shutil.copy(inputs / "pan.mov", clips / "street" / "pan.mov")
    shutil.copy(inputs / "pan.mov", clips / "top.mov")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "decoy.mp4").write_bytes(b"not yours")
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(elsewhere / "decoy.mp4", out / "top.mp4")   # where a file goes
    os.symlink(elsewhere, out / "street")                  # where a folder must be
    before = _digests(tmp_path)
    code, err = run([str(clips), "--out", str(out), *weights], capsys)
    assert {k: v for k, v in _digests(tmp_path).items() if not k.startswith("out/")} == before
    summary = json.loads((out / "summary.json").read_text())
    assert code == 1 and summary["failed"] == [{
        "input": str(clips / "street" / "pan.mov"),
        "error": f"{out / 'street'} is a symbolic link, and links inside --out are never "
                 f"followed: remove it, or use another --out"}]
    # the link where a file goes was replaced by the clip itself (its target untouched)
    assert not (out / "top.mp4").is_symlink() and probe_video(out / "top.mp4").frames == 10
    assert (elsewhere / "decoy.mp4").read_bytes() == b"not yours"


def test_no_output_overwrites_another_and_the_rule_is_in_the_summary(weights, inputs, tmp_path,
                                                                     capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(inputs / "photo.png", folder / "a.png")
    shutil.copy(inputs / "pan.mov", folder / "a.mov")
    shutil.copy(inputs / "pan.mov", folder / "summary.mp4")
    out = tmp_path / "out"
    code, err = run([str(folder), "--out", str(out), *weights], capsys)
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    outputs = {os.path.basename(d["input"]): d["output"] for d in summary["processed"]}
    assert outputs == {"a.mov": "a.mp4", "a.png": "a_1.png", "summary.mp4": "summary_1.mp4"}
    assert json.loads((out / "a.json").read_text())["output"] == "a.mp4"
    assert json.loads((out / "a_1.json").read_text())["output"] == "a_1.png"
    assert "a video: NAME.mp4" in summary["naming"]


def test_a_clip_inside_out_is_refused_before_anything_is_written(weights, inputs, tmp_path,
                                                                 capsys):
    out = tmp_path / "out"
    out.mkdir()
    shutil.copy(inputs / "pan.mov", out / "pan.mov")
    before = _digests(tmp_path)
    code, err = run([str(out / "pan.mov"), "--out", str(out), *weights], capsys)
    assert code == 2 and f"the input {out / 'pan.mov'} lies inside --out {out}" in err
    assert _digests(tmp_path) == before and sorted(os.listdir(out)) == ["pan.mov"]


def test_the_private_log_holds_what_a_clips_record_leaves_out(weights, inputs, tmp_path,
                                                              capsys):
    out, log = tmp_path / "out", tmp_path / "private.jsonl"
    code, err = run([str(inputs / "pan.mov"), "--out", str(out), *weights, "--private-log",
                     str(log)], capsys)
    assert code == 0, err
    (entry,) = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["input"] == str(inputs / "pan.mov") and entry["output"] == "pan.mp4"
    (track,) = entry["diagnostics"]["tracks"]
    assert track["first_frame"] == 0 and track["last_frame"] == 9 and track["detected"] == 10
    assert len(track["first_box"]) == 4 and 0 < track["min_score"] <= track["mean_score"] <= 1
    public = (out / "pan.json").read_text()
    assert str(inputs) not in public and "first_box" not in public and "score" not in public
    assert os.stat(log).st_mode & 0o077 == 0


def test_a_clip_name_cannot_break_a_message_in_two(weights, inputs, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "bad\nname.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 40)
    shutil.copy(inputs / "pan.mov", folder / "pan.mov")
    code, err = run([str(folder), "--out", str(tmp_path / "out"), *weights], capsys)
    assert code == 1 and err.count("\n") == 1
    assert f"lreorg: skipped {folder}/bad\\nname.mp4: cannot read video '{folder}/bad\\nname" \
           f".mp4': not a video FFmpeg can open" in err


def test_the_video_limits_in_help_are_the_librarys():
    from lreorg_hub.cli.args import LIMITS_NOTE
    from lreorg_hub.image.video import VideoLimits

    limits = VideoLimits()
    assert (f"sides of {limits.min_side} to {limits.max_side:,} pixels and at most "
            f"{limits.max_pixels:,} pixels each (4096 x 2304), at a rate of at most "
            f"{limits.max_fps:g} frames per second") in LIMITS_NOTE
    assert limits.max_pixels == 4096 * 2304
