"""The Gradio app: ``python app.py [--demo] [--bundle ...] [--backbone ...]``.

Thin on purpose: this file lays out the page (one builder per tab, listed in ``TABS``) and
calls ``lreorg_hub.serving``, which runs ``LReOrgPipeline`` (the API the CLI and the tests use).
Which weights run is decided once at start; the console banner tells the operator, the page
tells the visitor in one sentence. What is kept of a visitor's photo or clip, where and for
how long is ``FILES`` (``lreorg_hub.serving.files``), applied to Gradio's files.
"""

# ZeroGPU: `spaces` must be imported before anything initialises CUDA; elsewhere the
# decorator is a no-op (and the package may be absent).
try:
    import spaces

    GPU = spaces.GPU
except ImportError:
    def GPU(fn=None, **_):
        return fn if callable(fn) else (lambda f: f)

import argparse
import base64
import logging
import os
import signal
import threading
from pathlib import Path

import gradio as gr
from gradio.utils import get_upload_folder

from lreorg_hub import serving as sv
from lreorg_hub.pipeline.options import STRENGTH_LIMITS
from lreorg_hub.serving import video as sv_video, webcam as sv_webcam
from lreorg_hub.serving.flags import ENV_BACKBONE_HUB, file_rules, parse_args, serving_config

logger = logging.getLogger("lreorg_hub.app")

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE / "examples" / "astronaut.jpg"
RUNTIME: sv.Runtime | None = None      # loaded once per process by startup()
FILES: sv.VisitorFiles | None = None    # what is kept of visitors' photos (build_app)

# ---------------------------------------------------------------------------------------------
# Work on the accelerator: ZeroGPU schedules each decorated call (one per click, Compare
# included) for the duration computed from its work; elsewhere they run in place.


def _returned(work, *args):
    """ZeroGPU hands any exception but gr.Error back from its worker as the bare class name,
    so a visitor's error travels back as a value and is raised again in :func:`_on_device`."""
    try:
        return work(*args), None
    except sv.RequestError as exc:
        return None, str(exc)


def _protect_seconds(photo, options) -> int:
    return sv.gpu_seconds([options])


@GPU(duration=_protect_seconds)
def _protect_on_device(photo, options):
    return _returned(sv.protect_photo, RUNTIME, photo, options)


def _compare_seconds(photo, requests) -> int:
    return sv.gpu_seconds(requests)


@GPU(duration=_compare_seconds)
def _compare_on_device(photo, requests):
    return _returned(sv.compare_photo, RUNTIME, photo, requests)


def _clip_seconds(clip, options, out_dir, progress=None) -> int:
    return sv_video.clip_gpu_seconds(clip)


@GPU(duration=_clip_seconds)  # one call per clip, its duration from the clip's frames
def _clip_on_device(clip, options, out_dir, progress=None):
    return _returned(sv_video.protect_clip, RUNTIME, clip, options, out_dir, progress)


@GPU(duration=10)
def _webcam_on_device(frame, session, method, epsilon):
    return _returned(sv_webcam.webcam_frame, RUNTIME, frame, session, method, epsilon)


def _on_device(device_call, *args):
    value, error = device_call(*args)
    if error is not None:
        raise sv.RequestError(error)
    return value


# ---------------------------------------------------------------------------------------------
# The visitor's upload: read once, deleted at once (events run with preprocess=False, so the
# library decodes the bytes: its pixel limit, bomb check and messages apply)


def _photo_bytes(photo, request: gr.Request | None, clip: bool = False) -> bytes | None:
    """The bytes of the photo (or clip) an event was given (None: none), under FILES' rules;
    a clip is kept in memory apart from the session's photo."""
    if photo is None:
        return None
    path = photo.get("path") if isinstance(photo, dict) else photo
    if not path:
        url = (photo.get("url") or "") if isinstance(photo, dict) else ""
        if url.startswith("data:") and "," in url:
            return base64.b64decode(url.split(",", 1)[1])
        return None
    session = getattr(request, "session_hash", None) or ""
    if clip:
        return FILES.photo_bytes(path, session + CLIP_SLOT, gone=sv.CLIP_GONE)
    return FILES.photo_bytes(path, session)


CLIP_SLOT = "/clip"   # a session's clip is kept beside its photo, not instead of it


def _forget_photo(request: gr.Request):
    session = getattr(request, "session_hash", None) or ""
    FILES.photos.forget(session)
    FILES.photos.forget(session + CLIP_SLOT)


def _shared_files(demo: gr.Blocks) -> set[str]:
    """What Gradio keeps for every visitor (the example's copy)."""
    return set().union(*(getattr(b, "keep_in_cache", set()) for b in demo.blocks.values()))


def _sweep_forever(stop: threading.Event) -> None:
    while not stop.wait(FILES.rules.sweep_every_s):
        try:
            FILES.sweep()
        except OSError as exc:  # never let the sweeper die: it is the privacy promise
            logger.error("sweep failed: %s", exc)


# ---------------------------------------------------------------------------------------------
# Handlers: validate, call the library, turn every failure into one sentence


def _page_error(exc: Exception, what: str = "photo") -> gr.Error:
    if isinstance(exc, gr.Error) and str(getattr(exc, "title", "")).startswith("ZeroGPU"):
        return gr.Error(sv.gpu_message(exc.title, exc.message, what), print_exception=False)
    if not isinstance(exc, sv.RequestError):
        logger.error("request failed: %s", type(exc).__name__, exc_info=exc)
    return gr.Error(sv.user_message(exc, what), print_exception=False)


def anonymize_photo(photo, method, anonymize, recover, epsilon, mechanism, rank_low, rank_high,
                    seed, samples, blur_strength, pixelate_strength, mask_opacity,
                    request: gr.Request = None, progress=gr.Progress()):
    """Anonymize the faces of one photo. Returns (before, after), every version with a short
    caption, what was done in words, the technical details, and the public privacy record
    (a random seed is never in it). Each strength applies only to its own method."""
    strength = {"blur": blur_strength, "pixelate": pixelate_strength,
                "mask": mask_opacity}.get(method)
    try:
        options = sv.check_options(RUNTIME, sv.options_from_form(
            RUNTIME, method, anonymize, recover, epsilon, mechanism, rank_low, rank_high, seed,
            samples, strength))
        image = sv.read_photo(_photo_bytes(photo, request), RUNTIME.max_pixels)
        progress(0.1, desc="anonymizing")
        result = _on_device(_protect_on_device, image, options)
    except Exception as exc:
        raise _page_error(exc) from None
    progress(1.0, desc="done")
    gallery = [(o.image, o.caption) for o in result.outputs]
    return ((result.original, result.main.image), gallery,
            sv.record_summary(result.record, result.measured()),
            sv.record_details(result.record), result.record)


def compare_methods(photo, seed, epsilon, request: gr.Request = None, progress=gr.Progress()):
    """One photo through every available method (one version each): the results, a table of
    identity similarity, detection and time, and the total privacy budget spent."""
    try:
        requests = sv.comparison_requests(RUNTIME, seed, epsilon)
        image = sv.read_photo(_photo_bytes(photo, request), RUNTIME.max_pixels)
        progress(0.1, desc="running every method")
        rows = _on_device(_compare_on_device, image, requests)
    except Exception as exc:
        raise _page_error(exc) from None
    gallery = [(r.output.image, r.output.caption) for r in rows if r.output is not None]
    return gallery, sv.comparison_table(rows), sv.compare_summary(rows)


def anonymize_clip(clip, method, epsilon, request: gr.Request = None, progress=gr.Progress()):
    """Anonymize one uploaded clip (one GPU call): the anonymized clip, what was done in
    words, the technical details, and the public privacy record."""
    try:
        options = sv_video.stream_options(RUNTIME, method, epsilon)
        data = _photo_bytes(clip, request, clip=True)
        result = _on_device(_clip_on_device, data, options, get_upload_folder(), progress)
    except Exception as exc:
        raise _page_error(exc, "clip") from None
    FILES.add_result(result.path)
    return result.path, result.summary, result.details, result.record


def webcam_frames(frame, session, method, epsilon):
    """One streamed camera frame through the visitor's session (kept on the server)."""
    try:
        return _on_device(_webcam_on_device, frame, session, method, epsilon)
    except Exception as exc:
        raise _page_error(exc, "frame") from None


def method_controls(method):
    """The controls ``method`` uses, shown; the others hidden, with one sentence why."""
    f = sv.method_form(RUNTIME, method)
    low, high = RUNTIME.default_rank_window
    return (gr.update(choices=f.anonymize, value=f.anonymize_value, visible=f.show_anonymize),
            gr.update(choices=f.recover, value=f.recover_value, visible=f.show_recover),
            gr.update(visible=f.budget), gr.update(visible=f.versions),
            gr.update(visible=f.seed), gr.update(visible=f.advanced),
            gr.update(maximum=f.groups, value=min(low, f.groups)),
            gr.update(maximum=f.groups, value=min(high, f.groups)),
            *[gr.update(visible=f.method == m) for m in STRENGTH_LIMITS],
            gr.update(value=f.note, visible=bool(f.note)))


def budget_line(method, anonymize, epsilon, samples):
    """The page's live budget line: a choice the library refuses is said in place."""
    try:
        return sv.budget(RUNTIME, method, anonymize, epsilon, samples)
    except sv.RequestError as exc:
        return str(exc)


def total_budget(method, anonymize, epsilon, samples):
    """The total privacy budget a choice spends (k versions at ε each spend k·ε); a budget
    that is not a number from 0 to the app's maximum is refused."""
    try:
        return sv.budget(RUNTIME, method, anonymize, epsilon, samples)
    except Exception as exc:
        raise _page_error(exc) from None


def compare_budget_line(epsilon):
    try:
        return sv.compare_budget_sentence(sv.comparison_budget(RUNTIME, epsilon))
    except sv.RequestError as exc:
        return str(exc)


# ---------------------------------------------------------------------------------------------
# Page: one builder per tab (TABS lists them)

SEED_INFO = ("\"random\" is never shown or kept. A number you type is shown with the result, "
             "and anyone who has it can replay how your face was replaced: keep it secret.")
CSS = """
/* On a phone the tab labels are set tighter, so that every tab fits in the bar (Gradio moves
   the tabs that do not fit into a "more" menu, measuring them with these same styles). */
@media (max-width: 480px) {
  .tab-container button { padding-left: 6px; padding-right: 6px; font-size: 14px; }
}
/* every result shows without scrolling inside the gallery (Gradio caps it at 55% of the
   screen's height) */
#results .grid-wrap, #compare-results .grid-wrap { max-height: none; }
/* a caption wraps under its thumbnail rather than being cut */
.caption-label { white-space: normal; overflow-wrap: anywhere; max-width: 100%; }
"""


def _photo_and_example(elem: str) -> gr.Image:
    """The upload with the example beside it (first when the row wraps on a phone)."""
    photo = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"],
                     label="Your photo", format="png", height=300, elem_id=f"{elem}-photo",
                     render=False)
    with gr.Row(equal_height=False):
        if EXAMPLE.is_file():
            with gr.Column(scale=0, min_width=110):
                gr.Examples([[str(EXAMPLE)]], inputs=[photo], cache_examples=False,
                            label="Example", elem_id=f"{elem}-example")
        with gr.Column(scale=1, min_width=200):
            photo.render()
    return photo


def build_anonymize_tab(runtime: sv.Runtime) -> None:
    form = sv.method_form(runtime, runtime.default_method)
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            photo = _photo_and_example("anonymize")
            run = gr.Button("Anonymize", variant="primary", elem_id="run-anonymize")
            method = gr.Dropdown([(sv.PAGE_LABELS.get(m, m), m) for m in runtime.methods],
                                 value=form.method, label="Method", elem_id="method")
            note = gr.Markdown(form.note, visible=bool(form.note), elem_id="method-note")
            anonymize = gr.CheckboxGroup(form.anonymize, value=form.anonymize_value,
                                         label="Anonymize", visible=form.show_anonymize)
            recover = gr.CheckboxGroup(form.recover, value=form.recover_value,
                                       label="Keep from your photo", visible=form.show_recover,
                                       elem_id="keep")
            epsilon = gr.Slider(0.0, runtime.limits.max_epsilon, value=runtime.default_epsilon,
                                step=0.1, label="Privacy budget (smaller = more private)",
                                visible=form.budget, elem_id="epsilon")
            samples = gr.Slider(1, runtime.limits.max_samples, value=1, step=1, precision=0,
                                label="How many versions", visible=form.versions)
            budget = gr.Markdown(budget_line(form.method, form.anonymize_value,
                                             runtime.default_epsilon, 1),
                                 label="Total privacy budget", elem_id="budget")
            strengths = [gr.Slider(0.01, upper, value=default, step=0.01,
                                   label=f"Strength of {sv.SHORT_NAMES[m]}",
                                   info=sv.method_form(runtime, m).strength_info,
                                   visible=form.method == m, elem_id=f"strength-{m}")
                         for m, (default, upper) in STRENGTH_LIMITS.items()]
            seed = gr.Textbox("random", label="Seed", max_lines=1, info=SEED_INFO,
                              visible=form.seed)
            with gr.Accordion("Advanced", open=False, visible=form.advanced) as advanced:
                mechanism = gr.Radio(["window", "strict"], value="window", label="Mechanism",
                                     info="window: the paper's (ε relative to the rank window);"
                                          " strict: ε over all groups")
                low, high = runtime.default_rank_window
                with gr.Row(elem_id="rank-window"):
                    rank_low = gr.Number(low, precision=0, minimum=1, maximum=form.groups,
                                         label="Rank window start")
                    rank_high = gr.Number(high, precision=0, minimum=1, maximum=form.groups,
                                          label="Rank window end")
        with gr.Column(scale=2, min_width=320):
            before_after = gr.ImageSlider(type="pil", format="png", label="Before and after",
                                          elem_id="before-after")
            gallery = gr.Gallery(format="png", columns=3, label="All versions", height="auto",
                                 elem_id="results")
            summary = gr.Markdown(label="What was done", elem_id="record")
            with gr.Accordion("Technical details", open=False):
                details = gr.Markdown(label="Technical details", elem_id="record-details")
                record = gr.JSON(label="Privacy record")
    inputs = [photo, method, anonymize, recover, epsilon, mechanism, rank_low, rank_high, seed,
              samples, *strengths]
    run.click(anonymize_photo, inputs, [before_after, gallery, summary, details, record],
              api_name="anonymize", preprocess=False, scroll_to_output=True)
    method.change(method_controls, method,
                  [anonymize, recover, epsilon, samples, seed, advanced, rank_low, rank_high,
                   *strengths, note], api_visibility="private", show_progress="hidden",
                  queue=False)
    gr.on([method.change, anonymize.change, epsilon.change, samples.change], budget_line,
          [method, anonymize, epsilon, samples], budget, api_visibility="private",
          show_progress="hidden")

    # /budget for API users: the same line, but a choice the library refuses is an error
    # (a hidden trigger, so that its parameters and output carry the components' names)
    api_only = gr.Button(visible=False)
    api_only.click(total_budget, [method, anonymize, epsilon, samples], budget,
                   api_name="budget", preprocess=False, show_progress="hidden")


def build_compare_tab(runtime: sv.Runtime) -> None:
    gr.Markdown("Your photo through every method available here, one version each: how "
                "recognisable each result still is, whether a face is still found, and time.")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            photo = _photo_and_example("compare")
            run = gr.Button("Compare", variant="primary", elem_id="run-compare")
            epsilon = gr.Slider(0.0, runtime.limits.max_epsilon, value=runtime.default_epsilon,
                                step=0.1, label="Privacy budget for each method")
            budget = gr.Markdown(compare_budget_line(runtime.default_epsilon),
                                 elem_id="compare-budget")
            seed = gr.Textbox("random", label="Seed (the same for every method)", max_lines=1,
                              info=SEED_INFO)
        with gr.Column(scale=2, min_width=320):
            gallery = gr.Gallery(format="png", columns=3, label="Results by method",
                                 height="auto", elem_id="compare-results")
            table = gr.Dataframe(headers=list(sv.COMPARISON_COLUMNS), interactive=False,
                                 label="Measurements", elem_id="compare-table")
            summary = gr.Markdown(label="Privacy budget spent", elem_id="compare-summary")
    run.click(compare_methods, [photo, seed, epsilon], [gallery, table, summary],
              api_name="compare", preprocess=False, scroll_to_output=True)
    epsilon.change(compare_budget_line, epsilon, budget, api_visibility="private",
                   show_progress="hidden")


def _stream_controls(runtime: sv.Runtime, elem: str) -> tuple[gr.Dropdown, gr.Slider]:
    """The Video and Webcam tabs' method menu and budget (what the rest of a method's form
    would set is the Anonymize tab's default)."""
    method = gr.Dropdown([(sv.PAGE_LABELS.get(m, m), m) for m in runtime.methods],
                         value=runtime.default_method, label="Method", elem_id=f"{elem}-method")
    epsilon = gr.Slider(0.0, runtime.limits.max_epsilon, value=runtime.default_epsilon,
                        step=0.1, label="Privacy budget per face (smaller = more private)",
                        elem_id=f"{elem}-epsilon")
    return method, epsilon


def build_video_tab(runtime: sv.Runtime) -> None:
    gr.Markdown("Upload a short clip: each face is followed from frame to frame and gets "
                "**one** new face for the whole clip, with the pose and expression of each "
                "frame. " + sv_video.CLIP_LIMITS.text(), elem_id="video-limits")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=320):
            clip = gr.Video(sources=["upload"], label="Your clip", elem_id="clip")
            run = gr.Button("Anonymize the clip", variant="primary", elem_id="run-video")
            method, epsilon = _stream_controls(runtime, "video")
        with gr.Column(scale=2, min_width=320):
            result = gr.Video(label="Anonymized clip", elem_id="clip-anonymized",
                              interactive=False)
            summary = gr.Markdown(label="What was done", elem_id="clip-record")
            with gr.Accordion("Technical details", open=False):
                details = gr.Markdown(label="Technical details", elem_id="clip-record-details")
                record = gr.JSON(label="Privacy record")
    run.click(anonymize_clip, [clip, method, epsilon], [result, summary, details, record],
              api_name="anonymize_video", preprocess=False, scroll_to_output=True)


def build_webcam_tab(runtime: sv.Runtime) -> None:
    gr.Markdown("Your camera, anonymized live: each face is followed, blurred until it has "
                "been seen for a few frames, then given one new face for as long as it stays "
                "in view. The random secret behind the new faces stays on the server and is "
                "never shown; the Privacy tab says what is kept of your camera, and for how "
                "long.")
    with gr.Row(equal_height=False):
        with gr.Column(min_width=320):
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy",
                              label="Your camera", elem_id="webcam")
            method, epsilon = _stream_controls(runtime, "webcam")
        with gr.Column(min_width=320):
            anonymized = gr.Image(type="numpy", label="Anonymized", elem_id="webcam-anonymized")
            rate = gr.Markdown(sv_webcam.webcam_text(None), elem_id="webcam-fps")
    session = gr.State(None)   # the tracker and the per-session secret, server-side only
    camera.stream(webcam_frames, [camera, session, method, epsilon],
                  [anonymized, session, rate], stream_every=sv_webcam.STREAM_EVERY,
                  time_limit=sv_webcam.TIME_LIMIT, api_visibility="private",
                  show_progress="hidden")


def build_privacy_tab(runtime: sv.Runtime) -> None:
    gr.Markdown(sv.files_statement(FILES.rules), elem_id="files-statement")
    gr.Markdown(sv.PRIVACY_STATEMENT)
    with gr.Accordion("Technical details", open=False):
        gr.Markdown(sv.TECHNICAL_NOTE)


#: (tab label, builder): the page's tabs, in order.
TABS = [("Anonymize", build_anonymize_tab), ("Compare", build_compare_tab),
        ("Video", build_video_tab), ("Webcam", build_webcam_tab),
        ("Privacy", build_privacy_tab)]


def build_app(runtime: sv.Runtime, rules: sv.FileRules | None = None) -> gr.Blocks:
    global RUNTIME, FILES
    RUNTIME, rules = runtime, rules or sv.FileRules()
    # Gradio's own delete_cache is off: FILES.sweep() applies the rules (an age per kind of
    # file, not one for all) to the sets of paths Gradio keeps.
    demo = gr.Blocks(title="LReOrg face anonymization")
    FILES = sv.VisitorFiles(rules, demo.upload_file_set, lambda: demo.temp_file_sets,
                            lambda: _shared_files(demo), get_upload_folder())
    with demo:
        gr.Markdown("# LReOrg face anonymization")
        gr.Markdown("**Upload a photo or tap the example, then press Anonymize.** "
                    + runtime.summary(), elem_id="what-to-do")
        for label, build in TABS:
            with gr.Tab(label):
                build(runtime)
        demo.unload(_forget_photo)
    return demo


def startup(argv=None, environ=None) -> tuple[gr.Blocks, argparse.Namespace]:
    """Parse flags / environment, load the weights once, build the page."""
    args = parse_args(argv, environ)
    for name, var in ENV_BACKBONE_HUB.items():  # the library reads these for the Hub file
        value = getattr(args, f"backbone_{name}")
        if value:
            os.environ[var] = value
    runtime = sv.load_runtime(serving_config(args))
    logger.warning("%s", runtime.console_banner())
    return build_app(runtime, file_rules(args)), args


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo, args = startup(argv)
    # Docker and Spaces stop a container with SIGTERM: purge exactly as on Ctrl-C (SIGINT).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    stop = threading.Event()
    threading.Thread(target=_sweep_forever, args=(stop,), daemon=True).start()
    try:
        demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size).launch(
            server_name=args.host, server_port=args.port, max_file_size=args.max_file_size,
            show_error=False, footer_links=["gradio", "settings"], css=CSS)
    finally:
        stop.set()
        FILES.sweep(final=True)


if __name__ == "__main__":
    main()
