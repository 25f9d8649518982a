"""The app as visitors and API users meet it: ``python app.py`` with the demo weights on a
loopback port, every named endpoint through gradio_client, each bad input's message, the bytes
of the served images, how long an upload and a result stay fetchable by someone else, the
purge on SIGTERM, and a headless Chromium run of every method at 1280 px and 390 px.

One app is started for the whole module (the demo configuration, chosen through the
environment variable ``LREORG_DEMO=1``, plus identity weights from a file written by the real
``IdentityEncoder`` class, so the similarity path runs).
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app_server import AppServer

RESULT_SECONDS, SWEEP_SECONDS = 6, 5  # results deleted this long after they are made
MAX_PIXELS = 1_000_000
EXIF_SECRET = "SecretCam-9000"
ROOT = Path(__file__).resolve().parents[1]


def _not_example(paths):
    return [p for p in paths if p.name != "astronaut.jpg"]  # the example's copy stays


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
                     "--result-seconds", str(RESULT_SECONDS)],
                    env={"LREORG_DEMO": "1"}, temp_dir=root / "gradio_tmp",
                    log_path=root / "app.log")
    yield app
    # Stopped as Docker and Spaces stop a container: SIGTERM purges like Ctrl-C.
    from gradio_client import Client, handle_file

    client = Client(app.url, verbose=False, analytics_enabled=False, download_files=False)
    client.predict(handle_file(str(ROOT / "examples" / "astronaut.jpg")), "blur",
                   api_name="/anonymize")
    assert _not_example(app.files())  # fresh results are on disk ...
    code = app.stop(sig=signal.SIGTERM)
    log = app.log()
    assert code == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]
    assert _not_example(app.files()) == []  # ... and gone after SIGTERM
    assert "WEIGHTS ARE RANDOM (--demo)" in log  # the console banner


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
               seed="random", samples=1, **strengths):
    from gradio_client import handle_file

    return client.predict(handle_file(str(photo)), method, list(anonymize), list(recover),
                          epsilon, mechanism, low, high, seed, samples, **strengths,
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


def test_named_endpoints_have_sensible_names_and_nothing_required_but_the_photo(client):
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert set(endpoints) == {"/anonymize", "/compare", "/budget", "/anonymize_video"}
    params = {name: [p["parameter_name"] for p in e["parameters"]]
              for name, e in endpoints.items()}
    assert params["/anonymize"] == [
        "photo", "method", "anonymize", "recover", "epsilon", "mechanism", "rank_low",
        "rank_high", "seed", "samples", "blur_strength", "pixelate_strength", "mask_opacity"]
    assert params["/compare"] == ["photo", "seed", "epsilon"]
    assert params["/budget"] == ["method", "anonymize", "epsilon", "samples"]
    assert params["/anonymize_video"] == ["clip", "method", "epsilon"]
    required = {name: [p["parameter_name"] for p in e["parameters"]
                       if not p["parameter_has_default"]] for name, e in endpoints.items()}
    assert required == {"/anonymize": ["photo"], "/compare": ["photo"], "/budget": [],
                        "/anonymize_video": ["clip"]}
    defaults = {p["parameter_name"]: p["parameter_default"]
                for p in endpoints["/anonymize"]["parameters"][1:]}
    assert defaults["seed"] == "random" and defaults["mask_opacity"] == 1.0
    assert "identity" not in str(endpoints["/anonymize"]["parameters"][3]["type"])  # recover
    returns = {name: [r["label"] for r in e["returns"]] for name, e in endpoints.items()}
    assert returns == {
        "/anonymize": ["Before and after", "All versions", "What was done",
                       "Technical details", "Privacy record"],
        "/compare": ["Results by method", "Measurements", "Privacy budget spent"],
        "/budget": ["Total privacy budget"],
        "/anonymize_video": ["Anonymized clip", "What was done", "Technical details",
                             "Privacy record"]}
    assert endpoints["/compare"]["parameters"][1]["parameter_default"] == "random"


def test_anonymize_with_typed_seed_reproduces_and_warns(client, photo_file):
    first = _anonymize(client, photo_file, seed="5", samples=3)
    again = _anonymize(client, photo_file, seed="5", samples=3)
    (before, after), gallery, summary, details, record = first
    assert again[0][1]["path"] == after["path"]  # same seed, same bytes (content-addressed)
    # "nothing kept" (before the attributes were put back), then versions 1..3: whole photos
    assert [g["caption"] for g in gallery] == ["nothing kept", "version 1", "version 2",
                                               "version 3"]
    for item in gallery:
        image = Image.open(io.BytesIO(_fetch(item["image"]["url"])))
        assert image.size == (512, 512)  # composed into the whole photo, not a crop
    assert "| image | similarity to your face | still found as a face |" in summary
    assert "| version 3 | " in summary
    assert record["seed"] == 5 and record["seed_source"] == "user"
    assert record["samples"] == 3 and record["epsilon_total"] == pytest.approx(3.0)
    assert any("replay" in w for w in record["warnings"])
    assert "**Seed:** 5 (typed by you)." in summary and "replay" in summary
    assert "**Privacy budget:** 1 per version × 3 versions = 3 in total." in summary
    assert "3·ε = 3 in total" in details  # the technical words stay in the details fold


def test_random_seed_is_never_shown_or_returned(client, photo_file):
    (_, after), _, summary, details, record = _anonymize(client, photo_file, samples=2)
    assert record["seed"] is None and record["seed_source"] == "os-entropy"
    assert "not shown or kept" in summary
    digits = [w for w in (summary + details).replace(".", " ").split()
              if w.isdigit() and len(w) > 6]
    assert digits == []  # no long number (a 63-bit seed) anywhere in the text
    assert record["epsilon_total"] == pytest.approx(2.0)


def test_served_images_are_png_without_upload_metadata(client, photo_file):
    from lreorg_hub.image.io import load_image

    (before, after), gallery, *_ = _anonymize(client, photo_file, samples=2)
    served = [before, after] + [g["image"] for g in gallery]
    for item in served:
        data = _fetch(item["url"])
        assert set(_png_chunks(data)) <= {"IHDR", "IDAT", "IEND"}, _png_chunks(data)
        assert EXIF_SECRET.encode() not in data and b"Exif" not in data
    # the "before" side is the decoded upload, losslessly
    before_pixels = np.asarray(Image.open(io.BytesIO(_fetch(before["url"]))).convert("RGB"))
    assert np.array_equal(before_pixels, np.asarray(load_image(photo_file)))


@pytest.mark.parametrize("method, opacity_or_strength", [
    ("blur", {}), ("pixelate", {"pixelate_strength": 0.3}), ("mask", {})])
def test_every_classical_baseline_runs_with_its_own_default(client, photo_file, method,
                                                           opacity_or_strength):
    (_, after), gallery, summary, _, record = _anonymize(
        client, photo_file, method=method, anonymize=(), recover=(), **opacity_or_strength)
    assert [g["caption"] for g in gallery] == [method]
    assert record["method"] == method and "no formal guarantee" in record["guarantee"]
    assert f"each face was covered ({method})" in summary
    assert "**Privacy budget:** none used" in summary


def test_budget_endpoint(client):
    assert client.predict("lreorg", ["identity"], 0.5, 4, api_name="/budget") == (
        "4 versions at privacy budget 0.5 each use a total privacy budget of 2.")
    assert "no privacy budget" in client.predict("blur", [], 1.0, 4, api_name="/budget")
    assert client.predict(api_name="/budget") == "One version uses a privacy budget of 1."


@pytest.mark.parametrize("epsilon", ["nan", "inf", "-inf", "Infinity", 11])
def test_budget_endpoint_refuses_nan_and_infinity(client, epsilon):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        client.predict("lreorg", ["identity"], epsilon, 1, api_name="/budget")
    assert str(err.value) == ("The privacy budget must be a number from 0 to 10 (smaller is "
                              "more private).")


def test_compare_defaults_to_a_random_seed_and_states_the_total_budget(client, photo_file):
    from gradio_client import handle_file

    gallery, table, summary = client.predict(handle_file(str(photo_file)),
                                             api_name="/compare")
    methods = [row[0] for row in table["data"]]
    assert methods == ["LReOrg", "style-mix", "Laplace", "k-anonymity", "blur", "pixelate",
                       "mask"]
    assert table["headers"] == ["method", "similarity", "face found", "seconds"]
    assert [g["caption"] for g in gallery] == methods
    for _, similarity, found, seconds in table["data"]:
        assert -1.0 <= similarity <= 1.0 and found in ("0 of 1", "1 of 1") and seconds >= 0
    assert summary.startswith("**Privacy budget spent on this photo:** 3 in total (1 (LReOrg) "
                              "+ 1 (style-mix) + 1 (Laplace)).")
    assert "**Seed:** random; it is not shown or kept" in summary


def test_compare_with_a_typed_seed_warns(client, photo_file):
    from gradio_client import handle_file

    _, _, summary = client.predict(handle_file(str(photo_file)), "3", 0.5, api_name="/compare")
    assert "1.5 in total" in summary and "**Seed:** 3 (typed by you)." in summary
    assert "can replay how your face was replaced and recognise you" in summary


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
    gif = tmp / "animated.gif"
    frames = [Image.new("RGB", (64, 64), (i * 80, 0, 0)) for i in range(3)]
    frames[0].save(gif, save_all=True, append_images=frames[1:])
    return {
        "text renamed .jpg": (text, "This file is not an image that can be read"),
        "truncated JPEG": (truncated, "damaged or incomplete"),
        "empty file": (empty, "The uploaded file is empty."),
        "no face": (noface, "No face was found in this photo."),
        "over the pixel limit": (large, "more than 1 million pixels"),
        "decompression bomb": (bomb, "possible decompression bomb"),
        "animated GIF": (gif, "This photo has 3 frames (an animated GIF); only single-frame "
                              "images are processed"),
    }


@pytest.mark.parametrize("case", ["text renamed .jpg", "truncated JPEG", "empty file",
                                  "no face", "over the pixel limit", "decompression bomb",
                                  "animated GIF"])
def test_bad_files_get_one_sentence(client, tmp_path, case):
    from gradio_client.exceptions import AppError

    path, message = _bad_files(tmp_path)[case]
    with pytest.raises(AppError) as err:
        _anonymize(client, path)
    assert message in str(err.value)
    assert "Traceback" not in str(err.value) and "/" not in str(err.value)


@pytest.mark.parametrize("options, message", [
    (dict(epsilon=-1.0), "The privacy budget must be a number from 0 to 10 (smaller is more "
                         "private)."),
    (dict(epsilon=11.0), "The privacy budget must be a number from 0 to 10 (smaller is more "
                         "private)."),
    (dict(method="laplace", epsilon=0.0), "Laplace noise needs a privacy budget above 0."),
    (dict(anonymize=()), "Tick at least one thing to anonymize (identity, for example)."),
    (dict(anonymize=("identity", "age"), recover=("age",)),
     "Keyword(s) age cannot be both anonymized and recovered"),
    (dict(seed="abc"), "The seed must be 'random' or a whole number"),
    (dict(samples=9), "How many versions must be a whole number from 1 to 8 (each version "
                      "uses the privacy budget once more)."),
    (dict(method="style-mix"), "style-mix cannot keep anything from your photo: leave \"Keep "
                               "from your photo\" empty."),
    (dict(method="laplace", anonymize=("gender",), recover=()),
     "Laplace always replaces the identity: tick \"identity\" under Anonymize."),
    (dict(method="blur", blur_strength=0.0), "The strength of blur must be more than 0 and at "
                                             "most 1."),
    (dict(method="mask", mask_opacity=1.5), "The strength of mask must be more than 0 and at "
                                            "most 1."),
    (dict(method="morphing"), "The method 'morphing' cannot run here"),
])
def test_bad_choices_get_one_sentence_in_visitor_words(client, photo_file, options, message):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as err:
        _anonymize(client, photo_file, **options)
    assert str(err.value).startswith(message)


# -- what stays on the server, and for how long -----------------------------------------------

def test_a_second_party_cannot_fetch_the_upload_and_results_go_soon(server):
    """What benchmarks/bench_app_files.py measures, held to the Privacy tab's promise."""
    import runpy

    measure = runpy.run_path(str(ROOT / "benchmarks" / "bench_app_files.py"))["measure"]
    report = measure(server.url, max_wait=RESULT_SECONDS + SWEEP_SECONDS + 5, every=0.5)
    status, seconds = report["status_right_after_response"], report["fetchable_for_s"]
    assert status.pop("upload") == 403  # deleted once read: a second party's GET fails
    assert len(status) >= 2 and set(status.values()) == {200}  # before, after: delivered
    upload = Path(report["upload_path"])
    assert not upload.exists() and not upload.parent.exists()  # the file and its folder
    assert [p for p in server.files() if p.name == upload.name] == []
    results = [s for name, s in seconds.items() if name != "upload"]
    assert all(s is not None and s <= RESULT_SECONDS + SWEEP_SECONDS + 1 for s in results)


def test_the_privacy_tab_states_the_rules_it_keeps(server):
    import httpx

    page = httpx.get(server.url + "config", timeout=30).text
    assert f"deleted {RESULT_SECONDS} seconds after it was made" in page
    assert "deletes that file and its" in page and "5 minutes" in page and "10 minutes" in page


# -- headless Chromium ----------------------------------------------------------------------

def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


CUT = """[...document.querySelectorAll(%r)].filter(e => e.clientWidth > 0 &&
         e.scrollWidth > e.clientWidth + 1).map(e => e.innerText)"""
TEXT_ELEMENTS = ("#results .caption-label, #compare-results .caption-label, #record td, "
                 "#record th, #compare-table [role=gridcell], #compare-table [role=gridcell] *, "
                 "#compare-table [role=columnheader], #compare-table [role=columnheader] *")


def _tabs_all_visible(page) -> None:
    import app

    tabs = page.evaluate("""[...document.querySelectorAll('[role=tablist] [role=tab]')].map(
        b => { const r = b.getBoundingClientRect();
               return [b.innerText.trim(), r.width > 0 && r.left >= 0 &&
                       r.right <= window.innerWidth]; })""")
    assert [name for name, _ in tabs] == [label for label, _ in app.TABS]
    assert all(shown for _, shown in tabs), tabs
    assert page.evaluate("[...document.querySelectorAll('.overflow-menu')].every("
                         "m => m.classList.contains('hide') || m.offsetParent === null)")


def _wait_result(page, marker: str) -> None:
    """Until the record names the method just run (or an error toast appears)."""
    page.wait_for(f"document.querySelector('#record').innerText.includes({marker!r}) || "
                  f"document.querySelector('.toast-body') !== null", timeout=180)
    toast = page.evaluate("document.querySelector('.toast-body') && "
                          "document.querySelector('.toast-body').innerText")
    assert not toast, toast
    page.evaluate("document.querySelector('#results').scrollIntoView()")  # images load lazily
    page.wait_for("[...document.querySelectorAll('#results img')].some(i => i.complete && "
                  "i.naturalWidth > 0) && document.querySelector('#before-after img') "
                  "!== null", timeout=60)


def _choose(page, label: str) -> None:
    page.evaluate("document.querySelector('#method input').focus();"
                  "document.querySelector('#method input').click()")
    page.wait_for(f"[...document.querySelectorAll('[role=option]')].some("
                  f"e => e.innerText.trim() === {label!r})", timeout=10)
    page.evaluate(f"[...document.querySelectorAll('[role=option]')].find(e => "
                  f"e.innerText.trim() === {label!r}).dispatchEvent("
                  f"new MouseEvent('mousedown', {{bubbles: true}}))")
    page.wait_for(f"document.querySelector('#method input').value === {label!r}", timeout=10)


#: What the form shows for each method once it has followed the menu (element ids).
FORM = {"lreorg": ({"keep", "epsilon"}, {"strength-blur"}),
        "style-mix": ({"epsilon"}, {"keep"}),
        "laplace": ({"keep", "epsilon"}, {"strength-blur"}),
        "k-anonymity": ({"keep"}, {"epsilon"}),
        "blur": ({"strength-blur"}, {"keep", "epsilon"}),
        "pixelate": ({"strength-pixelate"}, {"strength-blur", "epsilon"}),
        "mask": ({"strength-mask"}, {"strength-pixelate", "keep"})}


def _wait_form(page, method: str) -> None:
    shown, hidden = FORM[method]
    condition = " && ".join(
        [f"(e => e !== null && e.offsetParent !== null)(document.getElementById({i!r}))"
         for i in shown] +
        [f"(e => e === null || e.offsetParent === null)(document.getElementById({i!r}))"
         for i in hidden])
    page.wait_for(condition, timeout=30)


def _click_example(page, tab: str) -> None:
    example = (f"document.querySelector('#{tab}-example button, #{tab}-example td, "
               f"#{tab}-example .gallery-item')")
    page.wait_for(f"{example} !== null", timeout=60)
    page.evaluate(f"{example}.click()")
    page.wait_for(f"document.querySelector('#{tab}-photo img') !== null", timeout=30)


def test_browser_every_method_both_widths_nothing_cut(server, tmp_path, photo_file):
    binary = _chromium()
    if binary is None:  # a missing browser is a failed test, never a silent skip
        pytest.fail("headless Chromium is needed for the app's browser test: install Debian's "
                    "`chromium` package (apt-get install chromium); .ci/run does")
    from cdp import Browser

    from lreorg_hub.serving import PAGE_LABELS, SHORT_NAMES

    shots = Path(os.environ.get("LREORG_SCREENSHOTS") or tmp_path / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    with Browser(binary, tmp_path / "profile", width=1280, height=1000) as page:
        for width, height in ((1280, 1000), (390, 844)):
            page.resize(width, height)
            page.navigate(server.url)
            page.wait_for("document.querySelector('#run-anonymize') !== null", timeout=60)
            text = page.evaluate("document.body.innerText")
            assert "Upload a photo or tap the example, then press Anonymize." in text
            assert "hf download" not in text and "LREORG_" not in text
            _tabs_all_visible(page)
            if width == 1280:
                # the visitor's own photo: the upload is deleted once read, and other
                # settings still run on it (from this session's memory)
                page.upload("#anonymize-photo input[type=file]", photo_file)
                page.wait_for("document.querySelector('#anonymize-photo img') !== null",
                              timeout=30)
                page.evaluate("document.querySelector('#run-anonymize').click()")
                _wait_result(page, "(LReOrg)")
                assert [p for p in server.files() if p.name == photo_file.name] == []
                _choose(page, PAGE_LABELS["k-anonymity"])
                _wait_form(page, "k-anonymity")
                page.evaluate("document.querySelector('#run-anonymize').click()")
                _wait_result(page, "(k-anonymity)")
                _choose(page, PAGE_LABELS["lreorg"])
                _wait_form(page, "lreorg")
            _click_example(page, "anonymize")
            advanced = ("[...document.querySelectorAll('button, .label-wrap')].find(b => "
                        "b.innerText.trim().startsWith('Advanced'))")
            page.wait_for(f"{advanced} !== undefined", timeout=30)
            page.evaluate(f"{advanced}.click()")
            page.wait_for("document.querySelector('#rank-window') !== null && "
                          "document.querySelector('#rank-window').offsetParent !== null")
            for i, method in enumerate(["lreorg", "style-mix", "laplace", "k-anonymity",
                                        "blur", "pixelate", "mask"]):
                if i:
                    _choose(page, PAGE_LABELS[method])
                _wait_form(page, method)
                page.evaluate("document.querySelector('#run-anonymize').click()")
                _wait_result(page, f"({SHORT_NAMES[method]})")
                captions = page.evaluate("[...document.querySelectorAll('#results "
                                         ".caption-label')].map(e => e.innerText.trim())")
                assert captions == ([method] if method in ("blur", "pixelate", "mask") else
                                    ["nothing kept", "version 1"] if method != "style-mix"
                                    else ["version 1"]), (method, captions)
                assert page.evaluate(CUT % TEXT_ELEMENTS) == [], (width, method)
                if method == "lreorg":
                    page.screenshot(shots / f"anonymize_{width}.png")
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            # Compare: one run of every method; its table fits (1280) or scrolls in its box
            page.evaluate("[...document.querySelectorAll('[role=tab]')].find(b => "
                          "b.innerText.trim() === 'Compare').click()")
            _click_example(page, "compare")
            page.evaluate("document.querySelector('#run-compare').click()")
            page.wait_for("document.querySelectorAll('#compare-table .virtual-row').length >= 7 "
                          "&& document.querySelector('#compare-summary').innerText.includes("
                          "'spent on this photo')", timeout=240)
            page.evaluate("document.querySelector('#compare-results').scrollIntoView()")
            page.wait_for("[...document.querySelectorAll('#compare-results img')].every("
                          "i => i.complete && i.naturalWidth > 0)", timeout=60)
            assert page.evaluate(CUT % TEXT_ELEMENTS) == [], width
            table_fits = page.evaluate("[...document.querySelectorAll('#compare-table "
                                       ".virtual-table-viewport')].every("
                                       "e => e.scrollWidth <= e.clientWidth + 1)")
            assert table_fits == (width == 1280)
            assert page.evaluate("document.documentElement.scrollWidth") <= width
            gallery_inside = page.evaluate("""(() => {
                const box = document.querySelector('#compare-results').getBoundingClientRect();
                return [...document.querySelectorAll('#compare-results .thumbnail-item, '
                                                     + '#compare-results button.thumbnail-lg')]
                    .every(e => e.getBoundingClientRect().right <= box.right + 1); })()""")
            assert gallery_inside
            page.screenshot(shots / f"compare_{width}.png")
    for name in ("anonymize_1280", "anonymize_390", "compare_1280", "compare_390"):
        image = Image.open(shots / f"{name}.png")
        assert len(np.unique(np.asarray(image.convert("L")))) > 50, name


def test_readme_client_example_runs(server, tmp_path):
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text("utf-8")
    marker = readme.index("<!-- app-client:")
    start = readme.index("```python\n", marker) + len("```python\n")
    code = readme[start:readme.index("```", start)]
    assert 'Client("http://127.0.0.1:7860/")' in code
    code = code.replace("http://127.0.0.1:7860/", server.url)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300,
                          env={**os.environ, "GRADIO_TEMP_DIR": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()[-3:]  # the client first says where it connected
    assert lines[1] == "3.0 None"  # k·ε for k = 3, and no seed from OS entropy
    assert "'LReOrg'" in lines[2] and "'mask'" in lines[2]
    assert Path(lines[0].split()[0]).is_file()  # the result, downloaded by the client
