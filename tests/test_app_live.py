"""The app as visitors and API users meet it: ``python app.py`` with the demo weights on a
loopback port, every named endpoint through gradio_client, each bad input's message, the bytes
of the served images, the purge of Gradio's cache, and a headless Chromium run of an example.

One app is started for the whole module (the demo configuration, chosen through the
environment variable ``LREORG_DEMO=1``, plus identity weights from a file written by the real
``IdentityEncoder`` class, so the similarity path runs).
"""

from __future__ import annotations

import io
import os
import shutil
import struct
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import AppServer

CACHE_SECONDS = 6
MAX_PIXELS = 1_000_000
EXIF_SECRET = "SecretCam-9000"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch

    from lreorg_hub.scorers import IdentityEncoder

    root = tmp_path_factory.mktemp("live_app")
    weights = root / "identity.pt"
    # The real facenet network with random weights, saved as a state dict: the app loads it
    # strictly through IdentityEncoder, exactly as it would load the published file.
    torch.save(IdentityEncoder(pretrained=None).net.state_dict(), weights)
    app = AppServer(["--identity-weights", str(weights), "--max-pixels", str(MAX_PIXELS),
                     "--cache-seconds", str(CACHE_SECONDS)],
                    env={"LREORG_DEMO": "1"}, temp_dir=root / "gradio_tmp",
                    log_path=root / "app.log")
    yield app
    code = app.stop()
    log = app.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    leftovers = [p for p in app.files() if p.name != "astronaut.jpg"]  # example copy stays
    assert leftovers == [], leftovers


@pytest.fixture(scope="module")
def client(server):
    from gradio_client import Client

    return Client(server.url, verbose=False, analytics_enabled=False, download_files=False)


@pytest.fixture(scope="module")
def photo_file(tmp_path_factory, astronaut):
    """The astronaut as a JPEG carrying EXIF a visitor would not want to publish."""
    exif = Image.Exif()
    exif[0x010F] = EXIF_SECRET                       # Make
    exif[0x010E] = "home address in the description"  # ImageDescription
    path = tmp_path_factory.mktemp("photos") / "selfie.jpg"
    astronaut.save(path, quality=92, exif=exif.tobytes())
    return path


def _anonymize(client, photo, method="lreorg", anonymize=("identity",),
               recover=("gender", "age"), epsilon=1.0, mechanism="window", low=2, high=6,
               seed="random", samples=1, strength=None):
    from gradio_client import handle_file

    return client.predict(handle_file(str(photo)), method, list(anonymize), list(recover),
                          epsilon, mechanism, low, high, seed, samples, strength,
                          api_name="/anonymize")


def _fetch(url: str) -> bytes:
    import httpx

    response = httpx.get(url, timeout=30)
    response.raise_for_status()
    return response.content


def _png_chunks(data: bytes) -> list[str]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    chunks, pos = [], 8
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunks.append(kind.decode("ascii"))
        pos += 12 + length
    return chunks


def test_named_endpoints(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/anonymize", "/compare", "/budget"}
    names = [p["parameter_name"] for p in endpoints["/anonymize"]["parameters"]]
    assert names == ["photo", "method", "anonymize", "recover", "epsilon", "mechanism",
                     "rank_low", "rank_high", "seed", "samples", "strength"]


def test_anonymize_with_typed_seed_reproduces_and_warns(client, photo_file):
    first = _anonymize(client, photo_file, seed="5", samples=3)
    again = _anonymize(client, photo_file, seed="5", samples=3)
    (before, after), gallery, words, record = first
    assert again[0][1]["path"] == after["path"]  # same seed, same bytes (content-addressed)
    # anonymized G(s^M), then the recovered sample 1 and samples 2..3, all whole photos
    assert len(gallery) == 4
    assert gallery[0]["caption"].startswith("anonymized (identity replaced)")
    assert gallery[1]["caption"].startswith("recovered (gender, age kept), sample 1")
    assert [g["caption"].split(":")[0] for g in gallery[2:]] == ["sample 2", "sample 3"]
    for item in gallery:
        assert "identity similarity" in item["caption"] and "face detected" in item["caption"]
        image = Image.open(io.BytesIO(_fetch(item["image"]["url"])))
        assert image.size == (512, 512)  # composed into the whole photo, not a crop
    assert record["seed"] == 5 and record["seed_source"] == "user"
    assert record["samples"] == 3 and record["epsilon_total"] == pytest.approx(3.0)
    assert any("replay" in w for w in record["warnings"])
    assert "**Seed:** 5" in words and "replay" in words and "3·ε = 3 in total" in words


def test_random_seed_is_never_shown_or_returned(client, photo_file):
    (_, after), _, words, record = _anonymize(client, photo_file, seed="random", samples=2)
    assert record["seed"] is None and record["seed_source"] == "os-entropy"
    assert "not shown" in words
    digits = [w for w in words.replace(".", " ").split() if w.isdigit() and len(w) > 6]
    assert digits == []  # no long number (a 63-bit seed) anywhere in the text
    assert record["epsilon_total"] == pytest.approx(2.0)


def test_served_images_are_png_without_upload_metadata(client, photo_file):
    from lreorg_hub.image.io import load_image

    (before, after), gallery, _, _ = _anonymize(client, photo_file, samples=2)
    served = [before, after] + [g["image"] for g in gallery]
    for item in served:
        data = _fetch(item["url"])
        assert set(_png_chunks(data)) <= {"IHDR", "IDAT", "IEND"}, _png_chunks(data)
        assert EXIF_SECRET.encode() not in data and b"Exif" not in data
    # the "before" side is the decoded upload, losslessly
    before_pixels = np.asarray(Image.open(io.BytesIO(_fetch(before["url"]))).convert("RGB"))
    assert np.array_equal(before_pixels, np.asarray(load_image(photo_file)))


def test_classical_baseline_and_budget_endpoint(client, photo_file):
    (_, after), gallery, words, record = _anonymize(client, photo_file, method="blur",
                                                    anonymize=(), recover=())
    assert len(gallery) == 1 and gallery[0]["caption"].startswith("blur:")
    assert record["method"] == "blur" and "no formal guarantee" in record["guarantee"]
    text = client.predict("lreorg", ["identity"], 0.5, 4, api_name="/budget")
    assert "k·ε = 2" in text
    assert "no privacy budget" in client.predict("blur", [], 1.0, 4, api_name="/budget")


def test_compare_every_method_same_seed(client, photo_file):
    from gradio_client import handle_file

    gallery, table = client.predict(handle_file(str(photo_file)), "3", 1.0,
                                    api_name="/compare")
    methods = [row[0] for row in table["data"]]
    assert methods == ["lreorg", "style-mix", "laplace", "k-anonymity", "blur", "pixelate",
                       "mask"]
    assert [g["caption"].split(":")[0] for g in gallery] == methods
    for row in table["data"]:
        _, _, similarity, detected, seconds, note = row
        assert -1.0 <= similarity <= 1.0 and detected in ("0/1", "1/1") and seconds > 0
        assert note == ""


def _bad_files(tmp: Path) -> dict[str, tuple[Path, str]]:
    text = tmp / "notes.jpg"
    text.write_text("this is a text file, not a photo")
    jpeg = io.BytesIO()
    Image.fromarray(np.full((256, 256, 3), 120, np.uint8)).save(jpeg, "JPEG")
    truncated = tmp / "truncated.jpg"
    truncated.write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    empty = tmp / "empty.jpg"
    empty.write_bytes(b"")
    noface = tmp / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 200, np.uint8)).save(noface)
    large = tmp / "large.png"  # over the app's --max-pixels, small on disk
    Image.new("L", (1100, 1000)).save(large)
    bomb = tmp / "bomb.png"  # a 1×1 PNG whose header claims 30000×30000 pixels
    small = io.BytesIO()
    Image.new("L", (1, 1)).save(small, "PNG")
    data = bytearray(small.getvalue())
    ihdr = struct.pack(">II", 30000, 30000) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    bomb.write_bytes(bytes(data))
    return {
        "text renamed .jpg": (text, "This file is not an image that can be read"),
        "truncated JPEG": (truncated, "damaged or incomplete"),
        "empty file": (empty, "The uploaded file is empty."),
        "no face": (noface, "No face was found in this photo."),
        "over the pixel limit": (large, "more than 1 million pixels"),
        "decompression bomb": (bomb, "possible decompression bomb"),
    }


@pytest.mark.parametrize("case", ["text renamed .jpg", "truncated JPEG", "empty file",
                                  "no face", "over the pixel limit", "decompression bomb"])
def test_bad_files_get_one_sentence(client, tmp_path, case):
    from gradio_client.exceptions import AppError

    path, message = _bad_files(tmp_path)[case]
    with pytest.raises(AppError) as err:
        _anonymize(client, path)
    assert message in str(err.value)
    assert "Traceback" not in str(err.value) and "/" not in str(err.value)


@pytest.mark.parametrize("options, message", [
    (dict(epsilon=-1.0), "Epsilon must be >= 0 (the privacy budget), got -1.0."),
    (dict(epsilon=11.0), "Epsilon must be at most 10 here, got 11.0."),
    (dict(anonymize=()), "Nothing to anonymize: give at least one keyword to anonymize"),
    (dict(anonymize=("identity", "age"), recover=("age",)),
     "Keyword(s) age cannot be both anonymized and recovered"),
    (dict(seed="abc"), "The seed must be 'random' or a whole number"),
    (dict(samples=9), "Samples must be in 1..8 (each sample is one more draw"),
    (dict(method="style-mix"), "Recover does not apply to method 'style-mix'"),
    (dict(method="morphing"), "The method 'morphing' cannot run here"),
])
def test_bad_choices_get_one_sentence(client, photo_file, options, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _anonymize(client, photo_file, **options)


def test_uploads_and_results_are_purged(server, client, tmp_path, astronaut):
    photo = tmp_path / "purge_me.png"
    astronaut.transpose(Image.FLIP_LEFT_RIGHT).save(photo)
    _anonymize(client, photo)
    assert any(p.name == "purge_me.png" for p in server.files())
    deadline = time.monotonic() + 4 * CACHE_SECONDS
    while time.monotonic() < deadline:
        left = [p for p in server.files() if p.name != "astronaut.jpg"]
        if not left:
            break
        time.sleep(1)
    assert left == []
    assert not (Path(server.temp_dir).parent / ".gradio").exists()  # no flagging folder


# -- headless Chromium --------------------------------------------------------------------


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_browser_runs_the_example(server, tmp_path):
    binary = _chromium()
    if binary is None:  # a missing browser is a failed test, never a silent skip
        pytest.fail("headless Chromium is needed for the app's browser test: install Debian's "
                    "`chromium` package (apt-get install chromium); .ci/run does")
    from cdp import Browser

    shot = Path(os.environ.get("LREORG_SCREENSHOT") or tmp_path / "app.png")
    with Browser(binary, tmp_path / "profile", width=1280, height=1500) as page:
        page.navigate(server.url)
        page.wait_for("document.querySelector('#run-anonymize') !== null", timeout=60)
        assert "Demo weights" in page.evaluate("document.body.innerText")
        example = ("document.querySelector('#examples-visitor button, #examples-visitor td, "
                   "#examples-visitor .gallery-item')")
        page.wait_for(f"{example} !== null", timeout=60)
        page.evaluate(f"{example}.click()")
        page.wait_for("document.querySelector('#photo img') !== null", timeout=30)
        page.evaluate("document.querySelector('#run-anonymize').click()")
        page.wait_for("document.querySelectorAll('#results img').length >= 2 && "
                      "document.querySelector('#record').innerText.includes('Privacy budget')",
                      timeout=120)
        text = page.evaluate("document.querySelector('#results').innerText")
        assert "recovered (gender, age, expression, makeup kept), sample 1" in text
        assert page.evaluate("document.querySelectorAll('#before-after img').length") >= 1
        page.screenshot(shot)
    image = Image.open(shot)
    assert image.size[0] >= 1280 and len(np.unique(np.asarray(image.convert("L")))) > 50


def test_readme_client_example_runs(server, tmp_path):
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text("utf-8")
    marker = readme.index("<!-- app-client:")
    start = readme.index("```python\n", marker) + len("```python\n")
    code = readme[start:readme.index("```", start)]
    assert 'Client("http://127.0.0.1:7860/")' in code
    code = code.replace("http://127.0.0.1:7860/", server.url)
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "GRADIO_TEMP_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()[-3:]  # the client first says where it connected
    assert lines[1] == "3.0 None"  # k·ε for k = 3, and no seed from OS entropy
    assert "'lreorg'" in lines[2] and "'mask'" in lines[2]
    assert Path(lines[0].split()[0]).is_file()  # the result, downloaded by the client
