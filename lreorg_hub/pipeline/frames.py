"""The stages over a batch of video frames whose faces the tracker has placed: what the file
runner's two passes (``video.py``) and the live session (``live.py``) share.

A face in a frame is *regenerated* when the tracker gave it landmarks (detected, or predicted
between detections), it is at least ``min_face_size`` pixels, its alignment is possible and —
for one draw per track — its track has a draw; otherwise it is *covered* by the classical
fallback over its (predicted) box, never left clear. Tensors stay on the pipeline's device
from the frame's one upload to the paste; the batch comes back to the host in one copy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..image.io import photo_tensor, to_host_once
from . import stages
from .methods import ImageMethod, LatentMethod
from .options import ProtectOptions
from .tracking import TrackedFace

__all__ = ["REGENERATED", "COVERED_MISSED", "COVERED_SMALL", "COVERED_UNDRAWN", "OBFUSCATED",
           "encode_faces", "render_frames", "missed_rule"]

# What happened to a face in a frame (the record counts them per track).
REGENERATED = "regenerated"          # the method replaced it
COVERED_MISSED = "covered-missed"    # the detector missed it: predicted box, fallback
COVERED_SMALL = "covered-small"      # smaller than min_face_size: the small-face rule
COVERED_UNDRAWN = "covered-undrawn"  # its track has no draw (never seen large enough)
OBFUSCATED = "obfuscated"            # an image baseline (blur, pixelate, mask) covered it


def missed_rule(options: ProtectOptions) -> str:
    """The fallback for a face without landmarks: the small-face rule, but never "keep" (a
    face the detector missed for a frame is covered, not shown)."""
    return options.small_faces if options.small_faces in ("blur", "mask") else "blur"


def _regenerable(pipe, face: TrackedFace) -> bool:
    return face.landmarks is not None and face.size >= pipe.min_face_size


def _align(pipe, pixels: torch.Tensor, faces: Sequence[TrackedFace]):
    """Crops and transforms of the faces that can be aligned (an alignment square wholly
    outside the frame cannot), and the faces that could not."""
    crops, transforms, kept, failed = [], [], [], []
    for face in faces:
        try:
            crop, (transform,) = stages.align(pixels, [face.detection()],
                                              pipe.detector.output_size)
        except ValueError:
            failed.append(face)
            continue
        crops.append(crop)
        transforms.append(transform)
        kept.append(face)
    stacked = torch.cat(crops) if crops else None
    return stacked, transforms, kept, failed


def encode_faces(pipe, images: Sequence[np.ndarray], faces: Sequence[Sequence[TrackedFace]],
                 chunk: int, *, only: Callable[[TrackedFace], bool] = lambda f: True
                 ) -> tuple[list[tuple[int, TrackedFace]], torch.Tensor]:
    """Every regenerable face of the batch (those ``only`` keeps) aligned and encoded:
    ([(frame position in the batch, face)], W+ codes (N, L, D) on the device)."""
    keys, crops = [], []
    for i, (image, frame_faces) in enumerate(zip(images, faces)):
        chosen = [f for f in frame_faces if _regenerable(pipe, f) and only(f)]
        if not chosen:
            continue
        stacked, _, kept, _ = _align(pipe, photo_tensor(image, pipe.device), chosen)
        if stacked is not None:
            keys.extend((i, f) for f in kept)
            crops.append(stacked)
    return keys, stages.encode(pipe.backbone, pipe.encoder, crops, chunk, pipe.device)


def render_frames(pipe, runner, options: ProtectOptions, images: Sequence[np.ndarray],
                  faces: Sequence[Sequence[TrackedFace]], chunk: int, *,
                  identities: dict | None = None, seeds: Callable | None = None
                  ) -> tuple[list[np.ndarray], list[dict[int, str]], object]:
    """Protect the faces of a batch of frames.

    identities: track → its replacement (one draw per track; a track without one is
    covered). seeds: (batch position, track) → coins of a fresh draw for that face in that
    frame (the per-frame ablation). Neither: the method's own deterministic run (no identity
    anonymized, or an image baseline).

    Returns (the protected frames (H, W, 3) uint8, per frame {track: what happened}, the
    method's record of this batch or None when no face was processed).
    """
    if isinstance(runner, ImageMethod):
        return _render_with_image_method(runner, options, images, faces)
    fates: list[dict[int, str]] = [{} for _ in images]
    regenerate: list[list[TrackedFace]] = [[] for _ in images]
    for i, frame_faces in enumerate(faces):
        for f in frame_faces:
            if f.landmarks is None:
                fates[i][f.track] = COVERED_MISSED
            elif f.size < pipe.min_face_size:
                fates[i][f.track] = COVERED_SMALL
            elif identities is not None and f.track not in identities:
                fates[i][f.track] = COVERED_UNDRAWN
            else:
                regenerate[i].append(f)
    pixels = {i: photo_tensor(images[i], pipe.device) for i, r in enumerate(regenerate) if r}
    aligned = {}
    for i, p in pixels.items():
        stacked, transforms, kept, failed = _align(pipe, p, regenerate[i])
        for f in failed:
            fates[i][f.track] = COVERED_MISSED
        if stacked is not None:
            aligned[i] = (stacked, transforms, kept)
    record, outputs = None, {}
    if aligned:
        order = sorted(aligned)
        codes = stages.encode(pipe.backbone, pipe.encoder, [aligned[i][0] for i in order],
                              chunk, pipe.device)
        keys = [(i, f) for i in order for f in aligned[i][2]]
        out = _protect(runner, options, codes, keys, identities, seeds)
        record = out.record
        generated = stages.generate(pipe.backbone, out.recovered[0], chunk, pipe.device,
                                    pipe.output_size)
        start = 0
        for i in order:
            _, transforms, kept = aligned[i]
            crops = generated[start:start + len(kept)]
            start += len(kept)
            outputs[i] = stages.paste(pixels[i], transforms, crops, pipe.feather)
            for f in kept:
                fates[i][f.track] = REGENERATED
    host = dict(zip(outputs, to_host_once([c.permute(1, 2, 0) for c in outputs.values()])))
    frames = []
    for i, image in enumerate(images):
        out = host[i].numpy() if i in host else image
        frames.append(_cover(out, faces[i], fates[i], options))
    return frames, fates, record


def _protect(runner: LatentMethod, options: ProtectOptions, codes: torch.Tensor, keys,
             identities: dict | None, seeds: Callable | None):
    if identities is not None:
        fixed = torch.stack([identities[f.track] for _, f in keys])
        return runner.protect_codes(codes, replace(options, seed=None), fixed)
    if seeds is not None:
        outs = runner.protect_codes_many(
            [codes[k:k + 1] for k in range(len(keys))],
            [replace(options, seed=seeds(i, f.track)) for i, f in keys])
        recovered = torch.cat([o.recovered for o in outs], dim=1)
        return replace(outs[0], recovered=recovered)
    return runner.protect_codes(codes, options)


def _cover(image: np.ndarray, faces: Sequence[TrackedFace], fates: dict[int, str],
           options: ProtectOptions) -> np.ndarray:
    """The frame with every face that was not regenerated covered: small ones by the
    small-face rule, the others (missed, undrawn) by :func:`missed_rule`."""
    small = [f.detection() for f in faces if fates.get(f.track) == COVERED_SMALL]
    other = [f.detection() for f in faces
             if fates.get(f.track) in (COVERED_MISSED, COVERED_UNDRAWN)]
    if not small and not other:
        return np.asarray(image)
    photo = Image.fromarray(np.ascontiguousarray(image))
    photo = stages.cover(photo, small, options.small_faces)
    photo = stages.cover(photo, other, missed_rule(options))
    return np.asarray(photo)


def _render_with_image_method(runner: ImageMethod, options: ProtectOptions,
                              images: Sequence[np.ndarray],
                              faces: Sequence[Sequence[TrackedFace]]):
    """Blur / pixelate / mask every live track's box, predicted and missed ones included."""
    frames, fates, record = [], [], None
    for image, frame_faces in zip(images, faces):
        if not frame_faces:
            frames.append(image)
            fates.append({})
            continue
        composed, record = runner.protect_photo(Image.fromarray(np.ascontiguousarray(image)),
                                                [f.detection() for f in frame_faces], options)
        frames.append(np.asarray(composed))
        fates.append({f.track: OBFUSCATED for f in frame_faces})
    return frames, fates, record
