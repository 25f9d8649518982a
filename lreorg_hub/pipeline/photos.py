"""Photos in, anonymized photos out: detect → align → encode → reorganize → generate → paste.

``LReOrgPipeline`` is the one API that the CLI, the app and the tests call. It never writes an
image to disk; every image it returns is a fresh PIL image built from an array, so no metadata of
the upload (EXIF, GPS, ICC, comments) can travel into an output.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from PIL import Image

from ..backbones import Backbone, load_backbone
from ..bundle import LReOrg
from ..image.faces import MTCNN_MIN_FACE, FaceDetector
from ..image.io import ImageSource, photo_tensor, to_host_once
from .devices import check_device
from . import stages
from .methods import (ImageMethod, KeywordSupport, LatentMethod, build_methods,
                      describe_missing)
from .options import Limits, ProtectOptions, check_method, check_output_size
from .registry import METHODS
from .results import PipelineResult
from .runner import protect_photos

__all__ = ["LReOrgPipeline"]


class LReOrgPipeline:
    """Every way of protecting a face (``methods.METHODS``), on photos.

    Args:
        model: the LReOrg bundle (CDFNet + anonymizers + keyword embeddings); None for a
            pipeline without LReOrg and the latent baselines.
        encoder: the e4e encoder (image in its ``input_range`` at ``input_size`` → W+ offsets).
        generator: the StyleGAN2 generator (W+ codes → images in [-1, 1]).
        latent_avg: the average latent added to the encoder's output.
        style_mix: fitted ``StyleMixAnonymizer`` groups for the training-free `style-mix`
            baseline (needs encoder + generator, no bundle).
        detector: the face detector (built lazily with defaults when None).
        device: where the networks run ("auto": cuda when available, else cpu).
        output_size: generator resolution to stop at (e.g. 256 for a fast preview of the
            1024 px generator); None = full resolution.
        feather: soft edge of the paste-back mask, as a fraction of the face crop.
        batch_size: faces (or samples) per generator / encoder call.
        max_pixels: photos larger than this are refused.
        min_face_size: the smallest face that is regenerated, in pixels (the shorter side of
            its box). The detector looks for faces down to 12 px; smaller ones that it finds
            are covered by the fallback (``ProtectOptions.small_faces``), never left as they
            are unless asked.
        max_faces: a photo with more faces to regenerate is refused (its own message).
    """

    def __init__(self, model: LReOrg | None = None, encoder: torch.nn.Module | None = None,
                 generator: torch.nn.Module | None = None,
                 latent_avg: torch.Tensor | None = None, detector: FaceDetector | None = None,
                 device: str | torch.device = "auto", output_size: int | None = None,
                 feather: float = 0.1, batch_size: int = 4, max_pixels: int = 50_000_000,
                 min_face_size: int = 20, max_faces: int = 64, style_mix=None):
        self.device = check_device(device)
        _check_settings(feather, batch_size, max_pixels, min_face_size, max_faces)
        if (encoder is None) != (generator is None):
            raise ValueError("a backbone needs both the encoder and the generator (or neither, "
                             "for the image baselines only)")
        self.model = model.to(self.device).eval() if model is not None else None
        self.encoder = encoder.to(self.device).eval() if encoder is not None else None
        self.generator = generator.to(self.device).eval() if generator is not None else None
        self.latent_avg = latent_avg.to(self.device) if latent_avg is not None else None
        self.style_mix = style_mix.to(self.device).eval() if style_mix is not None else None
        # The backbone's own encode (latent_avg added) and decode (stored noise) do the work.
        self.backbone = (Backbone(self.generator, self.encoder, self.latent_avg)
                         if self.generator is not None else None)
        self.output_size = check_output_size(
            output_size, self.generator.size if self.generator is not None else None)
        self.feather = float(feather)
        self.batch_size = int(batch_size)
        self.max_pixels = max_pixels
        self._detector = detector
        self.min_face_size = int(min_face_size)
        self.max_faces = int(max_faces)
        if self.model is not None and self.generator is not None:
            self._check_compatible()
        if self.style_mix is not None and self.generator is not None:
            self._check_style_mix()
        self.methods: dict[str, LatentMethod | ImageMethod] = build_methods(
            self.model, self.style_mix, has_backbone=self.generator is not None)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, bundle: str | LReOrg | None, backbone=None, *,
                        revision: str | None = None, device: str | torch.device = "auto",
                        style_mix=None, torch_dtype: str | torch.dtype | None = None,
                        **kwargs) -> "LReOrgPipeline":
        """Load a bundle (Hub repo id, folder, an ``LReOrg``, or None) and its backbone.

        ``backbone`` is a ``Backbone`` (encoder, generator, latent_avg), a local checkpoint
        path, or None to use the bundle's configured Hub checkpoint (repo id, file, revision).
        ``style_mix`` is a fitted ``StyleMixAnonymizer`` or a folder / repo id of one. With
        ``bundle=None`` the pipeline runs style-mix and the image baselines; the backbone then
        defaults to ``$LREORG_BACKBONE_PATH`` or the default Hub checkpoint.
        ``torch_dtype``: the precision of the encoder, CDFNet and generator (see :meth:`to`).
        """
        if torch_dtype is not None:
            pipe = cls.from_pretrained(bundle, backbone, revision=revision, device=device,
                                       style_mix=style_mix, **kwargs)
            return pipe.to(dtype=torch_dtype)
        model = bundle if isinstance(bundle, LReOrg) or bundle is None else \
            LReOrg.from_pretrained(bundle, revision=revision)
        if style_mix is not None and not isinstance(style_mix, torch.nn.Module):
            from ..bundle import StyleMixAnonymizer

            style_mix = StyleMixAnonymizer.from_pretrained(style_mix)
        if model is None and style_mix is None:
            raise ValueError("nothing to load: give a bundle, or style_mix= (fitted groups) "
                             "with a backbone; LReOrgPipeline() runs the image baselines only")
        if not isinstance(backbone, Backbone):
            # None: the bundle's configured Hub checkpoint (LREORG_BACKBONE_* overrides apply).
            backbone = load_backbone(backbone if backbone is not None or model is None
                                     else model.backbone)
        return cls(model, backbone.encoder, backbone.generator, backbone.latent_avg,
                   device=device, style_mix=style_mix, **kwargs)

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

    def _check_style_mix(self) -> None:
        sm, g = self.style_mix, self.generator
        if (sm.num_rows, sm.style_dim) != (g.n_latent, g.style_dim):
            raise ValueError(f"the style-mix groups work on ({sm.num_rows}, {sm.style_dim}) "
                             f"W+ codes but the generator gives ({g.n_latent}, {g.style_dim})")

    # -- what this pipeline can do ------------------------------------------------------------
    def available_methods(self) -> list[str]:
        """The methods this pipeline can run with what is loaded, in ``METHODS`` order."""
        return list(self.methods)

    @property
    def default_method(self) -> str | None:
        """lreorg when a bundle is loaded, else style-mix when loaded, else None."""
        return next((m for m in ("lreorg", "style-mix") if m in self.methods), None)

    def keywords(self, method: str | None = None) -> KeywordSupport:
        """Which keywords ``method`` (default: ``default_method``) can anonymize / recover
        with the loaded weights, and why the others cannot (for disabled checkboxes)."""
        return self._runner(method).keyword_support()

    def _runner(self, method: str | None) -> LatentMethod | ImageMethod:
        if method is None:
            method = self.default_method
            if method is None:
                raise ValueError(f"choose a method: this pipeline has no bundle or style-mix "
                                 f"groups loaded, so only {', '.join(self.methods)} can run")
        check_method(method)
        if method not in self.methods:
            raise ValueError(f"{describe_missing(method)}; this pipeline can run: "
                             f"{', '.join(self.methods)}")
        return self.methods[method]

    def check(self, options: ProtectOptions | None = None, *,
              limits: Limits = Limits()) -> ProtectOptions:
        """Validate a call's options against what is loaded, before any photo is read: the
        one validation every surface goes through. Returns the options resolved (method
        chosen, defaults filled in); raises ValueError with one sentence."""
        options = options or ProtectOptions()
        runner = self._runner(options.method)
        return runner.check(replace(options, method=runner.info.name), limits)

    @property
    def detector(self) -> FaceDetector:
        """MTCNN, searching down to its smallest face (12 px) so that faces too small to
        regenerate are still found and covered; built once, on the pipeline's device."""
        if self._detector is None:
            size = self.encoder.input_size if self.encoder is not None else 256
            self._detector = FaceDetector(min_face_size=min(MTCNN_MIN_FACE, self.min_face_size),
                                          output_size=size, device=self.device)
        return self._detector

    # -- the stages ---------------------------------------------------------------------------
    def encode(self, crops: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        """Aligned crops (PIL images of one size, or an (N, 3, H, W) uint8 tensor) → W+ codes
        s⁰ (N, L, 512), float32, latent_avg included."""
        if not isinstance(crops, torch.Tensor):
            crops = torch.stack([photo_tensor(c, self.device) for c in crops])
        return stages.encode(self.backbone, self.encoder, [crops], self.batch_size, self.device)

    def generate(self, codes: torch.Tensor) -> list[Image.Image]:
        """W+ codes (N, L, 512) → images; constant noise so a seed reproduces the output."""
        images = stages.generate(self.backbone, codes, self.batch_size, self.device,
                                 self.output_size)
        (host,) = to_host_once([images.permute(0, 2, 3, 1)])
        return [Image.fromarray(a.numpy()) for a in host]

    # -- the call -----------------------------------------------------------------------------
    @torch.inference_mode()
    def __call__(self, image: ImageSource, options: ProtectOptions | None = None, *,
                 anonymized_crops: bool = True, **option_kwargs) -> PipelineResult:
        """Protect the faces of one photo.

        Every option is checked (``check``) before the photo is loaded. Give a
        ``ProtectOptions`` or its fields as keyword arguments (method, anonymize, recover,
        epsilon, rank_window, mechanism, seed, samples, strength, style_rows, aligned, faces,
        small_faces); None means "not given": the method's default applies, and an option
        that does not apply to the method is an error.

        Args:
            image: path, bytes, file object, PIL image or array.
            anonymized_crops: also generate G(s^M) (the anonymized, not yet recovered face)
                for each face and ``result.anonymized_image``; False saves one generator pass
                per face when only the protected photo is wanted.
        """
        opts = self.check(_options(options, option_kwargs))
        # One flow for one photo and many: a batch of one, its exception raised.
        (result,) = protect_photos(self, [image], [opts], anonymized_crops=anonymized_crops,
                                   chunk=self.batch_size)
        if isinstance(result, Exception):
            raise result
        return result

    @torch.inference_mode()
    def run_batch(self, images: Sequence[ImageSource], seeds: Sequence[int | None] | None = None,
                  batch_size: int | None = None, options: ProtectOptions | None = None, *,
                  anonymized_crops: bool = False, **option_kwargs) -> list:
        """Photos in, ``PipelineResult`` (or that photo's exception) out, in input order; the
        faces of all photos and all samples share the encoder / generator passes.

        seeds: one seed (None: OS entropy; a ``SecretSeed``: never recorded) per photo; the
            options then carry no seed. Ignored for methods without a random draw. batch_size: faces / samples per encoder and generator
            call (default: the pipeline's). Options as in ``__call__``, checked once, before
            any photo; every result's ``timings`` holds the whole batch's stage times.
        """
        images = list(images)
        seeds = [None] * len(images) if seeds is None else list(seeds)
        if len(seeds) != len(images):
            raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
        opts = self.check(_options(options, option_kwargs))
        if opts.seed is not None:
            raise ValueError("run_batch takes seeds=[...] (one per photo), not a seed option")
        if "seed" not in METHODS[opts.method].options:  # deterministic: no draw to seed
            seeds = [None] * len(images)
        per_photo = [self.check(replace(opts, seed=s)) if s is not None else opts
                     for s in seeds]  # every seed checked up front
        chunk = self.batch_size if batch_size is None else batch_size
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not images:
            return []
        return protect_photos(self, images, per_photo, anonymized_crops=anonymized_crops,
                              chunk=chunk)

    def anonymize_video(self, src, dst, options: ProtectOptions | None = None, *,
                        video=None, secret: bytes | None = None, progress=None, on_frame=None,
                        require_face: bool = False, **option_kwargs):
        """Anonymize the clip ``src`` (a path, or its bytes) into ``dst`` (a path, MP4 / H.264
        by default, written atomically; or a binary file object the caller made atomic), one
        identity draw per track: see ``lreorg_hub.pipeline.video``.

        video: a ``VideoOptions`` (detect_every, draw, audio, container, limits, …).
        Options as in ``__call__`` (samples must be 1). require_face: raise ``NoFaceError``,
        writing nothing, when no face is found in the whole clip (default: the clip is written
        and its record says 0 tracks). Returns a ``VideoResult`` (output path, record with the
        per-video summary in ``record.extra["video"]``, timings)."""
        from .video import VideoOptions, anonymize_video

        return anonymize_video(self, src, dst, _options(options, option_kwargs),
                               video if video is not None else VideoOptions(), secret=secret,
                               progress=progress, on_frame=on_frame, require_face=require_face)

    # -- device and precision ----------------------------------------------------------------
    DTYPES = (torch.float32, torch.bfloat16, torch.float16)  # what the backbone can run in

    @property
    def dtype(self) -> torch.dtype:
        """The networks' dtype (float32 unless changed with :meth:`to`)."""
        return self.generator.dtype if self.generator is not None else torch.float32

    def to(self, device: str | torch.device | None = None,
           dtype: str | torch.dtype | None = None) -> "LReOrgPipeline":
        """Move the networks to ``device`` and/or run the encoder, CDFNet and the generator
        in ``dtype`` (float32, bfloat16 or float16; also given as a name). The anonymizers'
        statistics, the DP mechanism (distances, scores, draws) and MTCNN stay float32: the
        mechanism's scores must not be rounded. A detector already built stays where it is
        (the lazy default one is built on the pipeline's device). Returns the pipeline."""
        if isinstance(dtype, str):
            dtype = getattr(torch, dtype, None) if dtype in ("float32", "bfloat16",
                                                             "float16") else dtype
        if dtype is not None and dtype not in self.DTYPES:
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {dtype!r}")
        if device is not None:
            device = check_device(device)
            if device != self.device:
                self.device = device
                for module in (self.model, self.style_mix):
                    if module is not None:
                        module.to(device)
                if self.latent_avg is not None:
                    self.latent_avg = self.latent_avg.to(device)
        for net in (self.encoder, self.generator,
                    self.model.cdfnet if self.model is not None else None):
            if net is not None:
                net.to(device=device, dtype=dtype)
        if self.backbone is not None:
            self.backbone.latent_avg = self.latent_avg
        return self


def _options(options: ProtectOptions | None, kwargs: dict) -> ProtectOptions:
    """The call's options: a ``ProtectOptions`` or its fields as keywords, not both."""
    if options is not None:
        if kwargs:
            raise ValueError(f"pass either options= or the separate option arguments, not "
                             f"both (got {', '.join(sorted(kwargs))})")
        return options
    try:
        return ProtectOptions(**kwargs)
    except TypeError:
        unknown = sorted(set(kwargs) - set(ProtectOptions.__dataclass_fields__))
        raise TypeError(f"unknown option(s) {', '.join(unknown)}; options are: "
                        f"{', '.join(ProtectOptions.__dataclass_fields__)}") from None


def _check_settings(feather, batch_size, max_pixels, min_face_size, max_faces=64) -> None:
    import math
    import numbers

    def number(v):
        return isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)

    if not number(feather) or not 0 <= feather <= 0.5:
        raise ValueError(f"feather must be a number in [0, 0.5] (a fraction of the face "
                         f"crop), got {feather!r}")
    if not number(batch_size) or int(batch_size) != batch_size or not 1 <= batch_size <= 256:
        raise ValueError(f"batch_size must be an integer in 1..256, got {batch_size!r}")
    if max_pixels is not None and (not number(max_pixels) or max_pixels < 1):
        raise ValueError(f"max_pixels must be a positive number of pixels, got {max_pixels!r}")
    if not number(min_face_size) or int(min_face_size) != min_face_size or \
            not 1 <= min_face_size <= 10_000:
        raise ValueError(f"min_face_size must be an integer number of pixels in 1..10000, "
                         f"got {min_face_size!r}")
    if not number(max_faces) or int(max_faces) != max_faces or not 1 <= max_faces <= 4096:
        raise ValueError(f"max_faces must be an integer in 1..4096, got {max_faces!r}")
