"""Many photos at once: the faces of every photo, and every diverse sample, go through the
encoder and the generator together in chunks of ``batch_size``.

``run_batch(pipe, images, seeds=...)`` gives, in input order, what ``pipe(image, seed=...)``
gives for each photo (a ``PipelineResult``), or the exception that photo raised: one bad photo
never stops the batch. Each photo keeps its own seed and so its own DP draw; only the
backbone passes are shared. ``LReOrgPipeline.run_batch`` calls this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import torch
from PIL import Image

from .faces import Face, align_face, paste_back_all
from .imaging import ImageSource, as_rgb_array, load_image, tensor_to_pil
from .methods import ImageMethod, ProtectOptions

__all__ = ["run_batch"]


@dataclass
class _Photo:
    """One photo's state between the batched stages."""

    index: int
    photo: Image.Image | None = None
    found: int = 0
    faces: list[tuple[int, Face | None]] = field(default_factory=list)  # (detector index, face)
    codes: slice | None = None                 # its rows of the batch's W+ codes
    out: object = None                         # ReorganizeResult
    error: Exception | None = None


def _sync(device: torch.device) -> None:
    # Kernels on CUDA run asynchronously: a stage's time is only real after a sync.
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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
    from .pipeline import FaceResult, NoFaceError, PipelineResult

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
    runner = pipe.methods[method]
    chunk = pipe.batch_size if batch_size is None else batch_size
    if isinstance(chunk, bool) or int(chunk) != chunk or chunk < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    chunk = int(chunk)
    if isinstance(runner, ImageMethod):  # no backbone work to share
        results = []
        for image, o in zip(images, per_photo):
            try:
                results.append(pipe(image, method=method, options=o, faces=faces))
            except Exception as e:  # one photo never stops the batch
                results.append(e)
        return results
    timings: dict[str, float] = {}

    def timed(stage, fn, *args):
        _sync(pipe.device)
        start = time.perf_counter()
        value = fn(*args)
        _sync(pipe.device)
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start
        return value

    photos = [_Photo(i) for i in range(len(images))]
    # 1. load, detect, align (per photo: MTCNN and the warps work photo by photo)
    crops: list[Image.Image] = []
    for p, image in zip(photos, images):
        try:
            p.photo = timed("load", load_image, image, pipe.max_pixels)
            if aligned:
                if abs(p.photo.width - p.photo.height) > 1:
                    raise ValueError(f"an aligned face crop must be square, got "
                                     f"{p.photo.width}×{p.photo.height}")
                p.found, p.faces, face_crops = 1, [(0, None)], [p.photo]
            else:
                found = timed("detect", pipe.detector.locate, p.photo)
                if not found:
                    raise NoFaceError("No face was found in this photo.")
                p.found = len(found)
                face_crops = []
                for i in pipe._select(len(found), faces):
                    box, points, score = found[i]
                    crop, transform = timed("align", align_face, p.photo, points,
                                            pipe.detector.output_size)
                    p.faces.append((i, Face(box=box, landmarks=points, score=score,
                                            transform=transform, aligned=crop)))
                    face_crops.append(crop)
            p.codes = slice(len(crops), len(crops) + len(face_crops))
            crops.extend(face_crops)
        except Exception as e:  # unreadable, no face, too large…: that photo's result
            p.error = e
    live = [p for p in photos if p.error is None]
    if not live:
        return [p.error for p in photos]
    # 2. encode every face of every photo together
    codes = timed("encode", _encode, pipe, crops, chunk)
    # 3. the latent method per photo (its own seed: its own generator and DP draw)
    for p in live:
        try:
            p.out = timed(runner.stage, runner.protect_codes, codes[p.codes],
                          per_photo[p.index])
        except Exception as e:
            p.error = e
    live = [p for p in live if p.error is None]
    # 4. generate every sample of every face of every photo together
    flat = [p.out.recovered.reshape(-1, *p.out.recovered.shape[2:]) for p in live]
    extra = [p.out.anonymized[0] for p in live
             if anonymized_crops and p.out.anonymized is not None]
    all_codes = torch.cat(flat + extra) if live else codes[:0]
    images_out = timed("generate", _generate, pipe, all_codes, chunk)
    # 5. paste back and assemble, per photo
    results: list = []
    pos, pos_extra = 0, sum(f.shape[0] for f in flat)
    for p in photos:
        if p.error is not None:
            results.append(p.error)
            continue
        n, k = len(p.faces), p.out.recovered.shape[0]
        mine = images_out[pos:pos + n * k]
        pos += n * k
        diverse = [[mine[s * n + j] for s in range(k)] for j in range(n)]  # sample-major
        recovered = [d[0] for d in diverse]
        if p.out.anonymized is None:  # nothing recovered: s^N = s^M
            anonymized = recovered
        elif anonymized_crops:
            anonymized = images_out[pos_extra:pos_extra + n]
            pos_extra += n
        else:
            anonymized = [None] * n
        try:
            if aligned:
                composed = timed("paste", recovered[0].resize, p.photo.size, Image.LANCZOS)
                face_results = [FaceResult(0, None, None, p.photo, anonymized[0],
                                           recovered[0], diverse[0])]
            else:
                composed = timed("paste", paste_back_all, p.photo, [f for _, f in p.faces],
                                 recovered, pipe.feather)
                face_results = [FaceResult(i, [float(v) for v in f.box], float(f.score),
                                           f.aligned, anonymized[j], recovered[j], diverse[j])
                                for j, (i, f) in enumerate(p.faces)]
        except Exception as e:
            results.append(e)
            continue
        record = dict(p.out.record)
        record["faces_processed"] = [i for i, _ in p.faces]
        results.append(PipelineResult(composed, face_results, record, timings, p.found))
    return results


def _encode(pipe, crops: list[Image.Image], chunk: int) -> torch.Tensor:
    """W+ codes of every crop, ``chunk`` crops per encoder call (as ``pipe.encode``)."""
    if not crops:
        return torch.empty(0, pipe.generator.n_latent, pipe.generator.style_dim)
    # Crops of different sizes (aligned inputs) cannot be stacked: one group per size.
    groups: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(crops):
        groups.setdefault(c.size, []).append(i)
    out: list[torch.Tensor | None] = [None] * len(crops)
    for idx in groups.values():
        pixels = torch.stack([torch.from_numpy(as_rgb_array(crops[i])).permute(2, 0, 1)
                              for i in idx])
        codes = torch.cat([pipe.backbone.encode(pipe.encoder.prepare(b.to(pipe.device)))
                           for b in pixels.split(chunk)])
        for i, c in zip(idx, codes):
            out[i] = c
    return torch.stack(out).float()


def _generate(pipe, codes: torch.Tensor, chunk: int) -> list[Image.Image]:
    """Images of W+ codes, ``chunk`` per generator call (as ``pipe.generate``)."""
    images: list[Image.Image] = []
    for c in codes.split(chunk):
        out = pipe.backbone.decode(c.to(pipe.device), output_size=pipe.output_size)
        images.extend(tensor_to_pil(img) for img in out)
    return images
