"""The Gradio app: ``python app.py [--demo] [--bundle ...] [--backbone ...]``.

Thin on purpose: this file lays out the page (one small builder per tab) and calls
``lreorg_hub.serving``, which runs ``LReOrgPipeline`` (the API the CLI and the tests use).
Which weights run is decided once at start (see ``parse_args``) and shown in a banner.
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
from pathlib import Path

import gradio as gr

from lreorg_hub.method import keywords as kw
from lreorg_hub import serving as sv
from lreorg_hub.serving import video as sv_video, webcam as sv_webcam

logger = logging.getLogger("lreorg_hub.app")

HERE = Path(__file__).resolve().parent
EXAMPLES = HERE / "examples"
RUNTIME: sv.Runtime | None = None  # loaded once per process by startup()

# Flags and the environment variables that set their defaults (flags win).
ENV_DEMO = "LREORG_DEMO"
ENV_BUNDLE, ENV_BUNDLE_REVISION = "LREORG_BUNDLE", "LREORG_BUNDLE_REVISION"
ENV_BACKBONE_PATH = "LREORG_BACKBONE_PATH"
ENV_BACKBONE_HUB = {"repo": "LREORG_BACKBONE_REPO", "file": "LREORG_BACKBONE_FILE",
                    "revision": "LREORG_BACKBONE_REVISION"}
ENV_IDENTITY = "LREORG_IDENTITY_WEIGHTS"


def _truthy(value: str | None) -> bool:
    return str(value or "").strip().lower() in ("1", "true", "yes", "on")


def parse_args(argv=None, environ=None) -> argparse.Namespace:
    env = os.environ if environ is None else environ
    p = argparse.ArgumentParser(description="LReOrg face anonymization app (Gradio).")
    w = p.add_argument_group("weights (decided once at start)")
    w.add_argument("--demo", action="store_true", default=_truthy(env.get(ENV_DEMO)),
                   help=f"small random-weight backbone and bundle, offline (env {ENV_DEMO}=1)")
    w.add_argument("--bundle", default=env.get(ENV_BUNDLE),
                   help=f"LReOrg bundle: Hub repo id or folder (env {ENV_BUNDLE})")
    w.add_argument("--bundle-revision", default=env.get(ENV_BUNDLE_REVISION))
    w.add_argument("--backbone", default=env.get(ENV_BACKBONE_PATH),
                   help="local e4e / rosinality checkpoint (env LREORG_BACKBONE_PATH); default:"
                        " the bundle's configured Hub file")
    for name, var in ENV_BACKBONE_HUB.items():
        w.add_argument(f"--backbone-{name}", default=env.get(var),
                       help=f"Hub {name} of the backbone checkpoint (env {var})")
    w.add_argument("--style-mix", default=env.get("LREORG_STYLE_MIX"),
                   help="folder / Hub repo of fitted style-mix groups (env LREORG_STYLE_MIX); "
                        "default: fitted at start on the backbone's mapping network")
    w.add_argument("--identity-weights", default=env.get(ENV_IDENTITY, "vggface2"),
                   help="facenet weights for the identity similarity: 'vggface2' or a file "
                        f"(env {ENV_IDENTITY})")
    w.add_argument("--no-identity", action="store_true", help="skip the identity similarity")
    r = p.add_argument_group("serving")
    r.add_argument("--device", default=env.get("LREORG_DEVICE", "auto"))
    r.add_argument("--output-size", type=int, default=_int(env.get("LREORG_OUTPUT_SIZE")),
                   help="stop the generator at this resolution (faster previews)")
    r.add_argument("--max-pixels", type=int,
                   default=_int(env.get("LREORG_MAX_PIXELS")) or 25_000_000)
    r.add_argument("--max-file-size", default=env.get("LREORG_MAX_FILE_SIZE", "20mb"))
    r.add_argument("--cache-seconds", type=int,
                   default=_int(env.get("LREORG_CACHE_SECONDS")) or 300,
                   help="uploads and results are deleted from Gradio's cache after this long")
    r.add_argument("--concurrency", type=int, default=_int(env.get("LREORG_CONCURRENCY")) or 1)
    r.add_argument("--queue-size", type=int, default=_int(env.get("LREORG_QUEUE_SIZE")) or 32)
    r.add_argument("--host", default=None, help="default: GRADIO_SERVER_NAME or 127.0.0.1")
    r.add_argument("--port", type=int, default=None, help="default: GRADIO_SERVER_PORT or 7860")
    return p.parse_args(argv)


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") else None


def serving_config(args: argparse.Namespace) -> sv.ServingConfig:
    return sv.ServingConfig(
        bundle=args.bundle, bundle_revision=args.bundle_revision, backbone=args.backbone,
        style_mix=args.style_mix,
        demo=args.demo, identity_weights=None if args.no_identity else args.identity_weights,
        device=args.device, output_size=args.output_size, max_pixels=args.max_pixels)


# ---------------------------------------------------------------------------------------------
# Work on the accelerator (ZeroGPU schedules these; elsewhere they run in place)


def _gpu_seconds(photo, options) -> int:
    return 30 + 10 * (options.samples or 1)


@GPU(duration=_gpu_seconds)
def _protect_on_device(photo, options):
    return sv.protect_photo(RUNTIME, photo, options)


# ---------------------------------------------------------------------------------------------
# Handlers: validate, call the library, turn every failure into one sentence


def _upload_bytes(photo) -> bytes | None:
    """The raw upload (events run with preprocess=False so the library, not Gradio, decodes
    it: its pixel limit, bomb check and messages apply). Gradio has already checked that the
    path lies in its upload folder."""
    if photo is None:
        return None
    path = photo.get("path") if isinstance(photo, dict) else photo
    if not path:
        url = photo.get("url") or ""
        if url.startswith("data:") and "," in url:
            return base64.b64decode(url.split(",", 1)[1])
        return None
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:  # purged by delete_cache while the request waited in the queue
        raise sv.RequestError("Your upload was deleted from the server before its turn came "
                              "(the queue was long); please upload it again.") from None


def _page_error(exc: Exception) -> gr.Error:
    if not isinstance(exc, sv.RequestError):
        logger.error("request failed: %s", type(exc).__name__, exc_info=exc)
    return gr.Error(sv.user_message(exc), print_exception=False)


def anonymize_photo(photo, method, anonymize, recover, epsilon, mechanism, rank_low, rank_high,
                    seed, samples, strength, progress=gr.Progress()):
    """Anonymize the faces of one photo; returns (before, after), the captioned results, the
    privacy record in words, and the record as JSON (an OS-entropy seed is never in it)."""
    try:
        options = sv.check_options(RUNTIME, sv.options_from_form(
            RUNTIME, method, anonymize, recover, epsilon, mechanism, rank_low, rank_high, seed, samples,
            strength))
        photo_image = sv.read_photo(_upload_bytes(photo), RUNTIME.max_pixels)
        progress(0.1, desc="anonymizing")
        result = _protect_on_device(photo_image, options)
    except Exception as exc:
        raise _page_error(exc) from None
    progress(1.0, desc="done")
    gallery = [(o.image, o.caption) for o in result.outputs]
    return ((result.original, result.main.image), gallery, sv.describe_record(result.record),
            result.record)


def compare_methods(photo, seed, epsilon, progress=gr.Progress()):
    """One photo through every available method with the same seed: captioned results and a
    table of identity similarity, detection and time."""
    try:
        _, rows = sv.compare(RUNTIME, _upload_bytes(photo), seed, epsilon, progress=progress,
                             run=_protect_on_device)
    except Exception as exc:
        raise _page_error(exc) from None
    gallery = [(r.output.image, r.output.caption) for r in rows if r.output is not None]
    table = [[r.method, sv.METHOD_LABELS.get(r.method, r.method),
              None if r.output is None or r.output.identity_similarity is None
              else round(r.output.identity_similarity, 3),
              "" if r.output is None else f"{r.output.faces_detected}/{r.output.faces_total}",
              round(r.seconds, 2), r.error or ""] for r in rows]
    return gallery, table


def keyword_boxes(method):
    """The keyword checkboxes for ``method``: what it can serve, the rest named with a reason."""
    anonymizable, recoverable, unavailable = RUNTIME.keyword_choices(method)
    return (_keyword_box(anonymizable, kw.DEFAULT_ANONYMIZE, unavailable),
            _keyword_box(recoverable, kw.DEFAULT_RECOVER, unavailable))


def _keyword_box(choices, defaults, unavailable):
    return gr.update(choices=choices, value=[k for k in defaults if k in choices],
                     interactive=bool(choices), info=_keyword_info(unavailable, choices) or None)


def total_budget(method, anonymize, epsilon, samples):
    """The total privacy budget k·ε that k diverse samples spend, in words."""
    return sv.budget_text(method, anonymize, epsilon, samples)


# ---------------------------------------------------------------------------------------------
# Page: one builder per tab


def _keyword_info(unavailable: dict[str, str], group: list[str]) -> str:
    off = {n: why for n, why in unavailable.items() if n not in group}
    if not off:
        return ""
    return "Not available with these weights: " + "; ".join(f"{n} ({why})"
                                                             for n, why in off.items())


def build_visitor_tab(runtime: sv.Runtime) -> None:
    with gr.Row():
        with gr.Column(scale=1):
            photo = gr.Image(type="filepath", sources=["upload", "webcam", "clipboard"],
                             label="Your photo", format="png", height=320, elem_id="photo")
            method = gr.Dropdown([(sv.METHOD_LABELS.get(m, m), m) for m in runtime.methods],
                                 value=runtime.default_method, label="Method")
            anonymize = gr.CheckboxGroup(
                runtime.anonymizable, label="Anonymize",
                value=[k for k in kw.DEFAULT_ANONYMIZE if k in runtime.anonymizable],
                info=_keyword_info(runtime.unavailable, runtime.anonymizable) or None,
                interactive=bool(runtime.anonymizable))
            recover = gr.CheckboxGroup(
                runtime.recoverable, label="Recover (keep from your photo)",
                value=[k for k in kw.DEFAULT_RECOVER if k in runtime.recoverable],
                info=_keyword_info(runtime.unavailable, runtime.recoverable) or None,
                interactive=bool(runtime.recoverable))
            epsilon = gr.Slider(0.0, runtime.limits.max_epsilon, value=runtime.default_epsilon, step=0.1,
                                label="Privacy budget ε per draw (smaller = more private)")
            samples = gr.Slider(1, runtime.limits.max_samples, value=1, step=1,
                                label="Diverse samples k")
            budget = gr.Markdown(sv.budget_text(runtime.default_method,
                                                list(kw.DEFAULT_ANONYMIZE),
                                                runtime.default_epsilon, 1))
            seed = gr.Textbox("random", label="Seed", max_lines=1,
                              info="'random' draws from the operating system's entropy and is "
                                   "never shown. A number you type is shown with the result: "
                                   "anyone who has it can replay the draw.")
            with gr.Accordion("Advanced", open=False):
                mechanism = gr.Radio(["window", "strict"], value="window", label="Mechanism",
                                     info="window: the paper's GIA (ε relative to the rank "
                                          "window); strict: ε-LDP over all groups")
                low, high = runtime.default_rank_window
                with gr.Row():
                    rank_low = gr.Number(low, precision=0, minimum=1,
                                         maximum=runtime.num_groups, label="Rank window start")
                    rank_high = gr.Number(high, precision=0, minimum=1,
                                          maximum=runtime.num_groups, label="Rank window end")
                strength = gr.Number(None, label="Strength of blur / pixelate / mask (empty: "
                                                 "the baseline's default)", minimum=0, maximum=1)
            run = gr.Button("Anonymize", variant="primary", elem_id="run-anonymize")
        with gr.Column(scale=2):
            before_after = gr.ImageSlider(type="pil", format="png", label="Before / after",
                                        elem_id="before-after")
            gallery = gr.Gallery(format="png", columns=3, label="Results (each captioned with "
                                 "what was measured)", height="auto", elem_id="results")
            record_text = gr.Markdown(label="Privacy record", elem_id="record")
            record_json = gr.JSON(label="Privacy record (JSON)")
    inputs = [photo, method, anonymize, recover, epsilon, mechanism, rank_low, rank_high, seed,
              samples, strength]
    run.click(anonymize_photo, inputs, [before_after, gallery, record_text, record_json],
              api_name="anonymize", preprocess=False)
    method.change(keyword_boxes, method, [anonymize, recover], api_visibility="private",
                  show_progress="hidden")
    gr.on([method.change, anonymize.change, epsilon.change, samples.change], total_budget,
          [method, anonymize, epsilon, samples], budget, api_name="budget",
          show_progress="hidden")
    if (EXAMPLES / "astronaut.jpg").is_file():
        gr.Examples([[str(EXAMPLES / "astronaut.jpg")]], inputs=[photo], cache_examples=False,
                    label="Example (public-domain NASA photo)", elem_id="examples-visitor")
    with gr.Accordion("What the guarantee covers", open=False):
        gr.Markdown(sv.PRIVACY_STATEMENT)


def build_reviewers_tab(runtime: sv.Runtime) -> None:
    gr.Markdown("One photo through every method that can run here, with the same seed: "
                "identity similarity to the input (higher = more recognisable), whether the "
                "face is still detected, and time.")
    with gr.Row():
        with gr.Column(scale=1):
            photo = gr.Image(type="filepath", sources=["upload", "clipboard"], label="Photo",
                             format="png", height=280)
            seed = gr.Textbox("0", label="Seed (shared by every method)", max_lines=1)
            epsilon = gr.Slider(0.0, runtime.limits.max_epsilon, value=runtime.default_epsilon, step=0.1,
                                label="Privacy budget ε")
            run = gr.Button("Compare", variant="primary")
        with gr.Column(scale=2):
            gallery = gr.Gallery(format="png", columns=3, label="Side by side", height="auto")
            table = gr.Dataframe(headers=["method", "label", "identity similarity",
                                          "face detected", "seconds", "note"],
                                 interactive=False, label="Measurements")
    run.click(compare_methods, [photo, seed, epsilon], [gallery, table], api_name="compare",
              preprocess=False)
    if (EXAMPLES / "astronaut.jpg").is_file():
        gr.Examples([[str(EXAMPLES / "astronaut.jpg")]], inputs=[photo], cache_examples=False)


def build_about_tab(runtime: sv.Runtime) -> None:
    gr.Markdown(sv.PRIVACY_STATEMENT)
    gr.Markdown("**Weights.** " + runtime.banner().replace("\n", "\n\n"))


# ---------------------------------------------------------------------------------------------
# Video and Webcam tabs: the work is in lreorg_hub.serving.video and .webcam


def _clip_gpu_seconds(path, options, out_dir, progress=None) -> int:
    return sv_video.clip_gpu_seconds(path)


@GPU(duration=_clip_gpu_seconds)  # one GPU call per clip, its length from the clip's frames
def _protect_clip_on_device(path, options, out_dir, progress=None):
    return sv_video.protect_clip(RUNTIME, path, options, out_dir, progress)


@GPU(duration=10)
def _webcam_on_device(frame, session, method, epsilon):
    return sv_webcam.webcam_frame(RUNTIME, frame, session, method, epsilon)


def anonymize_clip(upload, method, epsilon, progress=gr.Progress()):
    """Anonymize one uploaded clip: (the clip, its record in words, the record as JSON)."""
    try:
        options = sv_video.stream_options(RUNTIME, method, epsilon)
        video = upload.get("video", upload) if isinstance(upload, dict) else upload
        path = video.get("path") if isinstance(video, dict) else video
        result = _protect_clip_on_device(path, options, gr.utils.get_upload_folder(),
                                         progress)
    except Exception as exc:
        raise _page_error(exc) from None
    return result.path, result.text, result.record


def webcam_frames(frame, session, method, epsilon):
    """One streamed camera frame through the visitor's session (kept on the server)."""
    try:
        return _webcam_on_device(frame, session, method, epsilon)
    except Exception as exc:
        raise _page_error(exc) from None


def build_video_tab(runtime: sv.Runtime) -> None:
    gr.Markdown("Upload a short clip: every face is followed from frame to frame and gets "
                "**one** replacement identity for the whole clip (one ε-DP draw per tracked "
                "face); pose and expression come from each frame. " +
                sv_video.CLIP_LIMITS.text(), elem_id="video-limits")
    with gr.Row():
        with gr.Column(scale=1):
            clip = gr.Video(sources=["upload"], label="Your clip", elem_id="clip")
            method = gr.Dropdown([(sv.METHOD_LABELS.get(m, m), m) for m in runtime.methods],
                                 value=runtime.default_method, label="Method")
            epsilon = gr.Slider(0.0, runtime.limits.max_epsilon, value=runtime.default_epsilon,
                                step=0.1, label="Privacy budget ε per tracked face")
            run = gr.Button("Anonymize the clip", variant="primary", elem_id="run-video")
        with gr.Column(scale=2):
            result = gr.Video(label="Anonymized clip", elem_id="clip-anonymized",
                              interactive=False)
            record_text = gr.Markdown(elem_id="clip-record")
            record_json = gr.JSON(label="Privacy record (JSON)")
    run.click(anonymize_clip, [clip, method, epsilon], [result, record_text, record_json],
              api_name="anonymize_video", api_visibility="undocumented", preprocess=False)


def build_webcam_tab(runtime: sv.Runtime) -> None:
    gr.Markdown("Your camera, anonymized live: each face is tracked, blurred until it has "
                "been seen for a few frames, then replaced by one drawn identity for as long "
                "as it stays tracked. The session's random secret stays on the server and is "
                "never shown; nothing is recorded.")
    with gr.Row():
        with gr.Column():
            camera = gr.Image(sources=["webcam"], streaming=True, type="numpy",
                              label="Your camera", elem_id="webcam")
            method = gr.Dropdown([(sv.METHOD_LABELS.get(m, m), m) for m in runtime.methods],
                                 value=runtime.default_method, label="Method")
            epsilon = gr.Slider(0.0, runtime.limits.max_epsilon, value=runtime.default_epsilon,
                                step=0.1, label="Privacy budget ε per tracked face")
        with gr.Column():
            anonymized = gr.Image(type="numpy", label="Anonymized", elem_id="webcam-anonymized")
            rate = gr.Markdown(sv_webcam.webcam_text(None), elem_id="webcam-fps")
    session = gr.State(None)   # the tracker and the per-session secret, server-side only
    camera.stream(webcam_frames, [camera, session, method, epsilon],
                  [anonymized, session, rate], stream_every=sv_webcam.STREAM_EVERY,
                  time_limit=sv_webcam.TIME_LIMIT, api_visibility="private",
                  show_progress="hidden")
    _purge_cache_at_exit(gr.context.Context.root_block)


def _purge_cache_at_exit(blocks) -> None:
    """A stream or a State makes every page (and gradio_client) hold a heartbeat connection;
    Gradio 6.31 then waits longer than its 5 s to stop the server and skips the shutdown
    purge of ``delete_cache``. Purge at interpreter exit instead (Ctrl-C; SIGTERM skips it,
    as it skips Gradio's own)."""
    import atexit

    from gradio.route_utils import delete_files_created_by_app

    if blocks is not None:
        atexit.register(delete_files_created_by_app, blocks, None)


def build_app(runtime: sv.Runtime, cache_seconds: int = 300) -> gr.Blocks:
    global RUNTIME
    RUNTIME = runtime
    with gr.Blocks(title="LReOrg face anonymization",
                   delete_cache=(cache_seconds, cache_seconds)) as demo:
        gr.Markdown("# LReOrg face anonymization")
        gr.Markdown(runtime.banner(), elem_id="banner")
        with gr.Tab("Anonymize"):
            build_visitor_tab(runtime)
        with gr.Tab("Compare methods (reviewers)"):
            build_reviewers_tab(runtime)
        with gr.Tab("Video", elem_id="tab-video"):
            build_video_tab(runtime)
        with gr.Tab("Webcam", elem_id="tab-webcam"):
            build_webcam_tab(runtime)
        with gr.Tab("Privacy"):
            build_about_tab(runtime)
    return demo


def startup(argv=None, environ=None) -> tuple[gr.Blocks, argparse.Namespace]:
    """Parse flags / environment, load the weights once, build the page."""
    args = parse_args(argv, environ)
    for name, var in ENV_BACKBONE_HUB.items():  # the library reads these for the Hub file
        value = getattr(args, f"backbone_{name}")
        if value:
            os.environ[var] = value
    runtime = sv.load_runtime(serving_config(args))
    logger.info("serving mode %s, methods %s", runtime.mode, ", ".join(runtime.methods))
    return build_app(runtime, args.cache_seconds), args


def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    demo, args = startup(argv)
    demo.queue(default_concurrency_limit=args.concurrency, max_size=args.queue_size).launch(
        server_name=args.host, server_port=args.port, max_file_size=args.max_file_size,
        show_error=False, footer_links=["gradio", "settings"])


if __name__ == "__main__":
    main()
