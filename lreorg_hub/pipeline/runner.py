"""Many photos at once: the faces of every photo, and every diverse sample, go through the
encoder and the generator together in chunks of ``batch_size``.

``run_batch(pipe, images, seeds=...)`` gives, in input order, what ``pipe(image, seed=...)``
gives for each photo (a ``PipelineResult``), or the exception that photo raised: one bad photo
never stops the batch. Each photo keeps its own seed and so its own DP draw; the network
passes (encoder, CDFNet, generator) are shared. ``LReOrgPipeline.run_batch`` calls this, and
``LReOrgPipeline.__call__`` is :func:`protect_photos` on a batch of one.

On the pipeline's device, a photo goes there once as uint8, and everything until the
composed photo stays there as tensors: alignment, encoder input, W+ codes, generated crops,
paste-back. At the end the composed photos and every crop the results show are gathered into
one uint8 buffer and copied to the host once (``imaging.to_host_once``). Detection (MTCNN)
reads the host copy of the photo; the image baselines (blur, …) work on the host, photo by
photo.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..image.faces import AlignTransform, Face, align_face, align_faces, lanczos_resize, paste_faces
from ..image.io import ImageSource, load_image, photo_tensor, tensor_to_uint8, to_host_once
from .methods import ImageMethod
from .options import ProtectOptions
from .results import FaceResult, NoFaceError, PipelineResult, _Timer

__all__ = ["run_batch", "protect_photos"]

@dataclass
class _Photo:
    """One photo's state between the batched stages."""

    index: int
    options: ProtectOptions
    photo: Image.Image | None = None           # the host copy (MTCNN, aligned inputs)
    pixels: torch.Tensor | None = None         # (3, H, W) uint8 on the pipeline's device
    found: int = 0
    faces: list[tuple[int, np.ndarray | None, float | None]] = field(default_factory=list)
    transforms: list[AlignTransform] = field(default_factory=list)
    crops: torch.Tensor | None = None          # (n, 3, S, S) uint8: the encoder's input
    codes: slice | None = None                 # its rows of the batch's W+ codes
    out: object = None                         # LatentOutput
    generated: slice | None = None             # its rows of the generated recovered crops
    anonymized: slice | None = None            # its rows of the generated anonymized crops
    composed: torch.Tensor | None = None       # (3, H, W) uint8
    error: Exception | None = None


@torch.inference_mode()
def run_batch(pipe, images: Sequence[ImageSource], seeds: Sequence[int | None] | None = None,
              batch_size: int | None = None, *, method: str | None = None,
              aligned: bool = False, faces: Sequence[int] | None = None,
              anonymized_crops: bool = False, options: ProtectOptions | None = None,
              **option_kwargs) -> list:
    """Protect a list of photos; see the module docstring.

    Args:
        pipe: an ``LReOrgPipeline``.
        images: paths, bytes, PIL images or arrays.
        seeds: one seed (or None = OS entropy) per photo; None = OS entropy for all.
        batch_size: faces / samples per encoder and generator call (default: the pipeline's).
        method, aligned, faces, anonymized_crops, options and the option keywords
            (anonymize, recover, epsilon, rank_window, mechanism, samples, strength,
            style_rows): as in ``LReOrgPipeline.__call__``; checked once, before any photo.
            Image methods (blur, …) have no backbone work to share and run photo by photo.

    Returns: a list, in input order, of ``PipelineResult`` or the exception of that photo.
        Every result's ``timings`` holds the whole batch's stage times (shared work).
    """
    images = list(images)
    seeds = [None] * len(images) if seeds is None else list(seeds)
    if len(seeds) != len(images):
        raise ValueError(f"{len(images)} images but {len(seeds)} seeds")
    if "seed" in option_kwargs:
        raise ValueError("run_batch takes seeds=[...] (one per photo), not seed=")
    given = ProtectOptions(**option_kwargs)
    if options is not None:
        if given.given():
            raise ValueError("pass either options= or the separate option arguments, not both")
        given = options
    method, opts = pipe.check(method, given, aligned=aligned, faces=faces)
    per_photo = [pipe.check(method, replace(given, seed=s), aligned=aligned, faces=faces)[1]
                 if s is not None else opts for s in seeds]  # every seed checked up front
    chunk = pipe.batch_size if batch_size is None else batch_size
    if isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return protect_photos(pipe, images, per_photo, method, aligned=aligned, faces=faces,
                          anonymized_crops=anonymized_crops, chunk=int(chunk))


def protect_photos(pipe, images: Sequence[ImageSource], options: Sequence[ProtectOptions],
                   method: str, *, aligned: bool, faces: Sequence[int] | None,
                   anonymized_crops: bool, chunk: int) -> list:
    """The flow behind ``__call__`` and :func:`run_batch`, once method and options (one per
    photo) are checked: a list of ``PipelineResult`` or that photo's exception."""
    runner = pipe.methods[method]
    if isinstance(runner, ImageMethod):  # no backbone work to share
        results = []
        for image, o in zip(images, options):
            try:
                results.append(_protect_with_image_method(pipe, image, runner, o, faces))
            except Exception as e:  # one photo never stops the batch
                results.append(e)
        return results
    timer = _Timer(pipe.device)
    photos = [_Photo(i, o) for i, o in enumerate(options)]
    # 1. load, detect, align (per photo: MTCNN and the warps work photo by photo)
    for p, image in zip(photos, images):
        try:
            _load_and_align(pipe, p, image, aligned, faces, timer)
        except Exception as e:  # unreadable, no face, too large…: that photo's result
            p.error = e
    live = [p for p in photos if p.error is None]
    if not live:
        return [p.error for p in photos]
    # 2. encode every face of every photo together
    with timer("encode"):
        codes = _encode(pipe, [p.crops for p in live], chunk)
    start = 0
    for p in live:
        p.codes = slice(start, start + p.crops.shape[0])
        start = p.codes.stop
    # 3. the latent method: network passes shared by all photos, each photo drawing with its
    # own seed (its own generator and DP draw). If that fails (a photo with non-finite
    # codes, say), photo by photo, so the failure stays that photo's.
    with timer(runner.stage):
        try:
            for p, out in zip(live, runner.protect_codes_many(
                    [codes[p.codes] for p in live], [p.options for p in live])):
                p.out = out
        except Exception:
            for p in live:
                try:
                    p.out = runner.protect_codes(codes[p.codes], p.options)
                except Exception as e:
                    p.error = e
    live = [p for p in live if p.error is None]
    if not live:
        return [p.error for p in photos]
    # 4. generate every sample of every face of every photo together; the anonymized crops
    # go through their own passes, so the recovered ones do not depend on whether they exist.
    with timer("generate"):
        codes, rows = _stack_codes(live, "recovered")
        recovered = _generate(pipe, codes, chunk)
        extra = [p for p in live if anonymized_crops and p.out.anonymized is not None]
        anonymized = None
        if extra:
            codes, extra_rows = _stack_codes(extra, "anonymized")
            anonymized = _generate(pipe, codes, chunk)
            for p, r in zip(extra, extra_rows):
                p.anonymized = r
    for p, r in zip(live, rows):
        p.generated = r
    # 5. paste back per photo, then one copy of every output to the host
    with timer("paste"):
        for p in live:
            try:
                first = recovered[p.generated][:len(p.faces)]  # sample 0 of each face
                if aligned:
                    p.composed = lanczos_resize(first[0], p.photo.size)
                else:
                    p.composed = paste_faces(p.pixels, p.transforms, first, pipe.feather)
            except Exception as e:
                p.error = e
        live = [p for p in live if p.error is None]
        results = _assemble(photos, live, recovered, anonymized, aligned, timer.timings)
    return [p.error if p.error is not None else results[p.index] for p in photos]


def _load_and_align(pipe, p: _Photo, image: ImageSource, aligned: bool,
                    faces: Sequence[int] | None, timer) -> None:
    """Load one photo, send it to the device once, find and align its faces there."""
    with timer("load"):
        p.photo = load_image(image, max_pixels=pipe.max_pixels)
        if aligned:
            _check_square(p.photo)
        p.pixels = photo_tensor(p.photo, pipe.device)
    if aligned:
        p.found, p.faces, p.crops = 1, [(0, None, None)], p.pixels[None]
        return
    with timer("detect"):
        found = pipe.detector.locate(p.photo)
    if not found:
        raise NoFaceError(_no_face_message(pipe))
    p.found = len(found)
    p.faces = [(i, found[i][0], found[i][2]) for i in pipe._select(len(found), faces)]
    with timer("align"):
        p.crops, p.transforms = align_faces(p.pixels, [found[i][1] for i, _, _ in p.faces],
                                            pipe.detector.output_size)


def _check_square(photo: Image.Image) -> None:
    if abs(photo.width - photo.height) > 1:
        raise ValueError(f"an aligned face crop must be square, got {photo.width}×"
                         f"{photo.height}; pass the whole photo without aligned=True "
                         f"to detect and align faces")


def _no_face_message(pipe) -> str:
    return ("No face was found in this photo. Try a photo where the face is clearly visible "
            f"and at least {pipe.detector.min_face_size} pixels wide, or pass an aligned face "
            "crop with aligned=True (--aligned).")


def _stack_codes(photos: list[_Photo], which: str) -> tuple[torch.Tensor, list[slice]]:
    """The W+ codes to generate, photo after photo, and each photo's rows: every sample of
    the recovered codes (sample-major within a photo), or sample 0 of the anonymized ones."""
    parts, rows, start = [], [], 0
    for p in photos:
        codes = getattr(p.out, which)
        part = codes.reshape(-1, *codes.shape[2:]) if which == "recovered" else codes[0]
        rows.append(slice(start, start + part.shape[0]))
        start += part.shape[0]
        parts.append(part)
    return torch.cat(parts), rows


def _assemble(photos: list[_Photo], live: list[_Photo], recovered: torch.Tensor,
              anonymized: torch.Tensor | None, aligned: bool, timings: dict) -> dict:
    """Copy every composed photo and crop to the host at once; build the results."""
    def hwc(t: torch.Tensor) -> torch.Tensor:  # channels last, as PIL wants them
        return t.permute(*range(t.dim() - 3), -2, -1, -3)

    parts = []
    for p in live:
        parts.append(hwc(p.composed))
        parts.append(hwc(recovered[p.generated]))
        if not aligned:
            parts.append(hwc(p.crops))
        if p.anonymized is not None:
            parts.append(hwc(anonymized[p.anonymized]))
    host = iter(to_host_once(parts))
    results = {}
    for p in live:
        composed = Image.fromarray(next(host).numpy())
        generated = [Image.fromarray(a.numpy()) for a in next(host)]
        n, k = len(p.faces), p.out.recovered.shape[0]
        diverse = [[generated[s * n + j] for s in range(k)] for j in range(n)]  # sample-major
        recovered_crops = [d[0] for d in diverse]
        crops = [p.photo] if aligned else [Image.fromarray(a.numpy()) for a in next(host)]
        if p.out.anonymized is None:  # nothing recovered: s^N = s^M
            anonymized_crops = recovered_crops
        elif p.anonymized is not None:
            anonymized_crops = [Image.fromarray(a.numpy()) for a in next(host)]
        else:
            anonymized_crops = [None] * n
        face_results = [
            FaceResult(index=i, box=None if box is None else [float(v) for v in box],
                       score=None if score is None else float(score), aligned=crops[j],
                       anonymized=anonymized_crops[j], recovered=recovered_crops[j],
                       diverse=diverse[j])
            for j, (i, box, score) in enumerate(p.faces)]
        record = dict(p.out.record)
        record["faces_processed"] = [i for i, _, _ in p.faces]
        results[p.index] = PipelineResult(composed, face_results, record, timings, p.found)
    return results


def _protect_with_image_method(pipe, image: ImageSource, runner: ImageMethod,
                               opts: ProtectOptions, faces: Sequence[int] | None):
    """One photo through an image baseline, on the host."""
    timer = _Timer(pipe.device)
    with timer("load"):
        photo = load_image(image, max_pixels=pipe.max_pixels)
    with timer("detect"):
        found = pipe.detector.locate(photo)
    if not found:
        raise NoFaceError(_no_face_message(pipe))
    size = pipe.detector.output_size
    with timer("align"):
        detected = []
        for i in pipe._select(len(found), faces):
            box, points, score = found[i]
            crop, transform = align_face(photo, points, size)
            detected.append((i, Face(box=box, landmarks=points, score=score,
                                     transform=transform, aligned=crop)))
    with timer(runner.stage):
        composed, record = runner.protect_photo(photo, [f for _, f in detected], opts)
    face_results = []
    for i, f in detected:
        crop, _ = align_face(composed, f.landmarks, size)
        face_results.append(FaceResult(i, [float(v) for v in f.box], float(f.score),
                                       f.aligned, crop, crop, [crop]))
    record["faces_processed"] = [i for i, _ in detected]
    return PipelineResult(composed, face_results, record, timer.timings, len(found))


def _encode(pipe, crops: list[torch.Tensor], chunk: int) -> torch.Tensor:
    """W+ codes (float32) of every crop of every (n, 3, H, W) uint8 tensor, in order,
    ``chunk`` crops per encoder call."""
    flat = [c for group in crops for c in group]
    # Crops of different sizes (aligned inputs) cannot be stacked: one group per size.
    groups: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(flat):
        groups.setdefault(tuple(c.shape[1:]), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(flat)
    for idx in groups.values():
        pixels = torch.stack([flat[i] for i in idx])
        codes = torch.cat([pipe.backbone.encode(pipe.encoder.prepare(b.to(pipe.device)))
                           for b in pixels.split(chunk)])
        for i, c in zip(idx, codes):
            out[i] = c
    return torch.stack(out).float()


def _generate(pipe, codes: torch.Tensor, chunk: int) -> torch.Tensor:
    """(N, 3, G, G) uint8 images of W+ codes on the device, ``chunk`` per generator call,
    rounded as ``tensor_to_pil`` rounds."""
    return torch.cat([tensor_to_uint8(pipe.backbone.decode(c.to(pipe.device),
                                                           output_size=pipe.output_size))
                      for c in codes.split(chunk)])
