"""What the Gradio app runs, without Gradio: pick the weights once, serve a request, measure it.

``app.py`` only lays out the page and calls these functions, which call ``LReOrgPipeline``
(the API the CLI and the tests use too). Nothing here writes an image to disk or logs image
data; every image returned is a fresh PIL image (no metadata of the upload).

Weights are decided once per process by :func:`load_runtime`:

- ``lreorg``: a bundle and a backbone loaded (``--demo`` builds small random ones);
- ``style-mix``: only the backbone loaded (training-free baseline, from the methods module);
- ``baselines``: nothing could be loaded: blur / pixelate / mask (MTCNN ships with
  facenet-pytorch), with notes that say which weights are missing and how to provide them.
"""

from __future__ import annotations

import hashlib
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from . import keywords as kw
from .backbones import Backbone, BackboneNotAvailableError, BackboneSource, load_backbone
from .baselines import BASELINES
from .encoders import FFHQ_FACE_CROP, IdentityEncoder, WeightsUnavailableError
from .faces import Face, FaceDetector, align_face, paste_back_all
from .imaging import as_rgb_array, ImageLoadError, ImageTooLargeError, load_image
from .demo import build_demo_backbone, build_demo_bundle, build_demo_style_mix
from .methods import METHODS, STRENGTH_LIMITS, KeywordSupport
from .model import BundleError, LReOrg
from .pipeline import LReOrgPipeline, NoFaceError, auto_device
from .privacy import SEED_MAX
from .stylemix import StyleMixAnonymizer

__all__ = ["ServingConfig", "Runtime", "load_runtime", "RequestError", "ProtectRequest",
           "Output", "ProtectResult", "protect", "compare", "public_record",
           "describe_record", "budget_text", "protect_photo", "check_request", "parse_seed",
           "read_photo", "Comparison", "comparison_request", "user_message", "EPSILON_RANGE", "MAX_SAMPLES",
           "METHOD_LABELS", "PRIVACY_STATEMENT"]

logger = logging.getLogger(__name__)

#: The ε a visitor can choose (the slider's range; the API enforces it too).
EPSILON_RANGE = (0.0, 10.0)
MAX_SAMPLES = 8

#: Short honest labels, from the methods registry.
METHOD_LABELS = {name: info.label for name, info in METHODS.items()}

PRIVACY_STATEMENT = (
    "**What the guarantee covers.** With LReOrg (window or strict) and style-mix, the face "
    "that replaces yours is drawn by an ε-differentially-private mechanism over groups of "
    "*synthetic* identities (mapping-network samples, never photos of people): smaller ε "
    "makes the draw less dependent on your face. The *window* mode bounds it relative to the "
    "rank window around your own group; *strict* bounds it over all groups. k diverse samples "
    "spend k·ε in total.\n\n"
    "**What it does not cover.** Pixels outside the face, the attributes you chose to recover, "
    "and the residual code still carry information about you; the classical baselines (blur, "
    "pixelate, mask) and k-anonymity carry no formal guarantee. A seed you type lets anyone "
    "who has it replay the same draw.\n\n"
    "**Your photo.** It is processed in memory; uploads and results are deleted from the "
    "server's temporary folder within minutes, nothing is logged, and every image you get "
    "back is a fresh PNG without any metadata (EXIF, GPS, ICC) of your upload.")


class RequestError(ValueError):
    """A visitor's input that cannot be served; the message is one sentence for the page."""


# ---------------------------------------------------------------------------------------------
# Start-up: which weights run


@dataclass
class ServingConfig:
    """Where the weights come from (flags / environment variables of ``app.py``).

    ``bundle``: Hub repo id or folder of an LReOrg bundle (None: none).
    ``backbone``: local e4e / rosinality checkpoint; None: the bundle's configured Hub file
    (or the library default), with the ``LREORG_BACKBONE_*`` overrides.
    ``try_backbone_without_bundle``: without a bundle, still load the backbone for style-mix.
    ``identity_weights``: facenet weights for the identity similarity ("vggface2", a file,
    or None to skip the measurement).
    """

    bundle: str | None = None
    bundle_revision: str | None = None
    backbone: str | None = None
    try_backbone_without_bundle: bool = True
    style_mix: str | None = None     # folder / repo of fitted style-mix groups (None: fit)
    demo: bool = False
    identity_weights: str | None = "vggface2"
    device: str = "auto"
    output_size: int | None = None
    max_pixels: int = 25_000_000


@dataclass
class Runtime:
    """What was loaded at start, decided once: the pipeline, the mode, and what is missing."""

    pipeline: LReOrgPipeline
    mode: str                             # "lreorg" | "style-mix" | "baselines"
    methods: list[str]                    # what can run, the best first
    demo: bool = False
    notes: list[str] = field(default_factory=list)      # missing weights, how to provide them
    identity: IdentityEncoder | None = None
    identity_note: str | None = None
    anonymizable: list[str] = field(default_factory=list)
    recoverable: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)   # keyword -> why not
    max_pixels: int = 25_000_000

    @property
    def default_method(self) -> str:
        return self.pipeline.default_method or self.methods[0]

    @property
    def default_epsilon(self) -> float:
        model = self.pipeline.model
        if model is not None:
            return float(model.default_epsilon)
        return 1.0

    @property
    def default_rank_window(self) -> tuple[int, int]:
        model = self.pipeline.model
        if model is not None:
            return tuple(model.default_rank_window)
        return (2, min(8, self.num_groups))

    @property
    def num_groups(self) -> int:
        return self.groups(self.default_method)

    def groups(self, method: str) -> int:
        """How many groups the identity draw of ``method`` chooses among."""
        pipe = self.pipeline
        if method == "style-mix" and pipe.style_mix is not None:
            return int(pipe.style_mix.num_groups)
        if pipe.model is not None:
            return int(pipe.model.identity_anonymizer.num_groups)
        return 16

    def keyword_choices(self, method: str) -> tuple[list[str], list[str], dict[str, str]]:
        """What ``method`` can anonymize / recover here, and why the others cannot."""
        if method not in self.methods or method in BASELINES:
            label = METHOD_LABELS.get(method, method)
            return [], [], {n: f"{label} obfuscates the whole face" for n in kw.KEYWORDS}
        support = self.pipeline.keywords(method)
        return list(support.anonymize), list(support.recover), dict(support.unavailable)

    def banner(self) -> str:
        """Markdown: what runs, and (when something is missing) how to provide it."""
        if self.demo:
            head = ("**Demo weights: the faces come from small random-weight networks**, built "
                    "offline through the real classes (StyleGAN2, e4e, CDFNet). They show "
                    "that every step runs; they do not look like faces.")
        elif self.mode == "lreorg":
            head = "**LReOrg** runs with the loaded bundle and backbone."
        elif self.mode == "style-mix":
            head = ("**style-mix (training-free baseline)** runs: the backbone loaded, but no "
                    "trained LReOrg bundle.")
        else:
            head = ("**Classical baselines only (blur, pixelate, mask)**: no backbone or bundle "
                    "could be loaded, so the latent methods are off.")
        lines = [head, "", "Methods available: " + ", ".join(self.methods) + "."]
        lines += [f"- {n}" for n in self.notes]
        if self.identity_note:
            lines.append(f"- {self.identity_note}")
        return "\n".join(lines)


def _demo_weights(seed: int = 0) -> tuple[Backbone, LReOrg, StyleMixAnonymizer]:
    """Small random-weight backbone, fitted bundle and style-mix groups (real classes)."""
    backbone = build_demo_backbone(seed=seed)
    return backbone, build_demo_bundle(backbone, seed=seed), build_demo_style_mix(backbone, seed)


def _style_mix_for(backbone: Backbone, config: "ServingConfig",
                   notes: list[str]) -> StyleMixAnonymizer | None:
    """Style-mix groups: loaded from --style-mix, else fitted now on the generator's mapping
    network (synthetic identities only; a fixed seed, so every start serves the same groups)."""
    try:
        if config.style_mix:
            return StyleMixAnonymizer.from_pretrained(config.style_mix)
        g = backbone.generator
        return StyleMixAnonymizer(style_dim=g.style_dim, num_rows=g.n_latent).fit(
            g, generator=torch.Generator().manual_seed(0)).eval()
    except (OSError, ValueError, RuntimeError) as exc:
        notes.append(f"The style-mix groups did not load: {_first_line(exc)}")
        return None


def _sentence(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else "The request could not be served"
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__


def _load_identity(config: ServingConfig) -> tuple[IdentityEncoder | None, str | None]:
    if config.identity_weights is None:
        return None, ("Identity similarity is off (--no-identity). Results show whether a face "
                      "is still detected only.")
    try:
        return IdentityEncoder(pretrained=config.identity_weights, crop=FFHQ_FACE_CROP), None
    except (WeightsUnavailableError, OSError, RuntimeError) as exc:
        logger.info("identity weights unavailable: %s", _first_line(exc))
        return None, ("Identity similarity is omitted: the facenet (VGGFace2) weights are "
                      "missing. Place 20180402-114759-vggface2.pt in $TORCH_HOME/checkpoints "
                      "or pass --identity-weights PATH (env LREORG_IDENTITY_WEIGHTS).")


def _backbone_note(source, exc: Exception) -> str:
    """Why the backbone did not load, and exactly how to provide it."""
    if isinstance(source, str):
        return (f"The StyleGAN2 + e4e backbone {source!r} did not load: {_first_line(exc)} "
                f"Pass --backbone with an e4e or rosinality checkpoint file.")
    src = BackboneSource.from_dict(source).with_env()
    name = src.filename.rsplit("/", 1)[-1]
    return (f"The StyleGAN2 + e4e backbone did not load: {_first_line(exc)} To provide it, run "
            f"`hf download {src.repo_id} {src.filename} --revision {src.revision}` on a machine "
            f"with internet access and copy the Hugging Face cache (HF_HOME) here; or pass "
            f"`--backbone /path/to/{name}` (env LREORG_BACKBONE_PATH); or point "
            f"LREORG_BACKBONE_REPO / _FILE / _REVISION at another Hub copy.")


def load_runtime(config: ServingConfig) -> Runtime:
    """Load what can be loaded, once, and say what is missing and how to provide it."""
    notes: list[str] = []
    model = backbone = style_mix = None
    if config.demo:
        backbone, model, style_mix = _demo_weights()
    else:
        if config.bundle:
            try:
                model = LReOrg.from_pretrained(config.bundle, revision=config.bundle_revision)
            except (BundleError, OSError, ValueError) as exc:
                notes.append(f"The LReOrg bundle {config.bundle!r} did not load: "
                             f"{_first_line(exc)}")
        else:
            notes.append("No LReOrg bundle given (none is published yet): pass --bundle "
                         "REPO_ID_OR_FOLDER or set LREORG_BUNDLE.")
        if model is not None or config.try_backbone_without_bundle:
            source = config.backbone or (model.backbone if model is not None else None)
            try:
                backbone = load_backbone(source)
            except (BackboneNotAvailableError, OSError, ValueError, RuntimeError) as exc:
                notes.append(_backbone_note(source, exc))
        if backbone is not None:
            style_mix = _style_mix_for(backbone, config, notes)
    pipe = _build_pipeline(model, backbone, style_mix, config, notes)
    methods = pipe.available_methods()
    mode = pipe.default_method or "baselines"
    if mode == "baselines":
        support = KeywordSupport((), (), {n: "needs a trained LReOrg bundle (or the backbone, "
                                              "for style-mix)" for n in kw.KEYWORDS})
    else:
        support = pipe.keywords(mode)
    anonymizable, recoverable = list(support.anonymize), list(support.recover)
    unavailable = dict(support.unavailable)
    identity, identity_note = _load_identity(config)
    if identity is not None:
        identity = identity.to(pipe.device)
    pipe.detector  # built now: models load once per process, not per request
    return Runtime(pipeline=pipe, mode=mode, methods=methods, demo=config.demo, notes=notes,
                   identity=identity, identity_note=identity_note, anonymizable=anonymizable,
                   recoverable=recoverable, unavailable=unavailable,
                   max_pixels=config.max_pixels)


def _build_pipeline(model, backbone, style_mix, config: ServingConfig,
                    notes: list[str]) -> LReOrgPipeline:
    device = auto_device() if config.device == "auto" else torch.device(config.device)
    size = backbone.encoder.input_size if backbone is not None else 256
    detector = CachingFaceDetector(output_size=size, device=device)
    kwargs = dict(device=device, output_size=config.output_size, max_pixels=config.max_pixels,
                  detector=detector)
    if backbone is None:
        return LReOrgPipeline(None, **kwargs)
    parts = (backbone.encoder, backbone.generator, backbone.latent_avg)
    try:
        return LReOrgPipeline(model, *parts, style_mix=style_mix, **kwargs)
    except ValueError as exc:  # the bundle does not fit the backbone's codes
        if model is None:
            raise
        notes.append(f"The bundle and backbone do not fit together: {_first_line(exc)}")
        return LReOrgPipeline(None, *parts, style_mix=style_mix, **kwargs)


# ---------------------------------------------------------------------------------------------
# One request


@dataclass
class ProtectRequest:
    """A visitor's choices, checked once, up front, before the photo is decoded."""

    method: str
    anonymize: tuple[str, ...] = ()
    recover: tuple[str, ...] = ()
    epsilon: float | None = None
    mechanism: str = "window"
    rank_window: tuple[int, int] | None = None
    seed: int | None = None
    samples: int = 1
    strength: float | None = None

    @property
    def spends_budget(self) -> bool:
        return METHODS[self.method].uses_epsilon and kw.IDENTITY in self.anonymize


def parse_seed(value) -> int | None:
    """"random" (or empty) → None (OS entropy); a whole number 0..2^64-1 → that seed."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "random")):
        return None
    number = None
    if isinstance(value, str):
        try:
            number = int(value.strip())  # exact: a float would round large seeds
        except ValueError:
            number = None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not 0 <= number <= SEED_MAX:
        raise RequestError("The seed must be 'random' or a whole number from 0 to 2^64−1.")
    return number


def _number(value, what: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise RequestError(f"{what} must be a number from {low:g} to {high:g}.")
    return number


def check_request(runtime: Runtime, method, anonymize, recover, epsilon, mechanism="window",
                  rank_low=None, rank_high=None, seed="random", samples=1,
                  strength=None) -> ProtectRequest:
    """Validate everything a visitor chose (range, type, combination) with page sentences."""
    if method not in runtime.methods:
        label = METHOD_LABELS.get(method)
        raise RequestError(
            f"The method {method!r} cannot run here: " + (
                "it needs weights that are not loaded (see the banner)." if label else
                f"choose one of {', '.join(runtime.methods)}."))
    seed_value = parse_seed(seed)
    if method in BASELINES:
        top = STRENGTH_LIMITS[method][1]
        value = None if strength in (None, "") else _number(strength, "The strength", 0, top)
        return ProtectRequest(method=method, seed=seed_value, strength=value)
    k1, k2 = kw.parse_list(anonymize), kw.parse_list(recover)
    if not k1:
        raise RequestError("Choose at least one thing to anonymize (identity is the usual "
                           "choice).")
    both = [n for n in k1 if n in k2]
    if both:
        raise RequestError(f"'{both[0]}' is ticked both to anonymize and to recover; untick "
                           f"it in one of the two lists.")
    if k2 and "recover" not in METHODS[method].options:
        raise RequestError(f"The {method} method cannot recover attributes (it has no CDFNet); "
                           f"untick the Recover list or choose lreorg.")
    support = runtime.pipeline.keywords(method)
    for name, group in [(n, support.anonymize) for n in k1] + [(n, support.recover) for n in k2]:
        if name not in group:
            why = support.unavailable.get(name) or "not a keyword this app knows"
            raise RequestError(f"'{name}' cannot be used with {method}: {why}.")
    if method != "lreorg" and k1 != [kw.IDENTITY]:
        raise RequestError(f"The {method} method anonymizes identity only; untick the other "
                           f"keywords or choose lreorg.")
    low, high = EPSILON_RANGE
    eps = _number(epsilon, "The privacy budget ε", low, high)
    if mechanism not in ("window", "strict"):
        raise RequestError("The mechanism must be 'window' or 'strict'.")
    window = None
    if rank_low not in (None, "") or rank_high not in (None, ""):
        groups = runtime.groups(method)
        a = _number(rank_low, "The rank window start", 1, groups)
        b = _number(rank_high, "The rank window end", 1, groups)
        if a != int(a) or b != int(b) or a > b:
            raise RequestError(f"The rank window must be whole numbers with 1 ≤ start ≤ end ≤ "
                               f"{groups}.")
        window = (int(a), int(b))
    count = _number(samples, "The number of samples", 1, MAX_SAMPLES)
    if count != int(count):
        raise RequestError(f"The number of samples must be a whole number from 1 to "
                           f"{MAX_SAMPLES}.")
    if "samples" not in METHODS[method].options:  # deterministic: one output
        count = 1
    return ProtectRequest(method=method, anonymize=tuple(k1), recover=tuple(k2), epsilon=eps,
                          mechanism=mechanism, rank_window=window, seed=seed_value,
                          samples=int(count))


def read_photo(data: bytes | None, max_pixels: int) -> Image.Image:
    """Decode an upload in memory, with one clear sentence for every way it can fail."""
    if data is None:
        raise RequestError("Please upload a photo first.")
    if len(data) == 0:
        raise RequestError("The uploaded file is empty.")
    try:
        return load_image(bytes(data), max_pixels=max_pixels)
    except ImageTooLargeError as exc:
        if "decompression bomb" in str(exc):
            raise RequestError("This file was refused as a possible decompression bomb: it "
                               "claims far more pixels than any photo.") from None
        raise RequestError(f"This photo has more than {max_pixels / 1e6:g} million pixels; "
                           f"please downscale it and try again.") from None
    except ImageLoadError as exc:
        if isinstance(exc.__cause__, UnidentifiedImageError):
            raise RequestError("This file is not an image that can be read (use JPEG, PNG or "
                               "WebP).") from None
        raise RequestError("This image file is damaged or incomplete (for example truncated) "
                           "and cannot be decoded.") from None


@dataclass
class Output:
    """One image shown to the visitor, with what was measured on it."""

    image: Image.Image
    caption: str
    identity_similarity: float | None = None   # mean cosine similarity to the input faces
    faces_detected: int = 0                    # processed faces still found by the detector
    faces_total: int = 0

    def measured(self) -> str:
        parts = []
        if self.identity_similarity is not None:
            parts.append(f"identity similarity {self.identity_similarity:.2f}")
        parts.append(f"face detected {self.faces_detected}/{self.faces_total}")
        return ", ".join(parts)


@dataclass
class ProtectResult:
    """Everything a visitor's request produced."""

    original: Image.Image
    main: Output                      # the protected photo (recovered, sample 0)
    outputs: list[Output]             # anonymized / recovered / diverse (for the gallery)
    record: dict                      # public: an OS-entropy seed is never in it
    seconds: float


def _relocate(pipe: LReOrgPipeline, photo: Image.Image, indices: Sequence[int]) -> list[Face]:
    """The processed faces again (detection is deterministic), to compose every output."""
    found = pipe.detector.locate(photo)
    faces = []
    for i in indices:
        box, points, score = found[i]
        crop, transform = align_face(photo, points, pipe.detector.output_size)
        faces.append(Face(box=box, landmarks=points, score=score, transform=transform,
                          aligned=crop))
    return faces


def _iou(a, b) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    area = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / area if area > 0 else 0.0


class CachingFaceDetector(FaceDetector):
    """MTCNN that remembers its last few answers by pixel content: detection is
    deterministic, and composing every output needs the faces the pipeline already found."""

    def __init__(self, *args, cache_size: int = 4, **kwargs):
        super().__init__(*args, **kwargs)
        self._cache: OrderedDict[bytes, list] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def locate(self, image):
        rgb = np.ascontiguousarray(as_rgb_array(image))
        key = hashlib.sha256(rgb.tobytes()).digest() + bytes(str(rgb.shape), "ascii")
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return list(self._cache[key])
        found = super().locate(rgb)
        with self._lock:
            self._cache[key] = list(found)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return found


def _still_detected(pipe: LReOrgPipeline, image: Image.Image, face: Face) -> bool:
    """Whether the detector still finds this face, looking only around its box (a crop of at
    most 256 px: far cheaper than the whole photo, and it asks about this face only)."""
    x0, y0, x1, y1 = (float(v) for v in face.box)
    grow = 0.5 * max(x1 - x0, y1 - y0)
    left, top = max(int(x0 - grow), 0), max(int(y0 - grow), 0)
    right, bottom = min(int(x1 + grow) + 1, image.width), min(int(y1 + grow) + 1, image.height)
    crop = image.crop((left, top, right, bottom))
    scale = min(1.0, 256 / max(crop.size))
    if scale < 1.0:
        crop = crop.resize((max(round(crop.width * scale), 1), max(round(crop.height * scale), 1)),
                           Image.BILINEAR)
    target = [(x0 - left) * scale, (y0 - top) * scale, (x1 - left) * scale, (y1 - top) * scale]
    detector = pipe.detector
    found = FaceDetector.locate(detector, crop)  # uncached: every output is new
    return any(_iou(target, box) >= 0.3 for box, _, _ in found)


@torch.inference_mode()
def _measure(runtime: Runtime, faces: list[Face], image: Image.Image, caption: str) -> Output:
    pipe = runtime.pipeline
    detected = sum(_still_detected(pipe, image, f) for f in faces)
    similarity = None
    if runtime.identity is not None and faces:
        size = pipe.detector.output_size
        crops = [align_face(image, f.landmarks, size)[0] for f in faces]
        a = runtime.identity.embed([f.aligned for f in faces])
        b = runtime.identity.embed(crops)
        similarity = float((1.0 - IdentityEncoder.cosine_distance(a, b)).mean())
    return Output(image, caption, similarity, int(detected), len(faces))


def public_record(record: dict) -> dict:
    """The record as shown and returned. The privacy record already drops an OS-entropy seed
    and states k·ε; this checks it once more at the edge, because the page is public."""
    out = dict(record)
    if out.get("seed_source") != "user":
        out["seed"] = None
    if out.get("epsilon") is not None and out.get("epsilon_total") is None:
        eps, k = out["epsilon"], int(out.get("samples") or 1)
        out["epsilon_total"] = "inf" if eps == "inf" else float(eps) * k
    return out


def describe_record(record: dict) -> str:
    """The public record in plain words (Markdown)."""
    method = record.get("method", "?")
    lines = [f"**Method:** {METHOD_LABELS.get(method, method)}."]
    if record.get("anonymize"):
        lines.append(f"**Anonymized:** {', '.join(record['anonymize'])}.")
    if record.get("recover"):
        lines.append(f"**Recovered (kept from your photo):** {', '.join(record['recover'])}.")
    if record.get("mechanism") and record.get("mechanism") != "none":
        window = record.get("rank_window")
        lines.append(f"**Mechanism:** {record['mechanism']}"
                     + (f", rank window {window[0]}–{window[1]}" if window else "") + ".")
    if record.get("epsilon") is not None:
        lines.append(f"**Privacy budget:** {record.get('composition') or ''} (ε = "
                     f"{record['epsilon']} per draw, total {record.get('epsilon_total')}.)")
    if record.get("seed_source") == "user":
        lines.append(f"**Seed:** {record.get('seed')} (typed by you).")
    elif record.get("seed_source") == "os-entropy":
        lines.append("**Seed:** random, from the operating system's entropy; it is not shown "
                     "or kept, so nobody can replay this draw.")
    for warning in record.get("warnings", []):
        lines.append(f"⚠️ {warning}")
    if record.get("guarantee"):
        lines.append(f"**Guarantee:** {record['guarantee']}")
    if record.get("scope"):
        lines.append(f"**Not covered:** {record['scope']}")
    return "\n\n".join(lines)


def budget_text(method: str, anonymize: Sequence[str] | None, epsilon, samples) -> str:
    """The total budget that k diverse samples spend, for the page."""
    try:
        eps, k = float(epsilon), int(samples)
    except (TypeError, ValueError):
        return ""
    info = METHODS.get(method)
    if info is None or not info.uses_epsilon or kw.IDENTITY not in kw.parse_list(anonymize):
        return "This choice spends no privacy budget (no ε-DP draw: no formal guarantee)."
    return (f"Releasing k = {k} diverse sample(s) at ε = {eps:g} each spends a total budget "
            f"of k·ε = {k * eps:g} (sequential composition).")


def protect(runtime: Runtime, data: bytes | None, request: ProtectRequest,
            progress=None) -> ProtectResult:
    """The visitor's request: decode in memory, then :func:`protect_photo`."""
    return protect_photo(runtime, read_photo(data, runtime.max_pixels), request, progress)


def protect_photo(runtime: Runtime, photo: Image.Image, request: ProtectRequest,
                  progress=None) -> ProtectResult:
    """Run the pipeline once, then compose and measure each output."""
    step = progress or (lambda fraction, desc=None: None)
    start = time.perf_counter()
    step(0.1, "finding faces and anonymizing")
    pipe = runtime.pipeline
    given = dict(anonymize=list(request.anonymize), recover=list(request.recover),
                 epsilon=request.epsilon, rank_window=request.rank_window,
                 mechanism=request.mechanism, seed=request.seed, samples=request.samples,
                 strength=request.strength)
    applies = METHODS[request.method].options  # an option that does not apply is an error
    options = {k: v for k, v in given.items() if k in applies and v is not None}
    try:
        result = pipe(photo, method=request.method, **options)
    except NoFaceError:
        raise RequestError(f"No face was found in this photo. Try one where the face is clearly "
                           f"visible and at least {pipe.detector.min_face_size} pixels wide."
                           ) from None
    except ValueError as exc:  # the library's own one-sentence checks
        raise RequestError(_sentence(str(exc))) from None
    step(0.6, "composing and measuring the results")
    faces = _relocate(pipe, photo, result.record.get("faces_processed", []))
    kept = ", ".join(request.recover)
    outputs: list[Output] = []
    if request.method in BASELINES:
        main = _measure(runtime, faces, result.image, request.method)
        outputs.append(main)
    else:
        anonymized = [f.anonymized for f in result.faces]
        if request.recover and all(a is not None for a in anonymized):
            composed = paste_back_all(photo, faces, anonymized, feather=pipe.feather)
            outputs.append(_measure(runtime, faces, composed,
                                    f"anonymized ({', '.join(request.anonymize)} replaced)"))
        label = f"recovered ({kept} kept)" if kept else "anonymized"
        main = _measure(runtime, faces, result.image, f"{label}, sample 1")
        outputs.append(main)
        for s in range(1, min(len(f.diverse) for f in result.faces)):
            composed = paste_back_all(photo, faces, [f.diverse[s] for f in result.faces],
                                      feather=pipe.feather)
            outputs.append(_measure(runtime, faces, composed, f"sample {s + 1}"))
    for o in outputs:
        o.caption = f"{o.caption}: {o.measured()}"
    step(1.0, "done")
    return ProtectResult(original=photo, main=main, outputs=outputs,
                         record=public_record(result.record),
                         seconds=time.perf_counter() - start)


@dataclass
class Comparison:
    method: str
    output: Output | None
    seconds: float
    error: str | None = None


def comparison_request(runtime: Runtime, method: str, seed, epsilon) -> ProtectRequest:
    """The reviewers' settings for one method: identity anonymized (LReOrg also recovers the
    paper's attributes), the same seed and ε for every method."""
    anonymize = [] if method in BASELINES else [kw.IDENTITY]
    recover = ([k for k in kw.DEFAULT_RECOVER if k in runtime.recoverable]
               if method == "lreorg" else [])
    return check_request(runtime, method, anonymize, recover, epsilon, seed=seed)


def compare(runtime: Runtime, data: bytes | None, seed, epsilon, progress=None,
            run=None) -> tuple[Image.Image, list[Comparison]]:
    """One photo through every available method with the same seed (reviewers' tab).

    ``run(photo, request)`` does one method (default :func:`protect_photo`; the app passes
    its GPU-scheduled version); ``progress`` is an optional ``gr.Progress``-like object.
    """
    run = run or (lambda photo, request: protect_photo(runtime, photo, request))
    requests = [comparison_request(runtime, m, seed, epsilon) for m in runtime.methods]
    photo = read_photo(data, runtime.max_pixels)
    rows = []
    iterate = progress.tqdm(requests, desc="methods") if progress is not None else requests
    for request in iterate:
        start = time.perf_counter()
        try:
            result = run(photo, request)
        except RequestError as exc:  # e.g. no face: the same for every method, say it once
            if not rows:
                raise
            rows.append(Comparison(request.method, None, time.perf_counter() - start, str(exc)))
            continue
        result.main.caption = f"{request.method}: {result.main.measured()}"
        rows.append(Comparison(request.method, result.main, time.perf_counter() - start))
    return photo, rows


def user_message(exc: Exception) -> str:
    """The one sentence a visitor sees for a failure (never a stack trace)."""
    if isinstance(exc, RequestError):
        return str(exc)
    return ("Something went wrong while processing this photo; please try another photo or "
            "other settings.")
