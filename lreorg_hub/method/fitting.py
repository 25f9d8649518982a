"""Fitting GIA and KAA on latents (SPEC §4): synthetic codes only.

The GIA member bank is published with the bundle, so it must hold synthetic identities:
``check_synthetic_codes`` refuses W+ codes whose rows differ, which is what encoder (e4e)
codes of photos look like. Sampling the codes and labelling them with CLIP live in
``lreorg_hub.training.fitting``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import keywords as kw

__all__ = ["SyntheticCodesError", "check_synthetic_codes", "fit_identity_anonymizer",
           "fit_attribute_anonymizer"]


class SyntheticCodesError(ValueError):
    """Codes that are not mapping-network samples were given for a published member bank."""


def check_synthetic_codes(codes: Tensor) -> Tensor:
    """Accept W codes (N, D) or W+ codes (N, L, D) whose rows are all equal; refuse the rest.

    The anonymizer statistics (GIA's member bank above all) are published with the bundle and
    must describe synthetic identities only. Encoder codes of photos have distinct rows.
    """
    if codes.dim() == 2:
        return codes
    if codes.dim() == 3 and bool((codes == codes[:, :1]).all()):
        return codes
    raise SyntheticCodesError(
        "these codes have W+ rows that differ, as encoder (e4e) codes of photos do: the "
        "anonymizer member bank is published with the bundle and must hold synthetic "
        "identities only. Sample latents from the generator's mapping network instead "
        "(lreorg_hub.training.fitting.sample_mapping_codes, or `lreorg fit-anonymizers`).")


def _features(model, codes: Tensor, keyword: str, batch_size: int) -> Tensor:
    return torch.cat([model.disentangle(c, keyword)[0].float().cpu()
                      for c in codes.split(batch_size)])


@torch.no_grad()
def fit_identity_anonymizer(model, codes: Tensor, iterations: int = 50,
                            generator: torch.Generator | None = None, batch_size: int = 1024):
    """GIA fitting: identity key features of mapping-network codes, k-means into m groups.

    k-means runs on the CPU with ``generator`` (a CPU torch.Generator; OS entropy when None).
    """
    features = _features(model, check_synthetic_codes(codes), kw.IDENTITY, batch_size)
    return model.identity_anonymizer.fit(features, iterations, generator)


@torch.no_grad()
def fit_attribute_anonymizer(model, keyword: str, codes: Tensor, labels: Tensor,
                             batch_size: int = 1024):
    """KAA fitting: average the keyword's key features per sub-category label (N,)."""
    name = kw.get(keyword, model.keywords).name
    if name == kw.IDENTITY:
        raise ValueError("identity is anonymized by GIA: use fit_identity_anonymizer")
    features = _features(model, check_synthetic_codes(codes), name, batch_size)
    return model.attribute_anonymizer(name).fit(features, labels.cpu())
