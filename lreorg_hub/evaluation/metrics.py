"""The evaluation metrics of SPEC §6 as pure functions of embeddings, labels and flags.

Each function takes what a scorer produced (identity embeddings, CLIP labels, detector boxes,
image features) and returns a number, so the definitions can be checked on hand-built cases
without any network. ``runner.py`` produces the inputs from photos.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

__all__ = ["identity_similarity", "protection_success_rate", "detection_rate",
           "zero_shot_labels", "attribute_preservation_rate", "recovery_rate", "frechet_distance", "similarity_summary", "MIN_FID_IMAGES",
           "fid_sample_warning"]

#: Below this many images FID is strongly biased (it grows as the sample shrinks) and noisy;
#: the report warns. 2,000 is the CelebA-HQ test split's order of size the paper reports on.
MIN_FID_IMAGES = 2000


def fid_sample_warning(count: int) -> str | None:
    """The report's warning when FID rests on fewer than ``MIN_FID_IMAGES`` faces (None when
    there are enough, or fewer than two: then there is no FID at all)."""
    if not 2 <= count < MIN_FID_IMAGES:
        return None
    return (f"FID is computed on {count} face(s), fewer than {MIN_FID_IMAGES:,}: it is biased "
            f"upwards and noisy at this size; compare FIDs only between runs on the same "
            f"photos")


def identity_similarity(original: torch.Tensor, protected: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of paired identity embeddings (N, D) × (N, D) → (N,)."""
    original = torch.nn.functional.normalize(original.double(), dim=-1)
    protected = torch.nn.functional.normalize(protected.double(), dim=-1)
    return (original * protected).sum(dim=-1)


def protection_success_rate(similarities: Sequence[float] | torch.Tensor,
                            threshold: float) -> float | None:
    """PSR: the share of outputs the recognizer does NOT match to their original.

    A pair is a match when its cosine similarity reaches the recognizer's verification
    threshold (sim >= threshold); PSR = (#pairs with sim < threshold) / #pairs. None when
    there are no pairs.
    """
    sims = torch.as_tensor(similarities, dtype=torch.float64).flatten()
    if sims.numel() == 0:
        return None
    return float((sims < threshold).double().mean())


def detection_rate(detected: Sequence[bool]) -> float | None:
    """Detection rate: share of output faces in which the detector finds a face."""
    if len(detected) == 0:
        return None
    return float(np.mean([bool(d) for d in detected]))


def zero_shot_labels(probabilities: torch.Tensor) -> list[int]:
    """CLIP zero-shot label: the sub-category with the largest D(I, t_j), per image."""
    return [int(i) for i in probabilities.argmax(dim=-1).tolist()]


def attribute_preservation_rate(before: dict[str, Sequence[int]],
                                after: dict[str, Sequence[int]]) -> tuple[float | None,
                                                                          dict[str, float]]:
    """APR: share of (face, preserved keyword) pairs whose zero-shot label is unchanged.

    ``before`` / ``after`` map each preserved keyword to the labels of the input and output
    faces (same order). Returns (overall APR over all pairs, APR per keyword).
    """
    per_keyword, hits, total = {}, 0, 0
    for keyword, labels in before.items():
        out = after[keyword]
        if len(out) != len(labels):
            raise ValueError(f"{keyword}: {len(labels)} input labels but {len(out)} output labels")
        if not labels:
            continue
        same = sum(int(a == b) for a, b in zip(labels, out))
        per_keyword[keyword] = same / len(labels)
        hits, total = hits + same, total + len(labels)
    return (hits / total if total else None), per_keyword


def recovery_rate(matches: Sequence[bool]) -> float | None:
    """Recovery rate of one keyword (paper Table 8): share of faces whose recovered output
    matches the original (same zero-shot label; for identity, a recognizer match)."""
    if len(matches) == 0:
        return None
    return float(np.mean([bool(m) for m in matches]))


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float | None:
    """FID between two sets of image features (N, D), computed by torchmetrics'
    ``FrechetInceptionDistance`` (its feature network given as a pass-through over features
    already extracted, so features can be stored per image and the run resumed).

    None when either set has fewer than two samples (no covariance).
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    if real.shape[0] < 2 or fake.shape[0] < 2:
        return None
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: {real.shape[1]} vs {fake.shape[1]}")
    metric = FrechetInceptionDistance(feature=_StoredFeatures(real.shape[1]),
                                      reset_real_features=False)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())


class _StoredFeatures(torch.nn.Module):
    """torchmetrics' FID runs its ``feature`` module on what ``update`` gets; the runner
    extracts features once per face with the configured network, so this one passes them on."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = int(num_features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def similarity_summary(similarities: Sequence[float], bins: int = 20) -> dict:
    """The identity-similarity distribution: quantiles and a histogram over [-1, 1]."""
    sims = np.asarray(list(similarities), dtype=np.float64)
    if sims.size == 0:
        return {"count": 0}
    counts, edges = np.histogram(sims, bins=bins, range=(-1.0, 1.0))
    q = np.quantile(sims, [0.05, 0.25, 0.5, 0.75, 0.95])
    return {"count": int(sims.size), "mean": float(sims.mean()), "std": float(sims.std()),
            "min": float(sims.min()), "max": float(sims.max()),
            "quantiles": dict(zip(["p05", "p25", "p50", "p75", "p95"], map(float, q))),
            "histogram": {"edges": [float(e) for e in edges],
                          "counts": [int(c) for c in counts]}}
