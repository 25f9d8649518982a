"""`lreorg anonymize` with videos beside photos: OUT/NAME.mp4 + NAME.json per clip, the flags
(--detect-every, --draw, --no-audio, --video-format), bad clips listed while the run goes on,
video-only option checks before anything is read."""

import json
import re

import av
import pytest
from PIL import Image

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
    assert sorted(p.name for p in out.iterdir()) == ["pan.json", "pan.mp4", "photo.json",
                                                     "photo.png", "summary.json"]
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
    names = sorted(p.name for p in out.iterdir())
    assert names == ["pan.json", "pan.mp4", "summary.json"]   # nothing half-written
    with av.open(str(out / "pan.mp4")) as c:
        assert len(list(c.decode(video=0))) == 10
