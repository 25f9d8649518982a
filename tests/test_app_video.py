"""The Video and Webcam tabs' handlers in process, under the app's file rules: a clip upload is
read once and deleted like a photo (its bytes then only in this session's memory, beside its
photo), the anonymized clip is deleted on the results' schedule and at shutdown, one ZeroGPU
call per clip sized by its frames, errors in a visitor's words, the record in plain words
with the technical side in the fold. The served tabs are tested in test_app_video_live.py."""

from __future__ import annotations

import re
import uuid
import types
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from lreorg_hub.demo_clips import face_sprite, scene_frames, write_clip
from lreorg_hub.image.video import probe_video
from test_app import SESSION, TECHNICAL, FakeZeroGPU, _upload


@pytest.fixture(scope="module")
def sprite(astronaut):
    return face_sprite(astronaut, (182, 63, 267, 174))


@pytest.fixture
def clip_file(tmp_path, sprite):
    return write_clip(tmp_path / "holiday.mov", scene_frames("pan", sprite, 6, (160, 120)),
                      fps=12, audio_seconds=0.4, metadata={"location": "+48.8584+002.2945/"})


@pytest.fixture(scope="module")
def demo_runtime():
    from lreorg_hub import serving as sv

    return sv.load_runtime(sv.ServingConfig(demo=True, identity_weights=None))


@pytest.fixture
def app(tmp_path, monkeypatch, demo_runtime):
    import importlib

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    module = importlib.import_module("app")
    module.build_app(demo_runtime, module.sv.FileRules(result_s=3600, unused_upload_s=3600))
    return module


def _clip(app, upload, method="blur", request=SESSION):
    return app.anonymize_clip({"path": str(upload)}, method, 1.0, request=request)


def test_a_clip_upload_is_read_once_deleted_and_kept_apart_from_the_photo(
        app, clip_file, astronaut, tmp_path):
    photo = tmp_path / "me.png"
    astronaut.save(photo)
    photo_upload = _upload(app, photo, "me.png")
    app.anonymize_photo({"path": str(photo_upload)}, "blur", [], [], 1.0, "window", None, None,
                        "random", 1, 0.1, 0.1, 1.0, request=SESSION)
    upload = _upload_bytes(app, clip_file)
    path, summary, details, record = _clip(app, upload)
    assert not upload.exists() and not upload.parent.exists()
    assert str(upload) not in app.FILES.uploads
    out = probe_video(path)
    assert (out.frames, out.audio) == (6, "aac") and b"+48.8584" not in Path(path).read_bytes()
    assert path in app.FILES.results                     # deleted on the results' schedule
    # other settings without a new upload; the photo is still this session's too
    _clip(app, upload, method="pixelate")
    app.anonymize_photo({"path": str(photo_upload)}, "pixelate", [], [], 1.0, "window", None,
                        None, "random", 1, 0.1, 0.1, 1.0, request=SESSION)
    with pytest.raises(gr.Error) as err:                 # another session cannot use it
        _clip(app, upload, request=types.SimpleNamespace(session_hash="someone-else"))
    assert err.value.message == ("Your clip was deleted from the server as the Privacy tab "
                                 "says; please upload it again.")
    app._forget_photo(SESSION)                           # the tab was closed
    with pytest.raises(gr.Error, match="Your clip was deleted"):
        _clip(app, upload)
    app.FILES.sweep(final=True)                          # the server stops
    assert not Path(path).exists() and not Path(path).parent.exists()
    assert app.FILES.results == set()


def _upload_bytes(app, clip_file) -> Path:
    """A clip where Gradio's upload route puts one, registered as Gradio registers it."""
    from gradio.utils import get_upload_folder

    path = Path(get_upload_folder()) / uuid.uuid4().hex / clip_file.name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(clip_file.read_bytes())
    app.FILES.uploads.add(str(path))
    return path


def test_the_result_clip_goes_on_the_results_schedule(app, clip_file, monkeypatch):
    path, *_ = _clip(app, _upload_bytes(app, clip_file))
    app.FILES.sweep()
    assert Path(path).is_file()                          # younger than its age
    app.FILES.rules = app.sv.FileRules(result_s=0.0)
    app.FILES.sweep()
    assert not Path(path).exists() and path not in app.FILES.results


def test_the_record_in_plain_words_and_its_technical_side_in_the_fold(app, clip_file):
    path, summary, details, record = _clip(app, _upload_bytes(app, clip_file), "lreorg")
    video = record["extra"]["video"]
    assert (video["tracks"], video["draws"], record["seed"]) == (1, 1, None)
    assert summary.startswith("**Replaced:** 1 face(s) followed through 6 frames; each got one "
                              "new face (LReOrg), the same in every frame")
    assert "**Privacy budget:** 1 per face followed, 1 for the whole clip." in summary
    assert "not shown or kept" in summary and re.findall(TECHNICAL, summary) == []
    assert "One identity draw per track" in details and "Video: 6 frames" in details


@pytest.fixture
def zerogpu_app(tmp_path, monkeypatch, demo_runtime):
    import importlib.util
    import sys

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    zero = FakeZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=zero.GPU))
    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location("app_on_zerogpu", root / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_app(demo_runtime)
    return module, zero


def test_one_gpu_call_per_clip_with_a_duration_from_its_frames(zerogpu_app, clip_file,
                                                                tmp_path, sprite):
    app, zero = zerogpu_app
    _clip(app, _upload_bytes(app, clip_file))
    assert zero.calls == [("_clip_on_device", 20 + 1)]    # 6 frames × 0.15 s, rounded up
    zero.calls.clear()
    long = write_clip(tmp_path / "long.mp4", [np.full((48, 64, 3), 80, np.uint8)] * 48, fps=4)
    with pytest.raises(gr.Error) as err:                  # a visitor error inside the call
        _clip(app, _upload_bytes(app, long))
    assert err.value.message == ("This clip lasts 12.0 s; this page takes clips of at most "
                                 "10 s. Cut it and try again.")
    zero.fail = ("ZeroGPU illegal duration", "The requested GPU duration (300s) is larger than "
                                             "the maximum allowed")
    with pytest.raises(gr.Error) as err:
        _clip(app, _upload_bytes(app, clip_file))
    assert err.value.message == ("This request needs more GPU time than one run may take; "
                                 "choose a shorter clip and try again.")


def test_a_webcam_frame_goes_through_the_visitors_session(zerogpu_app, sprite):
    app, zero = zerogpu_app
    frame = next(iter(scene_frames("still", sprite, 1, (160, 120))))
    out, session, text = app.webcam_frames(frame, None, "lreorg", 1.0)
    assert out.shape == frame.shape and not np.array_equal(out, frame)   # blurred at first
    assert zero.calls == [("_webcam_on_device", 10)]
    assert "frames per second** anonymized here (frame 1)" in text
    assert re.findall(TECHNICAL, text) == []
    with pytest.raises(gr.Error) as err:
        app.webcam_frames(np.zeros((2000, 1000, 3), np.uint8), session, "lreorg", 1.0)
    assert err.value.message == ("The camera's frames are larger than 1280×720; choose a "
                                 "lower resolution.")
