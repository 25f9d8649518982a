"""The app's start-up (flags and environment variables decide the weights once; the console
banner tells the operator, the page tells the visitor in one sentence), its per-method form,
its handlers in process (uploads read once and deleted, visitor sentences), and ZeroGPU
scheduling with the `spaces` package's errors simulated. The served app is tested in
test_app_live.py."""

import importlib
import importlib.util
import io
import json
import logging
import math
import sys
import types
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from conftest import save_as_e4e_checkpoint

ROOT = Path(__file__).resolve().parents[1]
BACKBONE_VARS = ("LREORG_BACKBONE_PATH", "LREORG_BACKBONE_REPO", "LREORG_BACKBONE_FILE",
                 "LREORG_BACKBONE_REVISION", "LREORG_BUNDLE", "LREORG_DEMO",
                 "LREORG_IDENTITY_WEIGHTS")
#: What only the operator needs: never on the page.
OPERATOR_WORDS = ("hf download", "HF_HOME", "LREORG_", "$TORCH_HOME", "--bundle", "--backbone",
                  "--identity-weights", "20180402-114759-vggface2.pt")
SESSION = types.SimpleNamespace(session_hash="visitor-1")


@pytest.fixture
def app(tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    for var in BACKBONE_VARS:
        monkeypatch.delenv(var, raising=False)
    return importlib.import_module("app")


@pytest.fixture(scope="module")
def weights_on_disk(tmp_path_factory, photo_bundle, tiny_backbone):
    root = tmp_path_factory.mktemp("weights")
    photo_bundle.save_pretrained(root / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, root / "tiny_e4e.pt")
    return root / "bundle", root / "tiny_e4e.pt"


@pytest.fixture(scope="module")
def demo_runtime():
    from lreorg_hub import serving as sv

    return sv.load_runtime(sv.ServingConfig(demo=True, identity_weights=None))


@pytest.fixture
def photo_path(tmp_path, astronaut):
    path = tmp_path / "astronaut.png"
    astronaut.save(path)
    return path


def _page_text(demo: gr.Blocks) -> str:
    """Everything the page can show: the whole config the browser receives (what Gradio
    cannot write as JSON, a gr.State's delete callback, goes as its str(), as Gradio's
    ORJSONResponse sends it)."""
    return json.dumps(demo.get_config_file(), ensure_ascii=False, default=str)


def _markdown(demo: gr.Blocks) -> str:
    return "\n".join(str(b.value) for b in demo.blocks.values() if isinstance(b, gr.Markdown))


def _component(demo: gr.Blocks, cls, label: str):
    (found,) = [b for b in demo.blocks.values() if isinstance(b, cls) and b.label == label]
    return found


def _run(app, photo, method="lreorg", request=SESSION, **fields):
    form = dict(anonymize=["identity"], recover=[], epsilon=1.0, mechanism="window",
                rank_low=None, rank_high=None, seed="random", samples=1, blur_strength=0.1,
                pixelate_strength=0.1, mask_opacity=1.0)
    form.update(fields)
    return app.anonymize_photo(photo, method, **form, request=request)


def test_flags_win_over_environment_variables(app):
    env = {"LREORG_DEMO": "1", "LREORG_BUNDLE": "org/from-env", "LREORG_RESULT_SECONDS": "7"}
    args = app.parse_args([], env)
    assert args.demo and args.bundle == "org/from-env" and args.result_seconds == 7
    assert app.file_rules(args).result_s == 7 and app.file_rules(args).unused_upload_s == 300
    args = app.parse_args(["--bundle", "org/from-flag", "--no-identity"], env)
    assert args.bundle == "org/from-flag" and app.serving_config(args).identity_weights is None
    assert app.parse_args([], {}).demo is False


def test_nothing_downloadable_tells_the_operator_not_the_visitor(app, tmp_path, monkeypatch,
                                                                  caplog):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # no cached facenet file
    with caplog.at_level(logging.WARNING, logger="lreorg_hub.app"):
        demo, _ = app.startup([], environ={})
    runtime = app.RUNTIME
    assert runtime.mode == "baselines" and runtime.methods == ["blur", "pixelate", "mask"]
    console = caplog.text
    assert "Classical baselines only" in console and "No LReOrg bundle given" in console
    assert "hf download" in console and "LREORG_BACKBONE_PATH" in console
    assert "--identity-weights" in console
    page = _page_text(demo)
    assert [w for w in OPERATOR_WORDS if w in page] == []
    assert ("Faces can only be blurred, pixelated or masked here; replacing them needs model "
            "weights that are not loaded.") in _markdown(demo)
    # no keyword boxes for a method that uses none, and no blurb repeated per keyword
    assert _component(demo, gr.CheckboxGroup, "Anonymize").visible is False
    assert page.count("obfuscates the whole face") == 0
    assert page.count("only its strength can be set") == 1


def test_the_console_banner_says_the_weights_are_random(app, caplog):
    with caplog.at_level(logging.WARNING, logger="lreorg_hub.app"):
        demo, _ = app.startup(["--demo", "--no-identity"], environ={})
    assert "WEIGHTS ARE RANDOM (--demo)" in caplog.text
    assert "new faces will not look like real faces" in _markdown(demo)
    assert "RANDOM" not in _page_text(demo)


TECHNICAL = r"\bdraws?\b|sequential composition|rank window|W\+|ε|CDFNet|\bGIA\b|mechanism"


def _outside_folds(block, out: list[str]) -> list[str]:
    """The texts a visitor sees without opening a fold (Accordion)."""
    if isinstance(block, gr.Accordion):
        return out
    for name in ("value", "label", "info", "choices"):
        value = getattr(block, name, None)
        if isinstance(value, str):
            out.append(value)
        elif isinstance(value, list):
            out += [str(v) for v in value]
    for child in getattr(block, "children", []):
        _outside_folds(child, out)
    return out


def test_technical_terms_stay_in_the_folds(app, demo_runtime):
    import re

    demo = app.build_app(demo_runtime)
    visible = "\n".join(_outside_folds(demo, []))
    assert "Privacy budget (smaller = more private)" in visible and "How many versions" in visible
    assert re.findall(TECHNICAL, visible) == []
    everything = _page_text(demo)
    assert "sequential composition" in everything and "rank window" in everything.lower()


def test_bundle_and_backbone_from_flags_run_lreorg(app, weights_on_disk, astronaut, photo_path):
    bundle, backbone = weights_on_disk
    demo, _ = app.startup(["--bundle", str(bundle), "--backbone", str(backbone),
                           "--no-identity"], environ={})
    assert app.RUNTIME.mode == "lreorg" and app.RUNTIME.methods[0] == "lreorg"
    assert "can keep the attributes you choose" in _markdown(demo)
    (before, after), gallery, summary, details, record = _run(
        app, {"path": str(photo_path)}, anonymize=["identity"], recover=["gender"],
        epsilon=2.0, mechanism="strict", seed="11", samples=2)
    assert before.size == after.size == astronaut.size
    assert [c for _, c in gallery] == ["nothing kept", "version 1", "version 2"]
    assert "| version 2 | " in summary and "similarity" not in summary  # identity net off
    assert "**Privacy budget:** 2 per version × 2 versions = 4 in total." in summary
    assert "**Seed:** 11 (typed by you)." in summary
    assert "can replay how your face was replaced and recognise you" in summary
    assert "**Mechanism:** strict" in details and "sequential composition" in details
    assert record["mechanism"] == "strict" and record["seed"] == 11
    assert record["epsilon_total"] == pytest.approx(4.0)


def test_backbone_from_environment_without_bundle(app, weights_on_disk, monkeypatch):
    _, backbone = weights_on_disk
    monkeypatch.setenv("LREORG_BACKBONE_PATH", str(backbone))
    demo, _ = app.startup(["--no-identity"], environ={"LREORG_BACKBONE_PATH": str(backbone)})
    runtime = app.RUNTIME
    assert runtime.pipeline.generator is not None and runtime.pipeline.model is None
    assert runtime.mode == "style-mix"
    assert runtime.methods == ["style-mix", "blur", "pixelate", "mask"]
    assert "keeping chosen attributes needs a trained model" in _markdown(demo)
    assert _component(demo, gr.CheckboxGroup, "Keep from your photo").visible is False
    assert ("style-mix replaces the identity only; keeping attributes needs LReOrg with a "
            "trained model.") in _markdown(demo)


def test_a_broken_bundle_is_named_in_the_console_only(app, tmp_path, weights_on_disk, caplog):
    _, backbone = weights_on_disk
    (tmp_path / "not_a_bundle").mkdir()
    with caplog.at_level(logging.WARNING, logger="lreorg_hub.app"):
        demo, _ = app.startup(["--bundle", str(tmp_path / "not_a_bundle"), "--backbone",
                               str(backbone), "--no-identity"], environ={})
    assert app.RUNTIME.mode != "lreorg"
    assert "did not load" in caplog.text and "config.json is missing" in caplog.text
    assert "config.json" not in _page_text(demo)


@pytest.mark.parametrize("method, shown, hidden, note", [
    ("lreorg", {"anonymize", "recover", "epsilon", "samples", "seed", "advanced"},
     {"blur", "pixelate", "mask", "note"}, ""),
    ("style-mix", {"epsilon", "samples", "seed", "advanced", "note"},
     {"anonymize", "recover", "blur"}, "style-mix replaces the identity only"),
    ("laplace", {"anonymize", "recover", "epsilon", "samples", "seed"},
     {"advanced", "mask", "note"}, ""),
    ("k-anonymity", {"anonymize", "recover", "note"},
     {"epsilon", "samples", "seed", "advanced"}, "uses no privacy budget, versions or seed"),
    ("blur", {"blur", "note"}, {"anonymize", "recover", "epsilon", "samples", "seed",
                                "advanced", "pixelate", "mask"}, "only its strength"),
    ("mask", {"mask", "note"}, {"anonymize", "epsilon", "blur"}, "only its strength"),
])
def test_the_form_shows_what_the_method_uses(app, demo_runtime, method, shown, hidden, note):
    app.build_app(demo_runtime)
    names = ["anonymize", "recover", "epsilon", "samples", "seed", "advanced", "rank_low",
             "rank_high", "blur", "pixelate", "mask", "note"]
    updates = dict(zip(names, app.method_controls(method)))
    assert {n for n in shown | hidden if updates[n]["visible"]} == shown
    assert note in updates["note"]["value"]
    assert "identity" not in updates["recover"]["choices"]  # keeping it would undo it all
    assert updates["rank_high"]["maximum"] == demo_runtime.groups(method)


def test_budget_refuses_what_is_not_a_budget(app, demo_runtime):
    app.build_app(demo_runtime)
    assert app.total_budget("lreorg", ["identity"], 0.5, 4) == (
        "4 versions at privacy budget 0.5 each use a total privacy budget of 2.")
    assert app.total_budget("blur", [], 1.0, 1) == (
        "This choice uses no privacy budget (and gives no formal guarantee).")
    for bad in (math.nan, math.inf, "nan", -1.0, 10.5):
        with pytest.raises(gr.Error) as err:
            app.total_budget("lreorg", ["identity"], bad, 1)
        assert err.value.message == ("The privacy budget must be a number from 0 to 10 "
                                     "(smaller is more private).")
    # on the page, a choice the library refuses is said in place (no pop-up while editing)
    assert app.budget_line("laplace", ["gender"], 1.0, 1) == (
        "Laplace always replaces the identity: tick \"identity\" under Anonymize.")
    assert app.compare_budget_line(1.0).startswith(
        "Comparing uses a total privacy budget of **3** on your photo")


def test_an_animated_gif_gets_the_frames_sentence(demo_runtime):
    from lreorg_hub import serving as sv

    frames = [Image.new("RGB", (64, 64), (i * 60, 0, 0)) for i in range(3)]
    data = io.BytesIO()
    frames[0].save(data, "GIF", save_all=True, append_images=frames[1:])
    with pytest.raises(sv.RequestError) as err:
        sv.read_photo(data.getvalue(), 10_000_000)
    assert str(err.value) == (
        "This photo has 3 frames (an animated GIF); only single-frame images are processed, "
        "so that no frame is left unprotected by mistake. Save each frame you want as its own "
        "image and use those instead.")


def test_unexpected_failures_become_one_generic_sentence(app, demo_runtime, monkeypatch,
                                                          photo_path):
    app.build_app(demo_runtime)

    def broken(photo, request):
        raise RuntimeError("internal detail /srv/secret/path")

    monkeypatch.setattr(app, "_protect_on_device", broken)
    with pytest.raises(gr.Error) as err:
        _run(app, {"path": str(photo_path)})
    assert "Something went wrong" in err.value.message
    assert "/srv" not in err.value.message


# -- the upload: read once, deleted with its folder, then only in this session's memory --------

def _upload(app, photo_path, name="selfie.jpg") -> Path:
    """A file where Gradio's upload route puts one, registered as Gradio registers it."""
    from gradio.utils import get_upload_folder

    path = Path(get_upload_folder()) / "f00d" / name
    path.parent.mkdir(parents=True)
    path.write_bytes(photo_path.read_bytes())
    app.FILES.uploads.add(str(path))
    return path


def test_an_upload_is_deleted_once_read_and_stays_only_in_its_sessions_memory(
        app, demo_runtime, photo_path):
    app.build_app(demo_runtime)
    upload = _upload(app, photo_path)
    _run(app, {"path": str(upload)}, method="blur")
    assert not upload.exists() and not upload.parent.exists()
    assert str(upload) not in app.FILES.uploads
    # the same visitor tries other settings without uploading again
    (_, after), *_ = _run(app, {"path": str(upload)}, method="pixelate")
    assert after.size == Image.open(photo_path).size
    # another session cannot use it
    with pytest.raises(gr.Error) as err:
        _run(app, {"path": str(upload)}, method="blur",
             request=types.SimpleNamespace(session_hash="someone-else"))
    assert err.value.message == ("Your photo was deleted from the server as the Privacy tab "
                                 "says; please upload it again.")
    app.FILES.photos.forget("visitor-1")  # the tab was closed
    with pytest.raises(gr.Error, match="deleted from the server"):
        _run(app, {"path": str(upload)}, method="blur")


def test_the_sweep_keeps_the_example_and_purges_everything_else_at_shutdown(
        app, demo_runtime, photo_path):
    app.build_app(demo_runtime, app.sv.FileRules(result_s=3600, unused_upload_s=3600))
    example = next(iter(app.FILES.shared()))  # the example photo's copy, for every visitor
    unused = _upload(app, photo_path, "never_used.jpg")
    app.FILES.sweep()
    assert unused.is_file() and Path(example).is_file()  # younger than their ages
    app.FILES.sweep(final=True)
    assert not unused.exists() and Path(example).is_file()
    assert app.FILES.uploads == set()


# -- ZeroGPU: one scheduled call per click, its duration from the work, its errors in words ----

class FakeZeroGPU:
    """Stands in for the `spaces` package on a ZeroGPU Space (not installable here): its GPU
    decorator computes the duration from the call's arguments, and raises what spaces 0.51.3
    raises (spaces.zero.gradio.error: a gr.Error with a ZeroGPU title; any other exception
    from the worker comes back as its bare class name, spaces/zero/wrappers.py)."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.fail: tuple[str, str] | None = None

    def GPU(self, task=None, *, duration=None, size=None):
        def decorate(fn):
            def wrapper(*args, **kwargs):
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                self.calls.append((fn.__name__, seconds))
                if self.fail is not None:
                    title, message = self.fail
                    raise gr.Error(message, title=title, print_exception=False)
                try:
                    return fn(*args, **kwargs)
                except gr.Error:
                    raise
                except Exception as exc:
                    raise gr.Error(type(exc).__name__, title="ZeroGPU worker error",
                                   print_exception=False) from None
            return wrapper
        return decorate(task) if callable(task) else decorate


@pytest.fixture
def zerogpu_app(tmp_path, monkeypatch, demo_runtime):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    zero = FakeZeroGPU()
    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=zero.GPU))
    spec = importlib.util.spec_from_file_location("app_on_zerogpu", ROOT / "app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.build_app(demo_runtime)
    return module, zero


def test_compare_is_one_gpu_call_with_a_duration_from_the_work(zerogpu_app, photo_path):
    app, zero = zerogpu_app
    gallery, table, summary = app.compare_methods({"path": str(photo_path)}, "random", 1.0,
                                                  request=SESSION)
    requests = app.sv.comparison_requests(app.RUNTIME, "random", 1.0)
    assert zero.calls == [("_compare_on_device", app.sv.gpu_seconds(requests))]
    # 7 methods: 20 s to start + 3 s per generated image (LReOrg's two, one each for the other
    # latent methods) + 1 s per image baseline
    assert app.sv.gpu_seconds(requests) == 20 + 3 * (2 + 1 + 1 + 1) + 1 * 3
    assert table["headers"] == ["method", "face found", "seconds"]  # no similarity measured
    assert [row[0] for row in table["data"]] == ["LReOrg", "style-mix", "Laplace",
                                                 "k-anonymity", "blur", "pixelate", "mask"]
    assert [c for _, c in gallery] == [row[0] for row in table["data"]]
    assert summary.startswith("**Privacy budget spent on this photo:** 3 in total")
    zero.calls.clear()
    _run(app, {"path": str(photo_path)}, samples=4, recover=["gender"])
    assert zero.calls == [("_protect_on_device", 20 + 3 * 5)]


SPACES_ERRORS = [  # (title, message) exactly as spaces 0.51.3 builds them
    (("ZeroGPU quota exceeded", "You have exceeded your free ZeroGPU quota (41s requested vs. "
      "12s left). Try again in 0:04:10. "),
     "Your free GPU time on Hugging Face is used up for now; please try again in 0:04:10 "
     "(hours:minutes:seconds), or log in to Hugging Face for more GPU time."),
    (("ZeroGPU quota exceeded", "Space app has reached its GPU limit. Try re-running outside "
      "of examples if it happened after clicking one"),
     "This Space has used up its GPU time for now; please try again in a few minutes."),
    (("ZeroGPU worker error", "GPU task aborted"),
     "The GPU stopped this task before it finished (it ran out of time or the GPU was "
     "reclaimed); please try again, with fewer versions if it happens again."),
    (("ZeroGPU queue timeout", "No GPU was available after 60s. Retry later"),
     "No GPU became free in time (many visitors right now); please try again in a minute."),
    (("ZeroGPU illegal duration", "The requested GPU duration (300s) is larger than the "
      "maximum allowed"),
     "This request needs more GPU time than one run may take; choose fewer versions and try "
     "again."),
]


@pytest.mark.parametrize("error, sentence", SPACES_ERRORS)
def test_each_zerogpu_error_reaches_the_visitor_as_its_own_sentence(zerogpu_app, photo_path,
                                                                     error, sentence):
    app, zero = zerogpu_app
    zero.fail = error
    for call in (lambda: app.compare_methods({"path": str(photo_path)}, "random", 1.0,
                                             request=SESSION),
                 lambda: _run(app, {"path": str(photo_path)})):
        with pytest.raises(gr.Error) as err:
            call()
        assert err.value.message == sentence


def test_a_visitor_error_inside_the_gpu_call_keeps_its_sentence(zerogpu_app, tmp_path):
    app, _ = zerogpu_app
    wall = tmp_path / "wall.png"
    Image.fromarray(np.full((200, 300, 3), 200, np.uint8)).save(wall)
    for call in (lambda: app.compare_methods({"path": str(wall)}, "random", 1.0,
                                             request=SESSION),
                 lambda: _run(app, {"path": str(wall)})):
        with pytest.raises(gr.Error) as err:
            call()
        assert err.value.message.startswith("No face was found in this photo.")


@pytest.mark.parametrize("fields, sentence", [
    (dict(rank_low=2, rank_high=20),
     "The rank window (under Advanced) needs 1 ≤ start ≤ end ≤ 16."),
    (dict(rank_low=5, rank_high=2),
     "The rank window (under Advanced) needs 1 ≤ start ≤ end ≤ the number of groups."),
    (dict(samples=0), "How many versions must be a whole number from 1 to 8 (each version uses "
                      "the privacy budget once more)."),
    (dict(epsilon=-0.5), "The privacy budget must be a number from 0 to 10 (smaller is more "
                         "private)."),
    (dict(mechanism="fuzzy"), "Mechanism must be 'window' or 'strict', got 'fuzzy'"),
])
def test_the_librarys_one_validation_in_the_visitors_words(demo_runtime, fields, sentence):
    from lreorg_hub import serving as sv

    form = dict(anonymize=["identity"], recover=[], epsilon=1.0)
    form.update(fields)
    with pytest.raises(sv.RequestError) as err:
        sv.check_options(demo_runtime, sv.options_from_form(demo_runtime, "lreorg", **form))
    assert str(err.value).startswith(sentence)
