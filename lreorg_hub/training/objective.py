"""The differentiable part of a swap-training step (SPEC §5), as one ``nn.Module``.

``SwapObjective.forward(keyword, s1, s2)`` splits both halves with CDFNet, swaps the key
features, fuses, renders I = G(s) and I′ = G(s′), scores them and returns the objective and
its terms. Only CDFNet (and the keyword embeddings when they are trained) are parameters of
this module; the generator, facenet and CLIP are held outside the module tree, so a
data-parallel wrapper (``accelerate``'s DDP) synchronises exactly the trained weights and
never broadcasts the frozen networks.

Mixed precision covers only the frozen generator and scorers (``torch.autocast``, bf16 or
fp16); CDFNet always runs in float32, because its exact invertibility depends on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..method import keywords as kw
from . import losses as L

__all__ = ["SwapObjective", "Frozen", "roundtrip_error", "mode_of", "AUTOCAST_DTYPES"]

#: mixed_precision → the autocast dtype of the frozen networks (None: float32 throughout).
AUTOCAST_DTYPES = {"no": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def mode_of(keyword: str) -> str:
    """"IOS" for identity, "AOS" for every other keyword."""
    return "IOS" if keyword == kw.IDENTITY else "AOS"


@dataclass
class Frozen:
    """The frozen networks a step renders and scores with (not parameters of the objective)."""

    generator: nn.Module
    identity_encoder: nn.Module
    clip: nn.Module


def roundtrip_error(cdfnet: nn.Module, codes: Tensor, conditions: Tensor) -> float:
    """max |CDFNet⁻¹(CDFNet(s, k), k) − (0, s)| over the codes and every condition row."""
    worst = 0.0
    with torch.no_grad():
        for k in conditions:
            f, r = cdfnet(codes, k)
            delta, s_hat = cdfnet.inverse(f, r, k)
            worst = max(worst, float(delta.abs().max()), float((s_hat - codes).abs().max()))
    return worst


class SwapObjective(nn.Module):
    """L_IOS / L_AOS of one batch of pairs, differentiable in CDFNet (and the embeddings).

    Args:
        cdfnet: the bundle's CDFNet (trained).
        embeddings: the keyword condition vectors, (K, cond_dim); an ``nn.Parameter`` when
            they are trained (then a parameter of this module), a plain tensor otherwise.
        keywords: the bundle's keyword names, in the row order of ``embeddings``.
        frozen: the generator and scorers.
        config: the ``TrainingConfig`` (image size, noise, weights, reduction, precision).
    """

    def __init__(self, cdfnet: nn.Module, embeddings: Tensor, keywords: list[str],
                 frozen: Frozen, config):
        super().__init__()
        self.cdfnet = cdfnet
        if isinstance(embeddings, nn.Parameter):
            self.embeddings = embeddings
        else:  # not a buffer either: DDP would broadcast it every step for nothing
            self.__dict__["embeddings"] = embeddings
        self.keywords = list(keywords)
        self.__dict__["frozen"] = frozen  # outside the module tree on purpose
        self.config = config
        self.autocast_dtype = AUTOCAST_DTYPES[config.mixed_precision]

    def condition(self, keyword: str) -> Tensor:
        return self.embeddings[self.keywords.index(keyword)]

    def render(self, codes: Tensor) -> Tensor:
        """I = G(s) resized to ``image_size`` (antialiased bilinear, differentiable)."""
        images = self.frozen.generator(codes, noise_mode=self.config.noise_mode,
                                       output_size=self.config.generator_output_size)
        size = self.config.image_size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear",
                                   align_corners=False, antialias=True)
        return images

    def score(self, codes: Tensor, keyword: str) -> tuple[Tensor, ...]:
        """Render and score: (identity embedding, *feature maps) or (embedding, probs)."""
        device_type = codes.device.type
        with torch.autocast(device_type, dtype=self.autocast_dtype or torch.float32,
                            enabled=self.autocast_dtype is not None):
            images = self.render(codes)
            embedding, features = self.frozen.identity_encoder.embed_and_features(images)
            if keyword == kw.IDENTITY:
                out = (embedding, *features)
            else:
                out = (embedding, self.frozen.clip.zero_shot(images, keyword))
        return tuple(t.float() for t in out)

    def _score_swapped(self, codes: Tensor, keyword: str) -> tuple[Tensor, ...]:
        if not self.config.gradient_checkpointing:
            return self.score(codes, keyword)
        # One recomputed segment per half of the batch: the generator's activations for only
        # half the swapped images are alive at once in the backward pass.
        halves = [checkpoint(self.score, c, keyword, use_reentrant=False)
                  for c in codes.chunk(2)]
        return tuple(torch.cat(parts) for parts in zip(*halves))

    def forward(self, keyword: str, s1: Tensor, s2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The step objective for a keyword and a batch of pairs: (total, terms)."""
        cfg = self.config
        cond = self.condition(keyword)
        f, r = self.cdfnet(torch.cat([s1, s2]), cond)
        f1, f2 = f.chunk(2)
        # s₁′ = CDFNet⁻¹(f₂, r₁), s₂′ = CDFNet⁻¹(f₁, r₂), in one batch.
        delta, swapped = self.cdfnet.inverse(torch.cat([f2, f1]), r, cond)
        dr1, dr2 = delta.chunk(2)
        s1_sw, s2_sw = swapped.chunk(2)
        with torch.no_grad():
            original = self.score(torch.cat([s1, s2]), keyword)
        moved = self._score_swapped(swapped, keyword)
        o1, o2 = zip(*(t.chunk(2) for t in original))
        m1, m2 = zip(*(t.chunk(2) for t in moved))
        terms = {"L_f": L.latent_loss(s1, s2, s1_sw, s2_sw, cfg.loss_reduction),
                 "L_r": L.information_loss(dr1, dr2, cfg.loss_reduction)}
        if keyword == kw.IDENTITY:
            terms["L_I"] = L.identity_swap_loss(o1[0], o2[0], m1[0], m2[0])
            terms["L_p"] = L.perceptual_loss(o1[1:], o2[1:], m1[1:], m2[1:])
            total = L.identity_oriented_loss(terms["L_I"], terms["L_p"], terms["L_f"],
                                             terms["L_r"], cfg.ios)
        else:
            terms["L_I_prime"] = L.identity_preservation_loss(o1[0], o2[0], m1[0], m2[0])
            terms["L_s"] = L.attribute_swap_loss(o1[1], o2[1], m1[1], m2[1])
            total = L.attribute_oriented_loss(terms["L_I_prime"], terms["L_s"], terms["L_f"],
                                              terms["L_r"], cfg.aos)
        return total, terms
