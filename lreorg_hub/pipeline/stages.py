"""The stages of protecting a face, each one small function the runners compose:

    detect → align → encode → protect (the method) → generate → paste → cover

The photo runner (``runner.py``) runs them over a batch of photos; a video runner can run
the same stages frame by frame and keep its own state per face (a track) between them.
Tensors stay on the pipeline's device from ``align`` to ``paste``; ``cover`` (the classical
fallback for faces too small to regenerate) works on the host images at the end.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..image.faces import AlignTransform, Detection, FaceDetector, align_faces, paste_faces
from ..image.io import tensor_to_uint8

__all__ = ["detect", "split_by_size", "select", "align", "encode", "generate", "paste",
           "cover", "FALLBACKS"]


def detect(detector: FaceDetector, photo: Image.Image) -> list[Detection]:
    """Every face the detector finds in the photo, left to right."""
    return detector.locate(photo)


def select(count: int, faces: Sequence[int] | None) -> list[int]:
    """The chosen face indices (all when ``faces`` is None), each checked against ``count``."""
    if faces is None:
        return list(range(count))
    for i in faces:
        if i >= count:
            raise ValueError(f"face index {i!r} is out of range: {count} face(s) were "
                             f"found, numbered 0..{count - 1} from left to right")
    return list(faces)


def split_by_size(detections: Sequence[Detection], indices: Sequence[int],
                  min_size: float) -> tuple[list[int], list[int]]:
    """(faces to regenerate, faces too small to regenerate): a face whose box has a shorter
    side below ``min_size`` pixels cannot be encoded and generated faithfully, so it is
    covered by the fallback instead."""
    large = [i for i in indices if detections[i].size >= min_size]
    small = [i for i in indices if detections[i].size < min_size]
    return large, small


def align(pixels: torch.Tensor, detections: Sequence[Detection],
          size: int) -> tuple[torch.Tensor, list[AlignTransform]]:
    """(N, 3, S, S) uint8 crops on the photo's device, and each crop's transform."""
    return align_faces(pixels, [d.landmarks for d in detections], size)


def encode(backbone, encoder, crops: list[torch.Tensor], chunk: int,
           device: torch.device) -> torch.Tensor:
    """W+ codes (float32) of every crop of every (n, 3, H, W) uint8 tensor, in order,
    ``chunk`` crops per encoder call (latent_avg included)."""
    flat = [c for group in crops for c in group]
    if not flat:  # every face was too small to regenerate
        return torch.zeros((0, encoder.n_styles, encoder.style_dim), device=device)
    # Crops of different sizes (aligned inputs) cannot be stacked: one group per size.
    groups: dict[tuple[int, int], list[int]] = {}
    for i, c in enumerate(flat):
        groups.setdefault(tuple(c.shape[1:]), []).append(i)
    out: list[torch.Tensor | None] = [None] * len(flat)
    for idx in groups.values():
        pixels = torch.stack([flat[i] for i in idx])
        codes = torch.cat([backbone.encode(encoder.prepare(b.to(device)))
                           for b in pixels.split(chunk)])
        for i, c in zip(idx, codes):
            out[i] = c
    return torch.stack(out).float()


def generate(backbone, codes: torch.Tensor, chunk: int, device: torch.device,
             output_size: int | None) -> torch.Tensor:
    """(N, 3, G, G) uint8 images of W+ codes on the device, ``chunk`` per generator call,
    rounded as ``tensor_to_pil`` rounds; constant noise, so a seed reproduces the output."""
    if codes.shape[0] == 0:
        size = output_size or backbone.generator.size
        return torch.zeros((0, 3, size, size), dtype=torch.uint8, device=device)
    return torch.cat([tensor_to_uint8(backbone.decode(c.to(device), output_size=output_size))
                      for c in codes.split(chunk)])


def paste(pixels: torch.Tensor, transforms: Sequence[AlignTransform],
          generated: torch.Tensor, feather: float) -> torch.Tensor:
    """The photo (3, H, W) uint8 with the generated crops pasted back (feathered)."""
    if not transforms:
        return pixels.clone()
    return paste_faces(pixels, transforms, generated, feather)


#: The classical fallback for faces too small to regenerate: a strong blur or an opaque
#: mask over the box grown by a quarter on each side (a small face's box is tight).
FALLBACKS = {"blur": dict(strength=0.5, margin=0.25), "mask": dict(strength=1.0, margin=0.25)}


def cover(image: Image.Image, detections: Sequence[Detection], rule: str) -> Image.Image:
    """The photo with each detection covered by the fallback ``rule`` ("blur", "mask"; "keep"
    leaves them as they are)."""
    if rule == "keep" or not detections:
        return image
    from ..image.baselines import get_baseline

    return get_baseline(rule, **FALLBACKS[rule])(np.asarray(image), list(detections))
