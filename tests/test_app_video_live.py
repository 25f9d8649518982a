"""The app's Video and Webcam tabs as visitors meet them: ``python app.py`` with the demo
weights on a loopback port; the clip endpoint through gradio_client (every frame back, no
metadata of the upload, the record, one sentence per bad clip); and a headless Chromium that
uploads a clip in the Video tab and streams its fake camera (a .y4m file made from a still
photo) in the Webcam tab, checking that anonymized frames come back and reading the frames per
second the page shows."""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import AppServer
from test_app_live import _tabs_all_visible
from lreorg_hub.demo_clips import face_sprite, scene_frames, write_clip
from lreorg_hub.image.video import VideoReader, probe_video

RESULT_SECONDS = 6
LOCATION = "+48.8584+002.2945/"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("live_video_app")
    app = AppServer(["--no-identity", "--result-seconds", str(RESULT_SECONDS)],
                    env={"LREORG_DEMO": "1"}, temp_dir=root / "gradio_tmp",
                    log_path=root / "app.log")
    yield app
    _wait_until_quiet(app)
    stopped = time.time()
    # Stopped as Spaces stop a container, while the module's client still holds the heartbeat
    # that the Webcam tab's stream and State open (Gradio then skips its own shutdown purge):
    # the app's one purge (FILES.sweep(final=True)) still deletes every file.
    code = app.stop(sig=signal.SIGTERM)
    log = app.log()
    assert code == 0 and "Traceback" not in log, log[-3000:]
    left = [p for p in app.files() if p.name != "astronaut.jpg"]
    assert left == [], [(p.name, round(p.stat().st_ctime - stopped, 2)) for p in left]


def _wait_until_quiet(app, quiet: float = 3.0, limit: float = 60.0) -> None:
    """Until no file has been written for ``quiet`` seconds: a stream whose page has closed
    may still be finishing its last frames, which must be purged too."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        newest = max((p.stat().st_ctime for p in app.files()), default=0.0)
        if time.time() - newest > quiet:
            return
        time.sleep(0.5)


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False, analytics_enabled=False, download_files=False)


@pytest.fixture(scope="module")
def sprite(astronaut):
    return face_sprite(astronaut, (182, 63, 267, 174))


@pytest.fixture(scope="module")
def clip(tmp_path_factory, sprite):
    path = tmp_path_factory.mktemp("clips") / "holiday.mov"
    return write_clip(path, scene_frames("pan", sprite, 12, (160, 120)), fps=12,
                      audio_seconds=1.0, metadata={"location": LOCATION, "make": "Apple"})


def _fetch(url: str) -> bytes:
    import httpx

    response = httpx.get(url, timeout=60)
    response.raise_for_status()
    return response.content


def _anonymize_clip(client, path, method="lreorg", epsilon=1.0):
    from gradio_client import handle_file

    return client.predict(handle_file(str(path)), method, epsilon,
                          api_name="/anonymize_video")


def test_a_clip_comes_back_whole_without_its_metadata(server, client, clip, tmp_path):
    video, words, details, record = _anonymize_clip(client, clip)
    data = _fetch(video["video"]["url"] if "video" in video else video["url"])
    assert LOCATION.encode() not in data and b"Apple" not in data
    out = tmp_path / "out.mp4"
    out.write_bytes(data)
    info, source = probe_video(out), probe_video(clip)
    assert (info.frames, info.size, info.duration, info.audio, info.codec) == \
        (12, source.size, source.duration, "aac", "h264")
    assert len(list(VideoReader(info))) == 12
    summary = record["extra"]["video"]
    assert (summary["tracks"], summary["draws"], record["seed"]) == (1, 1, None)
    assert "One identity draw per track" in details and "not shown or kept" in words
    # the upload was read once and deleted (only the example and results are on disk)
    assert [p for p in server.files() if p.name == clip.name] == []


def _long_clip(path: Path) -> Path:
    return write_clip(path, [np.full((48, 64, 3), 80, np.uint8)] * 48, fps=4)


@pytest.mark.parametrize("case, message", [
    ("longer than the page's limit", "This clip lasts 12.0 s; this page takes clips of at most "
                                     "10 s. Cut it and try again."),
    ("text renamed .mp4", "This file cannot be used as a video: not a video FFmpeg can open"),
    ("audio only", "This file cannot be used as a video: it holds audio only, no video "
                   "stream."),
    ("empty file", "The uploaded file is empty."),
])
def test_bad_clips_get_one_sentence(client, tmp_path, case, message):
    from gradio_client.exceptions import AppError

    from test_video_io import _audio_only

    path = tmp_path / "upload.mp4"
    if case.startswith("longer"):
        _long_clip(path)
    elif case.startswith("text"):
        path.write_text("not a video at all")
    elif case == "audio only":
        _audio_only(path)
    else:
        path.write_bytes(b"")
    with pytest.raises(AppError) as err:
        _anonymize_clip(client, path)
    assert message in str(err.value)
    assert "/" not in str(err.value) and "Traceback" not in str(err.value)


# -- headless Chromium with a fake camera ---------------------------------------------------


def write_y4m(path: Path, frames: list[np.ndarray], fps: int = 10) -> Path:
    """Frames as a YUV4MPEG2 file (4:2:0), what Chromium's fake camera plays in a loop."""
    h, w = frames[0].shape[:2]
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for a in frames:
            ycc = np.asarray(Image.fromarray(a).convert("YCbCr"))
            f.write(b"FRAME\n" + ycc[..., 0].tobytes())
            for c in (1, 2):
                f.write(np.asarray(Image.fromarray(ycc[..., c]).resize((w // 2, h // 2),
                                                                       Image.BILINEAR))
                        .tobytes())
    return path


def _tab(label: str) -> str:
    """The tab button called ``label`` (JavaScript; undefined until the page is built)."""
    return (f"[...document.querySelectorAll('[role=tab]')].find(b => b.innerText.trim() === "
            f"{label!r})")


def _image_from_src(src: str) -> np.ndarray:
    data = base64.b64decode(src.split(",", 1)[1]) if src.startswith("data:") else _fetch(src)
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_browser_video_tab_and_webcam_tab(server, clip, sprite, tmp_path):
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:  # a missing browser is a failed test, never a silent skip
        pytest.fail("headless Chromium is needed for the app's browser test: install Debian's "
                    "`chromium` package (apt-get install chromium); .ci/run does")
    from cdp import Browser

    frames = list(scene_frames("pan", sprite, 20, (320, 240)))
    camera = write_y4m(tmp_path / "camera.y4m", frames + frames[::-1])   # a face, moving
    flags = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
             f"--use-file-for-fake-video-capture={camera}"]
    with Browser(binary, tmp_path / "profile", width=1280, height=1400, flags=flags) as page:
        page.navigate(server.url)
        page.wait_for(f"{_tab('Video')} !== undefined", timeout=60)
        # Video tab: upload, run, the clip plays on the page with its record.
        page.evaluate(f"{_tab('Video')}.click()")
        page.wait_for("document.querySelector('#clip input[type=file]') !== null", timeout=30)
        assert "at most 10 s" in page.evaluate("document.querySelector('#video-limits')"
                                               ".innerText")
        page.upload("#clip input[type=file]", clip)
        page.wait_for("document.querySelector('#clip video') !== null", timeout=60)
        page.evaluate("document.querySelector('#run-video').click()")
        page.wait_for("document.querySelector('#clip-anonymized video[src]') !== null && "
                      "document.querySelector('#clip-record').innerText.includes('followed "
                      "through 12 frames')", timeout=240)
        src = page.evaluate("document.querySelector('#clip-anonymized video').src")
        played = tmp_path / "played.mp4"
        played.write_bytes(_fetch(src))
        assert probe_video(played).frames == 12
        page.wait_for("document.querySelector('#clip-anonymized video').readyState >= 2",
                      timeout=30)   # Chromium decoded it: it plays on the page
        # Webcam tab: grant, record, anonymized frames come back with the rate.
        page.evaluate(f"{_tab('Webcam')}.click()")
        page.wait_for("document.querySelector('#webcam div[title=\"grant webcam access\"] "
                      "button') !== null", timeout=30)
        page.evaluate("document.querySelector('#webcam div[title=\"grant webcam access\"] "
                      "button').click()")
        page.wait_for("document.querySelector('#webcam button.capture-button') !== null",
                      timeout=30)
        page.evaluate("document.querySelector('#webcam button.capture-button').click()")
        page.wait_for("document.querySelector('#webcam-anonymized img[src]') !== null && "
                      "/New faces so far: [1-9]/.test(document.querySelector('#webcam-fps')"
                      ".innerText)", timeout=180)
        page.evaluate("window.__frames = new Set(); window.__timer = setInterval(() => { "
                      "const i = document.querySelector('#webcam-anonymized img'); "
                      "if (i) window.__frames.add(i.src); }, 20)")
        time.sleep(10)
        arrived = page.evaluate("window.__frames.size")
        text = page.evaluate("document.querySelector('#webcam-fps').innerText")
        out = _image_from_src(page.evaluate("document.querySelector('#webcam-anonymized "
                                            "img').src"))
        on_disk = _camera_sized_images(server)
        shots = Path(os.environ.get("LREORG_SCREENSHOTS") or tmp_path / "screenshots")
        shots.mkdir(parents=True, exist_ok=True)
        page.screenshot(shots / "webcam_1280.png")
        page.evaluate(f"{_tab('Video')}.click()")
        page.screenshot(shots / "video_1280.png")
        # On a phone: every tab in the bar, nothing wider than the screen.
        page.resize(390, 844)
        page.navigate(server.url)
        page.wait_for(f"{_tab('Video')} !== undefined", timeout=60)
        _tabs_all_visible(page)
        for label in ("Video", "Webcam"):
            page.evaluate(f"{_tab(label)}.click()")
            page.wait_for("document.querySelector('#clip, #webcam') !== null", timeout=30)
            assert page.evaluate("document.documentElement.scrollWidth") <= 390, label
            page.screenshot(shots / f"{label.lower()}_390.png")
    served_fps = float(re.search(r"([\d.]+) frames per second", text).group(1))
    browser_fps = arrived / 10.0
    print(f"\nwebcam: {served_fps:.1f} frames/s processed by the server, {browser_fps:.1f} "
          f"anonymized frames/s shown in the browser")
    assert served_fps > 0 and arrived >= 3
    # The frame it came from (Gradio mirrors the camera, as a selfie view does): the
    # background is that frame's, within WebP's loss; the face is not.
    camera_frames = [f[:, ::-1].astype(int) for f in frames]
    source = min(camera_frames, key=lambda f: np.abs(out - f).mean())
    changed = np.abs(out - source).max(axis=2) > 60
    assert out.shape == source.shape and changed.sum() > 1500          # the face replaced
    assert np.abs(out[:30, :30] - source[:30, :30]).mean() < 6        # the rest kept
    # The camera's frames are never written: every frame-sized image on the server's disk
    # is an anonymized one (Gradio writes each shown result; the frames sent are not files).
    assert on_disk, "the shown frames are result files"
    for image in on_disk:
        nearest = min(camera_frames, key=lambda f: np.abs(image - f).mean())
        assert (np.abs(image - nearest).max(axis=2) > 60).sum() > 200


def _camera_sized_images(server) -> list[np.ndarray]:
    images = []
    for path in server.files():
        try:
            image = np.asarray(Image.open(path).convert("RGB")).astype(int)
        except Exception:   # a clip, or a file deleted meanwhile
            continue
        if image.shape == (240, 320, 3):
            images.append(image)
    return images
