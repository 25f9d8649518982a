"""Image feature networks for FID: configuration, so tests can pass a small one.

Each takes a list of same-sized RGB face crops and returns (N, D) features. The default is
torchmetrics' FID Inception (the standard pool3 2048-d features; needs torch-fidelity and its
weights, which it downloads from GitHub on first use or reads from ``weights_path``).
"""

from __future__ import annotations

import os
import tempfile
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..scorers import KeywordEncoder, WeightsUnavailableError
from ..image.io import pil_to_tensor

__all__ = ["InceptionFeatures", "ClipImageFeatures"]


def _uint8_batch(crops: Sequence[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(c.convert("RGB"), dtype=np.uint8).copy())
                        .permute(2, 0, 1) for c in crops])


def _tensors_only_copy(path: str, folder: str) -> str:
    """torch-fidelity reads a weights file with full unpickling; read it here with
    ``weights_only=True`` and hand it a file we wrote from the plain tensors instead."""
    if not os.path.isfile(path):
        raise WeightsUnavailableError(f"FID Inception weights {path} not found: pass the path "
                                      f"of torch-fidelity's pt_inception-2015-12-05 file with "
                                      f"--fid-weights, or choose --fid-features clip")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path} is not a state dict of tensors")
    copy = os.path.join(folder, "inception.pt")
    torch.save(state, copy)
    return copy


class InceptionFeatures:
    """torchmetrics' ``FrechetInceptionDistance`` feature network (InceptionV3, FID weights).

    Args:
        feature: 64, 192, 768 or 2048 (the pool3 features of the FID papers).
        weights_path: a local copy of torch-fidelity's ``pt_inception-2015-12-05`` weights
            (offline machines); None lets torch-fidelity fetch them.
        device: where the network runs.
    """

    def __init__(self, feature: int = 2048, weights_path: str | None = None,
                 device: str | torch.device = "cpu"):
        with tempfile.TemporaryDirectory() as tmp:
            safe = None if weights_path is None else _tensors_only_copy(weights_path, tmp)
            metric = self._build(feature, safe)
        self.device = torch.device(device)
        self.network = metric.inception.to(self.device).eval()
        self.name = f"inception-v3-fid-{feature}"

    @staticmethod
    def _build(feature: int, weights_path: str | None):
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance

            return FrechetInceptionDistance(feature=feature,
                                            feature_extractor_weights_path=weights_path)
        except ModuleNotFoundError as e:
            raise WeightsUnavailableError(f"the FID Inception network cannot be built: {e} "
                                          f"(it needs torch-fidelity and, offline, a local copy "
                                          f"of its weights: --fid-weights)") from e
        except Exception as e:  # network errors come as URLError, OSError, HTTPError …
            raise WeightsUnavailableError(
                f"could not load the FID Inception weights ({e}). Without internet access, "
                f"download torch-fidelity's pt_inception-2015-12-05 weights on a connected "
                f"machine and pass their path (--fid-weights), or choose --fid-features clip"
            ) from e

    def to(self, device: str | torch.device) -> "InceptionFeatures":
        self.device = torch.device(device)
        self.network.to(self.device)
        return self

    @torch.inference_mode()
    def __call__(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        return self.network(_uint8_batch(crops).to(self.device)).double().cpu()


class ClipImageFeatures:
    """CLIP image embeddings as FID features (a documented alternative, and how tests use a
    tiny CLIP); numbers are not comparable with Inception FIDs."""

    def __init__(self, clip: KeywordEncoder):
        self.clip = clip
        self.name = f"clip-{clip.model_name}"

    @torch.inference_mode()
    def __call__(self, crops: Sequence[Image.Image]) -> torch.Tensor:
        batch = torch.stack([pil_to_tensor(c) for c in crops])
        return self.clip.encode_image(batch).double().cpu()
