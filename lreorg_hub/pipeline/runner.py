"""The photo runner: many photos through the stages (``stages.py``) together.

One flow serves ``LReOrgPipeline.__call__`` (a batch of one) and ``run_batch``:

1. per photo: load, one uint8 copy to the device, detect (MTCNN reads the host copy), split
   the faces into those to regenerate and those too small, align the former on the device;
2. encode every face of every photo together (``chunk`` per encoder call);
3. the method (protect): network passes shared by all photos, each photo drawing with its own
   seed (its own generator and DP draw);
4. generate every sample of every face of every photo together;
5. paste per photo and per sample, then one copy of every output to the host;
6. cover the small faces with the classical fallback, on the host.

A photo that fails (unreadable, no face, too many faces…) is that photo's result, never the
batch's. Image methods (blur, …) have no backbone work to share and run photo by photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from PIL import Image

from ..image.faces import AlignTransform, Detection, lanczos_resize
from ..image.io import ImageSource, load_image, photo_tensor, to_host_once
from . import stages
from .methods import ImageMethod, LatentMethod
from .options import ProtectOptions
from .results import FaceResult, NoFaceError, PipelineResult, StageTimer

__all__ = ["protect_photos"]


@dataclass
class _Photo:
    """One photo's state between the batched stages."""

    index: int
    options: ProtectOptions
    photo: Image.Image | None = None           # the host copy (MTCNN, aligned inputs)
    pixels: torch.Tensor | None = None         # (3, H, W) uint8 on the pipeline's device
    detections: list[Detection] = field(default_factory=list)
    regenerate: list[int] = field(default_factory=list)   # indices into detections
    small: list[int] = field(default_factory=list)        # covered by the fallback
    transforms: list[AlignTransform] = field(default_factory=list)
    crops: torch.Tensor | None = None          # (n, 3, S, S) uint8: the encoder's input
    codes: slice | None = None                 # its rows of the batch's W+ codes
    out: object = None                         # LatentOutput
    generated: slice | None = None             # its rows of the generated recovered crops
    anonymized: slice | None = None            # its rows of the generated anonymized crops
    composed: list[torch.Tensor] = field(default_factory=list)   # (3, H, W) uint8 per sample
    composed_anonymized: torch.Tensor | None = None
    error: Exception | None = None


def protect_photos(pipe, images: Sequence[ImageSource], options: Sequence[ProtectOptions],
                   *, anonymized_crops: bool, chunk: int) -> list:
    """Protect photos whose options (one per photo, resolved by ``pipe.check``) differ at
    most in the seed: a list of ``PipelineResult`` or that photo's exception, in order."""
    runner = pipe.methods[options[0].method]
    if isinstance(runner, ImageMethod):
        results = []
        for image, o in zip(images, options):
            try:
                results.append(_protect_with_image_method(pipe, image, runner, o))
            except Exception as e:  # one photo never stops the batch
                results.append(e)
        return results
    timer = StageTimer(pipe.device)
    photos = [_Photo(i, o) for i, o in enumerate(options)]
    for p, image in zip(photos, images):
        try:
            _load_and_align(pipe, p, image, timer)
        except Exception as e:  # unreadable, no face, too large…: that photo's result
            p.error = e
    live = [p for p in photos if p.error is None]
    if live:
        with timer("encode"):
            codes = stages.encode(pipe.backbone, pipe.encoder, [p.crops for p in live], chunk,
                                  pipe.device)
        start = 0
        for p in live:
            p.codes = slice(start, start + p.crops.shape[0])
            start = p.codes.stop
        with timer(runner.stage):
            _protect(runner, live, codes)
    live = [p for p in photos if p.error is None]
    if live:
        with timer("generate"):
            recovered, anonymized = _generate(pipe, live, anonymized_crops, chunk)
        with timer("paste"):
            for p in live:
                try:
                    _paste(pipe, p, recovered, anonymized)
                except Exception as e:
                    p.error = e
            live = [p for p in live if p.error is None]
            results = _assemble(pipe, live, recovered, anonymized, timer)
    return [p.error if p.error is not None else results[p.index] for p in photos]


def _load_and_align(pipe, p: _Photo, image: ImageSource, timer: StageTimer) -> None:
    """Load one photo, send it to the device once, find its faces, align those to regenerate
    there."""
    with timer("load"):
        p.photo = load_image(image, max_pixels=pipe.max_pixels)
        if p.options.aligned:
            _check_square(p.photo)
        p.pixels = photo_tensor(p.photo, pipe.device)
    if p.options.aligned:
        p.regenerate, p.crops = [0], p.pixels[None]
        return
    with timer("detect"):
        p.detections = stages.detect(pipe.detector, p.photo)
    if not p.detections:
        raise NoFaceError(_no_face_message(pipe))
    chosen = stages.select(len(p.detections), p.options.faces)
    p.regenerate, p.small = stages.split_by_size(p.detections, chosen, pipe.min_face_size)
    if len(p.regenerate) > pipe.max_faces:
        raise ValueError(f"this photo has {len(p.regenerate)} faces to regenerate, more than "
                         f"the limit of {pipe.max_faces} per photo (max_faces / --max-faces); "
                         f"choose faces with faces= / --faces or raise the limit")
    with timer("align"):
        p.crops, p.transforms = stages.align(p.pixels, [p.detections[i] for i in p.regenerate],
                                             pipe.detector.output_size)


def _protect(runner: LatentMethod, live: list[_Photo], codes: torch.Tensor) -> None:
    """The method for every photo at once; if that fails (a photo with non-finite codes,
    say), photo by photo, so the failure stays that photo's."""
    try:
        outs = runner.protect_codes_many([codes[p.codes] for p in live],
                                         [p.options for p in live])
        for p, out in zip(live, outs):
            p.out = out
    except Exception:
        for p in live:
            try:
                p.out = runner.protect_codes(codes[p.codes], p.options)
            except Exception as e:
                p.error = e


def _generate(pipe, live: list[_Photo], anonymized_crops: bool, chunk: int):
    """Every sample of every face of every photo in shared generator passes; the anonymized
    crops in passes of their own, so the recovered ones do not depend on whether they
    exist."""
    parts, start = [], 0
    for p in live:  # sample-major within a photo: row s*n + j is sample s of face j
        codes = p.out.recovered
        part = codes.reshape(-1, *codes.shape[2:])
        p.generated = slice(start, start + part.shape[0])
        start += part.shape[0]
        parts.append(part)
    args = (chunk, pipe.device, pipe.output_size)
    recovered = stages.generate(pipe.backbone, torch.cat(parts), *args)
    extra = [p for p in live if anonymized_crops and p.out.anonymized is not None]
    anonymized = None
    if extra:
        start, parts = 0, []
        for p in extra:
            part = p.out.anonymized[0]
            p.anonymized = slice(start, start + part.shape[0])
            start += part.shape[0]
            parts.append(part)
        anonymized = stages.generate(pipe.backbone, torch.cat(parts), *args)
    return recovered, anonymized


def _paste(pipe, p: _Photo, recovered: torch.Tensor, anonymized: torch.Tensor | None) -> None:
    n = len(p.regenerate)
    samples = recovered[p.generated]
    for s in range(samples.shape[0] // n if n else p.out.recovered.shape[0]):
        faces = samples[s * n:(s + 1) * n]
        if p.options.aligned:
            p.composed.append(lanczos_resize(faces[0], p.photo.size))
        else:
            p.composed.append(stages.paste(p.pixels, p.transforms, faces, pipe.feather))
    if p.anonymized is not None:
        faces = anonymized[p.anonymized]
        p.composed_anonymized = (lanczos_resize(faces[0], p.photo.size) if p.options.aligned
                                 else stages.paste(p.pixels, p.transforms, faces, pipe.feather))


def _hwc(t: torch.Tensor) -> torch.Tensor:  # channels last, as PIL wants them
    return t.permute(*range(t.dim() - 3), -2, -1, -3)


def _assemble(pipe, live: list[_Photo], recovered: torch.Tensor,
              anonymized: torch.Tensor | None, timer: StageTimer) -> dict:
    """Copy every composed photo and crop to the host at once, cover the small faces, and
    build the results."""
    parts = []
    for p in live:
        parts.extend(_hwc(c) for c in p.composed)
        parts.append(_hwc(recovered[p.generated]))
        parts.append(_hwc(p.crops))
        if p.anonymized is not None:
            parts.append(_hwc(p.composed_anonymized))
            parts.append(_hwc(anonymized[p.anonymized]))
    with timer("paste"):
        host = iter(to_host_once(parts))
    results = {}
    for p in live:
        images = [_pil(next(host)) for _ in p.composed]
        generated = [_pil(a) for a in next(host)]
        crops = [_pil(a) for a in next(host)]
        n, k = len(p.regenerate), len(images)
        composed_anonymized = anonymized_crops = None
        if p.anonymized is not None:
            composed_anonymized = _pil(next(host))
            anonymized_crops = [_pil(a) for a in next(host)]
        if p.small:
            with timer("cover"):
                images, composed_anonymized = _cover(p, images, composed_anonymized)
        faces = []
        for j, i in enumerate(p.regenerate):
            detection = None if p.options.aligned else p.detections[i]
            samples = [generated[s * n + j] for s in range(k)]
            face_anonymized = (anonymized_crops[j] if anonymized_crops is not None
                               else samples[0] if p.out.anonymized is None else None)
            faces.append(FaceResult(
                index=i, detection=detection,
                transform=None if p.options.aligned else p.transforms[j],
                aligned=p.photo if p.options.aligned else crops[j],
                anonymized=face_anonymized, samples=samples))
        results[p.index] = _result(p, images, faces, p.out.record, p.out.diagnostics,
                                   timer.timings, composed_anonymized)
    return results


def _cover(p: _Photo, images: list[Image.Image], anonymized: Image.Image | None):
    """Every output of a photo with its small faces covered by the fallback."""
    small = [p.detections[i] for i in p.small]
    images = [stages.cover(image, small, p.options.small_faces) for image in images]
    if anonymized is not None:
        anonymized = stages.cover(anonymized, small, p.options.small_faces)
    return images, anonymized


def _result(p: _Photo, images, faces, record, diagnostics, timings,
            anonymized_image=None) -> PipelineResult:
    """A photo's result: the record completed with the faces counted, the private
    diagnostics with the detector's boxes and scores."""
    from dataclasses import replace

    covered = {p.options.small_faces: len(p.small)} if p.small else {}
    record = replace(record, faces=len(faces), faces_found=len(p.detections) or len(faces),
                     faces_covered=covered)
    diagnostics = dict(diagnostics)
    diagnostics["faces"] = [{"index": f.index, "box": f.box,
                             "score": None if f.detection is None else f.detection.score}
                            for f in faces]
    if p.small:
        diagnostics["covered"] = [{"index": i, "box": [float(v) for v in p.detections[i].box],
                                   "score": p.detections[i].score,
                                   "rule": p.options.small_faces} for i in p.small]
    return PipelineResult(images=images, faces=faces, record=record, timings=timings,
                          faces_found=len(p.detections) or len(faces),
                          anonymized_image=anonymized_image, diagnostics=diagnostics)


def _pil(array: torch.Tensor) -> Image.Image:
    return Image.fromarray(array.numpy())  # fresh: no metadata


def _check_square(photo: Image.Image) -> None:
    if abs(photo.width - photo.height) > 1:
        raise ValueError(f"an aligned face crop must be square, got {photo.width}×"
                         f"{photo.height}; pass the whole photo without aligned=True "
                         f"to detect and align faces")


def _no_face_message(pipe) -> str:
    return ("No face was found in this photo. Try a photo where the face is clearly visible "
            f"and at least {pipe.min_face_size} pixels wide, or pass an aligned face "
            "crop with aligned=True (--aligned).")


def _protect_with_image_method(pipe, image: ImageSource, runner: ImageMethod,
                               opts: ProtectOptions) -> PipelineResult:
    """One photo through an image baseline, on the host: every chosen face is obfuscated,
    small ones included."""
    timer = StageTimer(pipe.device)
    p = _Photo(0, opts)
    with timer("load"):
        p.photo = load_image(image, max_pixels=pipe.max_pixels)
    with timer("detect"):
        p.detections = stages.detect(pipe.detector, p.photo)
    if not p.detections:
        raise NoFaceError(_no_face_message(pipe))
    p.regenerate = stages.select(len(p.detections), opts.faces)
    with timer("align"):
        aligned = [pipe.detector.align(p.photo, p.detections[i]) for i in p.regenerate]
    with timer(runner.stage):
        composed, record = runner.protect_photo(p.photo, aligned, opts)
    faces = []
    for i, face in zip(p.regenerate, aligned):
        crop = pipe.detector.align(composed, face).aligned
        faces.append(FaceResult(i, p.detections[i], face.transform, face.aligned, crop, [crop]))
    return _result(p, [composed], faces, record, {}, timer.timings)
