"""Photos in, anonymized photos out: detect → align → encode → reorganize → generate → paste.

``LReOrgPipeline`` is the one API that the CLI, the app and the tests call. It never writes an
image to disk; every image it returns is a fresh PIL image built from an array, so no metadata of
the upload (EXIF, GPS, ICC, comments) can travel into an output.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch
from PIL import Image

from . import keywords as kw
from .backbones import Backbone, load_backbone
from .baselines import BASELINES, get_baseline
from .faces import Face, FaceDetector, align_face, paste_back_all
from .imaging import ImageSource, as_rgb_array, load_image, tensor_to_pil
from .model import LReOrg

__all__ = ["LReOrgPipeline", "PipelineResult", "FaceResult", "NoFaceError", "METHODS",
           "auto_device"]

# Every way a face can be protected, side by side: LReOrg (GIA window/strict), the latent
# baselines, and the classical image baselines.
LATENT_METHODS = ("lreorg", "laplace", "k-anonymity")
METHODS = LATENT_METHODS + tuple(BASELINES)


class NoFaceError(ValueError):
    """The photo has no face the detector could find (a user-readable message)."""


def auto_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@dataclass
class FaceResult:
    """One processed face: crops in the aligned frame, and where it was in the photo."""

    index: int                      # position in the detector's order (left to right)
    box: list[float] | None         # x0, y0, x1, y1 in photo pixels (None for aligned input)
    score: float | None             # detector confidence
    aligned: Image.Image            # the aligned input crop
    anonymized: Image.Image | None  # G(s^M), sample 0 (the baseline's crop for baselines)
    recovered: Image.Image | None   # G(s^N), sample 0: what is pasted into the photo
    diverse: list[Image.Image] = field(default_factory=list)  # G(s^N) of every sample


@dataclass
class PipelineResult:
    """The composed photo, the per-face crops, what ran, and how long each stage took."""

    image: Image.Image
    faces: list[FaceResult]
    record: dict
    timings: dict[str, float]
    faces_found: int = 0

    def to_dict(self) -> dict:
        """JSON-ready summary (no pixels): what a CLI run writes next to each output."""
        return {
            "size": list(self.image.size),
            "faces_found": self.faces_found,
            "faces": [{"index": f.index, "box": f.box, "score": f.score,
                       "samples": len(f.diverse)} for f in self.faces],
            "record": self.record,
            "timings_s": {k: round(v, 4) for k, v in self.timings.items()},
        }


class _Timer:
    def __init__(self):
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - start


class LReOrgPipeline:
    """The LReOrg method on photos.

    Args:
        model: the LReOrg bundle (CDFNet + anonymizers + keyword embeddings); None for a
            pipeline that only runs the image baselines.
        encoder: the e4e encoder (image in its ``input_range`` at ``input_size`` → W+ offsets).
        generator: the StyleGAN2 generator (W+ codes → images in [-1, 1]).
        latent_avg: the average latent added to the encoder's output.
        detector: the face detector (built lazily with defaults when None).
        device: where the networks run ("auto": cuda when available, else cpu).
        output_size: generator resolution to stop at (e.g. 256 for a fast preview of the
            1024 px generator); None = full resolution.
        feather: soft edge of the paste-back mask, as a fraction of the face crop.
        batch_size: faces (or samples) per generator / encoder call.
        max_pixels: photos larger than this are refused.
    """

    def __init__(self, model: LReOrg | None = None, encoder: torch.nn.Module | None = None,
                 generator: torch.nn.Module | None = None,
                 latent_avg: torch.Tensor | None = None, detector: FaceDetector | None = None,
                 device: str | torch.device = "auto", output_size: int | None = None,
                 feather: float = 0.1, batch_size: int = 4, max_pixels: int = 50_000_000,
                 min_face_size: int = 20):
        self.device = auto_device() if str(device) == "auto" else torch.device(device)
        self.model = model.to(self.device).eval() if model is not None else None
        self.encoder = encoder.to(self.device).eval() if encoder is not None else None
        self.generator = generator.to(self.device).eval() if generator is not None else None
        self.latent_avg = latent_avg.to(self.device) if latent_avg is not None else None
        # The backbone's own encode (latent_avg added) and decode (stored noise) do the work.
        self.backbone = (Backbone(self.generator, self.encoder, self.latent_avg)
                         if self.generator is not None else None)
        self.output_size = output_size
        self.feather = float(feather)
        self.batch_size = int(batch_size)
        self.max_pixels = max_pixels
        self._detector = detector
        self.min_face_size = int(min_face_size)
        if None not in (self.model, self.encoder, self.generator):
            self._check_compatible()

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, bundle: str | LReOrg, backbone=None, *, revision: str | None = None,
                        device: str | torch.device = "auto",
                        torch_dtype: str | torch.dtype | None = None,
                        **kwargs) -> "LReOrgPipeline":
        """Load a bundle (Hub repo id, folder or an ``LReOrg``) and its backbone.

        ``backbone`` is a ``Backbone`` (encoder, generator, latent_avg), a local checkpoint
        path, or None to use the bundle's configured Hub checkpoint (repo id, file, revision).
        ``torch_dtype``: the backbone's precision (see :meth:`to`).
        """
        if torch_dtype is not None:
            pipe = cls.from_pretrained(bundle, backbone, revision=revision, device=device,
                                       **kwargs)
            return pipe.to(dtype=torch_dtype)
        model = bundle if isinstance(bundle, LReOrg) else LReOrg.from_pretrained(
            bundle, revision=revision)
        if not isinstance(backbone, Backbone):
            # None: the bundle's configured Hub checkpoint (LREORG_BACKBONE_* overrides apply).
            backbone = load_backbone(model.backbone if backbone is None else backbone)
        return cls(model, backbone.encoder, backbone.generator, backbone.latent_avg,
                   device=device, **kwargs)

    def _check_compatible(self) -> None:
        rows, dim = self.model.cdfnet.num_rows, self.model.cdfnet.latent_dim
        problems = []
        if self.generator.n_latent != rows or self.generator.style_dim != dim:
            problems.append(f"generator gives ({self.generator.n_latent}, "
                            f"{self.generator.style_dim}) codes")
        if self.encoder.n_styles != rows or self.encoder.style_dim != dim:
            problems.append(f"encoder gives ({self.encoder.n_styles}, {self.encoder.style_dim})"
                            f" codes")
        if problems:
            raise ValueError(f"backbone does not match the bundle, which works on ({rows}, "
                             f"{dim}) W+ codes: " + "; ".join(problems))

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            size = self.encoder.input_size if self.encoder is not None else 256
            self._detector = FaceDetector(min_face_size=self.min_face_size, output_size=size,
                                          device=self.device)
        return self._detector

    # -- the stages ---------------------------------------------------------------------------
    def encode(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        """Aligned crops (all the same size) → W+ codes s⁰ (N, L, 512), latent_avg included."""
        pixels = torch.stack([torch.from_numpy(as_rgb_array(c)).permute(2, 0, 1) for c in crops])
        codes = [self.backbone.encode(self.encoder.prepare(b.to(self.device)))
                 for b in pixels.split(self.batch_size)]
        return torch.cat(codes)

    def generate(self, codes: torch.Tensor) -> list[Image.Image]:
        """W+ codes (N, L, 512) → images; constant noise so a seed reproduces the output."""
        images = []
        for chunk in codes.split(self.batch_size):
            out = self.backbone.decode(chunk.to(self.device), output_size=self.output_size)
            images.extend(tensor_to_pil(img) for img in out)
        return images

    # -- the call -----------------------------------------------------------------------------
    @torch.inference_mode()
    def __call__(self, image: ImageSource, anonymize: Sequence[str] | str | None = kw.DEFAULT_ANONYMIZE,
                 recover: Sequence[str] | str | None = kw.DEFAULT_RECOVER,
                 epsilon: float | None = None, rank_window: Sequence[int] | None = None,
                 mechanism: str = "window", seed: int | None = None, samples: int = 1,
                 method: str = "lreorg", strength: float | None = None, aligned: bool = False,
                 faces: Sequence[int] | None = None,
                 anonymized_crops: bool = True) -> PipelineResult:
        """Anonymize the faces of one photo.

        Args:
            image: path, bytes, file object, PIL image or array.
            anonymize, recover, epsilon, rank_window, mechanism, seed, samples: as in
                ``LReOrg.reorganize`` (mechanism: "window" or "strict").
            method: "lreorg", the latent baselines "laplace" / "k-anonymity", or the image
                baselines "blur" / "pixelate" / "mask".
            strength: the image baseline's strength (its default when None).
            aligned: the input is already an aligned face crop: skip detection and paste-back.
            faces: indices (left-to-right detection order) of the faces to process; all when
                None.
            anonymized_crops: also generate G(s^M) (the anonymized, not yet recovered face)
                for each face; False saves one generator pass per face when only the
                composed photo is wanted (``FaceResult.anonymized`` is then None).
        """
        if method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
        if method == "lreorg" and mechanism not in ("window", "strict"):
            raise ValueError(f"mechanism must be 'window' or 'strict' for method 'lreorg', got "
                             f"{mechanism!r} (the baselines are methods: "
                             f"{', '.join(m for m in METHODS if m != 'lreorg')})")
        timer = _Timer()
        with timer("load"):
            photo = load_image(image, max_pixels=self.max_pixels)
        if aligned:
            if method in BASELINES:
                raise ValueError(f"method {method!r} works on whole photos, not on aligned crops")
            return self._run_aligned(photo, timer, anonymize, recover, epsilon, rank_window,
                                     mechanism if method == "lreorg" else method, seed, samples,
                                     anonymized_crops)
        with timer("detect"):
            found = self.detector.locate(photo)
        if not found:
            raise NoFaceError("No face was found in this photo. Try a photo where the face is "
                              "clearly visible and at least "
                              f"{self.detector.min_face_size} pixels wide, or pass an aligned "
                              "face crop with aligned=True (--aligned).")
        chosen = self._select(len(found), faces)
        with timer("align"):
            detected = []
            for i in chosen:
                box, points, score = found[i]
                crop, transform = align_face(photo, points, self.detector.output_size)
                detected.append((i, Face(box=box, landmarks=points, score=score,
                                         transform=transform, aligned=crop)))
        if method in BASELINES:
            return self._run_baseline(photo, detected, method, strength, timer, len(found))
        with timer("encode"):
            codes = self.encode([f.aligned for _, f in detected])
        result = self._reorganize_and_generate(codes, timer, anonymize, recover, epsilon,
                                               rank_window,
                                               mechanism if method == "lreorg" else method,
                                               seed, samples, anonymized_crops)
        anonymized, recovered, diverse, record = result
        with timer("paste"):
            composed = paste_back_all(photo, [f for _, f in detected], recovered,
                                      feather=self.feather)
        face_results = [
            FaceResult(index=i, box=[float(v) for v in f.box], score=float(f.score),
                       aligned=f.aligned, anonymized=anonymized[j], recovered=recovered[j],
                       diverse=diverse[j])
            for j, (i, f) in enumerate(detected)]
        record["faces_processed"] = [i for i, _ in detected]
        return PipelineResult(composed, face_results, record, timer.timings, len(found))

    @staticmethod
    def _select(count: int, faces: Sequence[int] | None) -> list[int]:
        if faces is None:
            return list(range(count))
        chosen = []
        for i in faces:
            if isinstance(i, bool) or int(i) != i or not 0 <= int(i) < count:
                raise ValueError(f"face index {i!r} is out of range: {count} face(s) were "
                                 f"found, numbered 0..{count - 1} from left to right")
            if int(i) not in chosen:
                chosen.append(int(i))
        if not chosen:
            raise ValueError("no face selected: give at least one face index")
        return chosen

    def _reorganize_and_generate(self, codes, timer, anonymize, recover, epsilon, rank_window,
                                 mechanism, seed, samples, anonymized_crops):
        if None in (self.model, self.encoder, self.generator):
            raise ValueError("this pipeline has no bundle and backbone (encoder + generator): "
                             "only the image baselines blur / pixelate / mask can run")
        with timer("reorganize"):
            out = self.model.reorganize(codes, anonymize, recover, epsilon=epsilon,
                                        rank_window=rank_window, mechanism=mechanism,
                                        seed=seed, samples=samples)
        n = codes.shape[0]
        with timer("generate"):
            flat = self.generate(out.recovered.reshape(-1, *out.recovered.shape[2:]))
            # flat is sample-major: index s * n + j is sample s of face j.
            diverse = [[flat[s * n + j] for s in range(out.recovered.shape[0])]
                       for j in range(n)]
            recovered = [d[0] for d in diverse]
            if not out.record.recover:  # nothing recovered: s^N = s^M
                anonymized = recovered
            elif anonymized_crops:
                anonymized = self.generate(out.anonymized[0])
            else:
                anonymized = [None] * n
        record = out.record.to_dict()
        record["method"] = "lreorg" if mechanism in ("window", "strict") else mechanism
        record["information_loss"] = {k: float(v.mean()) for k, v in
                                      out.information_loss.items()}
        return anonymized, recovered, diverse, record

    def _run_aligned(self, photo, timer, anonymize, recover, epsilon, rank_window, mechanism,
                     seed, samples, anonymized_crops) -> PipelineResult:
        if abs(photo.width - photo.height) > 1:
            raise ValueError(f"an aligned face crop must be square, got {photo.width}×"
                             f"{photo.height}; pass the whole photo without aligned=True "
                             f"to detect and align faces")
        with timer("encode"):
            codes = self.encode([photo])
        anonymized, recovered, diverse, record = self._reorganize_and_generate(
            codes, timer, anonymize, recover, epsilon, rank_window, mechanism, seed, samples,
            anonymized_crops)
        with timer("paste"):
            composed = recovered[0].resize(photo.size, Image.LANCZOS)
        record["faces_processed"] = [0]
        face = FaceResult(0, None, None, photo, anonymized[0], recovered[0], diverse[0])
        return PipelineResult(composed, [face], record, timer.timings, 1)

    def _run_baseline(self, photo, detected, method, strength, timer, found) -> PipelineResult:
        settings = {} if strength is None else {"strength": float(strength)}
        baseline = get_baseline(method, **settings)
        with timer("baseline"):
            composed = baseline(photo, [f for _, f in detected])
        size = self.detector.output_size
        face_results = []
        for i, f in detected:
            crop, _ = align_face(composed, f.landmarks, size)
            face_results.append(FaceResult(i, [float(v) for v in f.box], float(f.score),
                                           f.aligned, crop, crop, [crop]))
        record = {"method": method, "strength": baseline.strength, "anonymize": [],
                  "recover": [], "faces_processed": [i for i, _ in detected],
                  "guarantee": f"Classical image baseline ({method}): no formal guarantee; "
                               f"the face region is obfuscated, nothing else changes."}
        return PipelineResult(composed, face_results, record, timer.timings, found)

    # -- many photos at once (lreorg_hub/batch.py) -----------------------------------------
    def run_batch(self, images: Sequence[ImageSource], seeds: Sequence[int | None] | None = None,
                  batch_size: int | None = None, **options) -> list:
        """Photos in, ``PipelineResult`` (or that photo's exception) out, in input order; the
        faces of all photos and all samples share the encoder / generator passes. Options
        as in ``__call__``; see :func:`lreorg_hub.batch.run_batch`."""
        from .batch import run_batch

        return run_batch(self, images, seeds=seeds, batch_size=batch_size, **options)

    # -- device and precision ----------------------------------------------------------------
    HALF_DTYPES = (torch.float32, torch.bfloat16, torch.float16)

    @property
    def dtype(self) -> torch.dtype:
        """The backbone's dtype (float32 unless changed with :meth:`to`)."""
        return self.generator.dtype if self.generator is not None else torch.float32

    def to(self, device: str | torch.device | None = None,
           dtype: str | torch.dtype | None = None) -> "LReOrgPipeline":
        """Move the networks to ``device`` and/or run the encoder and generator in ``dtype``
        (float32, bfloat16 or float16; also given as a name). CDFNet, the anonymizers'
        statistics, the DP mechanism and MTCNN stay float32: the latent work is small and the
        mechanism's scores must not be rounded. A detector already built stays where it is
        (the lazy default one is built on the pipeline's device). Returns the pipeline."""
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None) if dtype in ("float32", "bfloat16",
                                                             "float16") else dtype
        if dtype is not None and dtype not in self.HALF_DTYPES:
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        if device is not None:
            device = auto_device() if str(device) == "auto" else torch.device(device)
            if device != self.device:
                self.device = device
                if self.model is not None:
                    self.model.to(device)
                if self.latent_avg is not None:
                    self.latent_avg = self.latent_avg.to(device)
        for net in (self.encoder, self.generator):
            if net is not None:
                net.to(device=device, dtype=dtype)
        if self.backbone is not None:
            self.backbone.latent_avg = self.latent_avg
        return self
