"""The edges a new user and an attacker found in the video path: a face entering between two
detector runs, a lost track under --detect-every, a clip without faces, a clip swapped between
the two passes, the record's totals and audio, a killed run's temporary file, SIGTERM, file
names in the progress bars, the frame rate of a variable-rate clip."""

import json
import os
import shutil
import signal

import numpy as np
import pytest

from lreorg_hub.cli import main
from lreorg_hub.demo_clips import scene_frames, write_clip
from lreorg_hub.image.faces import Detection
from lreorg_hub.image.video import VideoLoadError, VideoReader, probe_video
from lreorg_hub.pipeline import ProtectOptions
from lreorg_hub.pipeline.tracking import DETECTED, MISSED, PREDICTED, Tracker, TrackerSettings
from lreorg_hub.pipeline.video import VideoOptions, anonymize_video

from test_cli_video import inputs, weights  # noqa: F401 (fixtures)
from test_video import FACE, SIZE, run, sprite, tracks, video_pipe  # noqa: F401 (fixtures)


def _face_from(frames, first: int):
    """The still scene with the face only from frame ``first`` on (a plain wall before)."""
    wall = np.full_like(frames[0], 0)
    wall[:] = frames[0][:, :12].mean(axis=(0, 1)).astype(np.uint8)   # the scene's background
    return [wall.copy() if i < first else f for i, f in enumerate(frames)]


@pytest.mark.parametrize("method", ["lreorg", "blur"])
def test_a_face_that_enters_between_detector_runs_is_covered_until_the_detector_sees_it(
        video_pipe, sprite, tmp_path, method):
    frames = _face_from(list(scene_frames("still", sprite, 16, SIZE)), first=10)
    src = write_clip(tmp_path / "enter.mkv", frames, fps=24, codec="ffv1")
    result, out = run(video_pipe, src, tmp_path / "out.mp4", ProtectOptions(method=method),
                      video=VideoOptions(detect_every=3))
    read = [f.image for f in VideoReader(probe_video(src))]
    x0, y0, x1, y1 = FACE
    for i in (10, 11):   # detector runs on 9 (nothing yet) and 12: these two were unseen
        diff = np.abs(out[i][y0:y1, x0:x1].astype(int) - read[i][y0:y1, x0:x1]).mean()
        assert diff > 3, f"frame {i} shows the face in clear (mean change {diff:.2f})"
    (track,) = tracks(result)
    assert track["first_frame"] == 10
    if method == "lreorg":
        assert track["covered"]["missed"] == 2 and track["regenerated"] == 4


def test_a_lost_track_is_covered_between_detector_runs_and_ends_after_max_missed_frames():
    tracker = Tracker(TrackerSettings(max_missed=8))
    face = Detection(box=np.array([40.0, 30, 80, 80]),
                     landmarks=np.array([[50.0, 50], [70, 50], [60, 60], [52, 70], [68, 70]]),
                     score=0.99)
    states = []
    for i in range(30):
        seen = [face] if i < 10 else []
        out = tracker.update(i / 24, seen if i % 3 == 0 else None)
        states.append([f.state for f in out])
    assert states[9] == [DETECTED] and states[10] == states[11] == [PREDICTED]
    assert all(s == [MISSED] for s in states[12:20])   # detector missed it at 12: covered
    assert all(s == [] for s in states[20:])            # 8 frames later the track has ended


def test_two_tracks_total_two_epsilon_and_the_audio_is_named(video_pipe, sprite, tmp_path):
    src = write_clip(tmp_path / "back.mp4", scene_frames("leave-and-return", sprite, 24, SIZE),
                     fps=24, audio_seconds=1.0)
    result, _ = run(video_pipe, src, tmp_path / "out.mp4")
    assert result.record.epsilon_total == 2.0          # every track could be one person
    assert result.record.to_dict()["epsilon_total"] == 2.0
    assert result.record.extra["video"]["audio"] == "the audio (aac) was copied unchanged"
    quiet, _ = run(video_pipe, src, tmp_path / "quiet.mp4", video=VideoOptions(audio=False))
    assert quiet.record.extra["video"]["audio"] == "left out, as asked"
    silent = write_clip(tmp_path / "silent.mp4", scene_frames("still", sprite, 4, SIZE), fps=24)
    none, _ = run(video_pipe, silent, tmp_path / "none.mp4")
    assert none.record.extra["video"]["audio"] == "the clip has no audio"


def test_no_draw_spends_nothing(video_pipe, sprite, tmp_path):
    """Every face too small to regenerate: covered, no draw, a total of 0."""
    src = write_clip(tmp_path / "far.mp4", scene_frames("still", sprite, 6, SIZE), fps=24)
    video_pipe.min_face_size, before = 10_000, video_pipe.min_face_size
    try:
        result, _ = run(video_pipe, src, tmp_path / "out.mp4")
    finally:
        video_pipe.min_face_size = before
    assert result.record.extra["video"]["draws"] == 0 and result.record.epsilon_total == 0.0
    assert "0 draw(s) spend 0" in result.record.composition


def test_a_clip_swapped_between_the_passes_is_refused_and_nothing_is_written(
        video_pipe, sprite, tmp_path):
    src = write_clip(tmp_path / "clip.mp4", scene_frames("still", sprite, 8, SIZE), fps=24)
    other = write_clip(tmp_path / "other.mp4", scene_frames("pan", sprite, 8, SIZE), fps=24)
    out = tmp_path / "out"
    out.mkdir()

    def swap(phase, done, total):
        if phase == "track" and done == total and other.exists():
            os.replace(other, src)   # a sync tool or a re-export, between the two readings

    with pytest.raises(VideoLoadError, match="the file changed while it was being anonymized"):
        anonymize_video(video_pipe, src, out / "clip.mp4", ProtectOptions(method="lreorg"),
                        progress=swap)
    assert list(out.iterdir()) == []


def test_a_variable_rate_clip_reports_the_rate_it_has(video_pipe, sprite, tmp_path):
    pts = [0, 40, 80, 400, 450, 900, 1400, 1450, 1900, 2400]   # ms: irregular
    src = write_clip(tmp_path / "vfr.webm", scene_frames("still", sprite, 10, SIZE),
                     pts=pts, codec="libvpx-vp9", fps=25)
    seen = []
    result, _ = run(video_pipe, src, tmp_path / "out.mp4",
                    progress=lambda phase, done, total: seen.append((phase, done, total)))
    info = probe_video(src)
    assert result.fps == pytest.approx(10 / info.duration)
    assert ("track", 10, 10) in seen    # the bar ends at the frames there were


# -- the command line ----------------------------------------------------------------------------

def _no_face_clip(folder):
    return write_clip(folder / "wall.mp4", [np.full((120, 160, 3), 90, np.uint8)] * 6, fps=12)


def test_a_clip_without_a_face_is_skipped_and_listed_like_a_photo(weights, tmp_path, capsys):
    wall = _no_face_clip(tmp_path)
    out = tmp_path / "out"
    code = main(["anonymize", str(wall), "--out", str(out), *weights, "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"lreorg: skipped {wall}: No face was found in this clip: nothing was written." in err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["processed"] == [] and summary["failed"][0]["input"] == str(wall)
    assert sorted(p.name for p in out.iterdir()) == ["_lreorg", "summary.json"]


def test_a_killed_runs_temporary_file_is_removed_by_the_next_run(weights, inputs, tmp_path,
                                                                 capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".pan.mp4.tmp-0a1b2c3d").write_bytes(b"half a clip")       # what SIGKILL leaves
    (out / ".notes.tmp-mine").write_text("the user's own")            # not ours: kept
    code = main(["anonymize", str(inputs / "pan.mov"), "--out", str(out), *weights, "--quiet"])
    capsys.readouterr()
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        ".notes.tmp-mine", "_lreorg", "pan.json", "pan.mp4", "summary.json"]


def test_sigterm_ends_a_run_like_ctrl_c_and_leaves_nothing_half_written(
        weights, inputs, tmp_path, capsys, monkeypatch):
    from lreorg_hub.cli import video as cli_video

    def terminate(self, phase, done, total):   # a scheduler stopping the job mid-clip
        if phase == "generate":
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(cli_video._Bars, "__call__", terminate)
    out = tmp_path / "out"
    before = signal.getsignal(signal.SIGTERM)
    code = main(["anonymize", str(inputs / "pan.mov"), "--out", str(out), *weights])
    assert code == 130 and "lreorg: interrupted" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) is before      # the handler is put back
    assert [p.name for p in out.iterdir()] == ["_lreorg"]   # no clip, no temporary file


def test_a_file_name_cannot_act_on_the_terminal_through_the_progress_bar(
        weights, inputs, tmp_path, capsys):
    name = tmp_path / "x\x1b[2J\x1b[Hcleared\nnew.mov"
    shutil.copy(inputs / "pan.mov", name)
    code = main(["anonymize", str(name), "--out", str(tmp_path / "out"), *weights])
    err = capsys.readouterr().err
    assert code == 0
    assert "\x1b[2J" not in err and "\x1b[H" not in err and "cleared\nnew" not in err
    assert "\\x1b[2J" in err     # shown escaped


def test_a_video_container_not_taken_is_named_as_such_not_as_a_bad_photo(weights, inputs,
                                                                          tmp_path, capsys):
    folder = tmp_path / "phone"
    folder.mkdir()
    shutil.copy(inputs / "pan.mov", folder / "call.3gp")
    shutil.copy(inputs / "pan.mov", folder / "pan.mov")
    shutil.copy(inputs / "pan.mov", tmp_path / "tv.ts")
    out = tmp_path / "out"
    code = main(["anonymize", str(folder), str(tmp_path / "tv.ts"), "--out", str(out),
                 *weights, "--quiet"])
    err = capsys.readouterr().err
    assert code == 1
    for path, suffix in ((folder / "call.3gp", ".3gp"), (tmp_path / "tv.ts", ".ts")):
        assert (f"lreorg: skipped {path}: a video in a container this tool does not take "
                f"({suffix}): remux or convert it to .mp4 or .mkv first") in err
    summary = json.loads((out / "summary.json").read_text())
    assert [d["output"] for d in summary["processed"]] == ["pan.mp4"]
    assert len(summary["failed"]) == 2
