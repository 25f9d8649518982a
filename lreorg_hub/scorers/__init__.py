"""Pretrained scorers: conditions, losses and judges (CLIP, facenet).

- :class:`KeywordEncoder`: open_clip CLIP. Text embeddings of keyword words (the CDFNet
  condition k^f, SPEC §2) and the zero-shot distribution D(I, t_j) over a keyword's
  sub-category prompts (KAA fitting, the L_s loss and APR, SPEC §4–6).
- :class:`IdentityEncoder`: facenet-pytorch InceptionResnetV1 (VGGFace2). Identity embeddings
  and cosine distance (L_I, PSR) and intermediate feature maps (the perceptual loss L_p).

Both take images as float tensors (N, 3, H, W) in [-1, 1] of any size and do their own resizing
and normalisation with differentiable torch ops, so they can sit inside a training loss.
Their weights are frozen (requires_grad False) and they stay in eval mode; gradients still flow
to the input images.

Weights: ``pretrained`` is a known name (open_clip tag / ``"vggface2"``), a local file path, or
``None`` for random weights (tests, timing). Nothing is downloaded when the Hub is in offline
mode (``HF_HUB_OFFLINE=1``); a missing file raises :class:`WeightsUnavailableError` that says
what was wanted and how to supply a local file.

Layer 2. May import: ``lreorg_hub.method`` (keywords), ``lreorg_hub.image.io``, torch,
open_clip, facenet-pytorch. Used by training and evaluation, and by the app for its identity
similarity; inference needs neither (keyword embeddings are stored in the bundle).
"""

from __future__ import annotations

import importlib

_EXPORTS = {"KeywordEncoder": "clip", "IdentityEncoder": "facenet",
            "WeightsUnavailableError": "weights", "DEFAULT_CLIP_MODEL": "defaults",
            "DEFAULT_CLIP_PRETRAINED": "defaults", "DEFAULT_APR_CLIP": "defaults",
            "FACENET_WEIGHTS": "defaults", "FFHQ_FACE_CROP": "defaults"}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):  # lazy: `lreorg_hub.scorers.defaults` needs no torch
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
