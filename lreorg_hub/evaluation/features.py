"""Image feature networks for FID: configuration, so tests can pass a small one.

Each takes a list of same-sized RGB face crops and returns (N, D) features. The default is
torchmetrics' FID Inception (the standard pool3 2048-d features; needs torch-fidelity and its
weights, which it downloads from GitHub on first use or reads from ``weights_path``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..encoders import KeywordEncoder, WeightsUnavailableError
from ..imaging import pil_to_tensor

__all__ = ["InceptionFeatures", "ClipImageFeatures"]


def _uint8_batch(crops: Sequence[Image.Image]) -> torch.Tensor:
    return torch.stack([torch.from_numpy(np.asarray(c.convert("RGB"), dtype=np.uint8).copy())
                        .permute(2, 0, 1) for c in crops])


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
        try:
            from torchmetrics.image.fid import FrechetInceptionDistance

            metric = FrechetInceptionDistance(feature=feature,
                                              feature_extractor_weights_path=weights_path)
        except ModuleNotFoundError as e:
            raise WeightsUnavailableError(f"the FID Inception network needs torch-fidelity "
                                          f"(pip install torch-fidelity): {e}") from e
        except Exception as e:  # network errors come as URLError, OSError, HTTPError …
            raise WeightsUnavailableError(
                f"could not load the FID Inception weights ({e}); this machine looks offline. "
                f"Download torch-fidelity's pt_inception-2015-12-05 weights on a connected "
                f"machine and pass their path (--fid-weights), or choose --fid-features clip"
            ) from e
        self.device = torch.device(device)
        self.network = metric.inception.to(self.device).eval()
        self.name = f"inception-v3-fid-{feature}"

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
