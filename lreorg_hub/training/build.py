"""Build a swap-training run from its configuration: backbone, scorers, bundle, trainer."""

from __future__ import annotations

import torch

from .config import TrainingConfig
from .swap import SwapTrainer, latest_checkpoint

__all__ = ["seeded_init", "build_scorers", "build_bundle", "build_trainer", "resolve_device"]


def resolve_device(device: str) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seeded_init(factory, **kwargs):
    """open_clip and facenet-pytorch draw random initial weights from the global RNG: do it
    with a fixed seed inside a fork, so random-weight scorers are reproducible and the
    caller's RNG is untouched (pretrained weights overwrite them anyway)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return factory(**kwargs)


def build_scorers(config: TrainingConfig, device: torch.device):
    """The frozen identity network (facenet) and CLIP of the configuration."""
    from ..scorers import IdentityEncoder, KeywordEncoder

    ident = dict(config.identity_encoder)
    if ident.get("crop") is not None:
        ident["crop"] = tuple(ident["crop"])
    identity = seeded_init(IdentityEncoder, device=device, **ident)
    clip = seeded_init(KeywordEncoder, device=device, **config.clip)
    return identity, clip


def build_bundle(config: TrainingConfig, backbone, clip):
    """A new LReOrg bundle sized for the backbone's W+ codes and CLIP's embeddings, with the
    keyword conditions k^f from CLIP's text encoder."""
    from ..bundle import LReOrg

    args = dict(config.bundle)
    cdfnet = dict(args.pop("cdfnet", {}) or {})
    want = {"latent_dim": backbone.generator.style_dim, "num_rows": backbone.n_latent,
            "cond_dim": clip.embed_dim}
    for key, value in want.items():
        if cdfnet.setdefault(key, value) != value:
            raise ValueError(f"bundle.cdfnet.{key}={cdfnet[key]} does not fit the backbone / "
                             f"CLIP, which need {value}")
    args.setdefault("text_encoder", {"model_name": clip.model_name,
                                     "pretrained": clip.pretrained})
    model = LReOrg(cdfnet=cdfnet, **args)
    with torch.no_grad():
        model.set_keyword_embeddings(clip.keyword_embeddings(model.keywords).cpu())
    return model


def build_trainer(config: TrainingConfig, resume: str | None = None) -> SwapTrainer:
    """Everything a run needs, from files and the Hub cache; resumed when ``resume`` names a
    checkpoint folder or a run folder (the newest checkpoint in it)."""
    from ..backbones import load_backbone

    device = resolve_device(config.device)
    backbone_source = config.backbone
    if backbone_source is None and config.bundle.get("backbone"):
        backbone_source = config.bundle["backbone"]
    backbone = load_backbone(backbone_source)
    identity, clip = build_scorers(config, device)
    model = build_bundle(config, backbone, clip)
    trainer = SwapTrainer(model, backbone.generator, identity, clip, config, device=device,
                          reset_cdfnet=resume is None)
    if resume is not None:
        trainer.load_checkpoint(latest_checkpoint(resume))
    return trainer
