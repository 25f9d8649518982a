"""Build a swap-training run from its configuration: backbone, scorers, bundle, trainer."""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .config import TrainingConfig
from .swap import SwapTrainer, latest_checkpoint

__all__ = ["seeded_init", "build_scorers", "build_bundle", "build_trainer", "resolve_device",
           "resolve_backbone", "bundle_backbone", "training_provenance"]


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


def bundle_backbone(config: TrainingConfig, used: dict) -> dict:
    """The bundle's ``backbone`` (what inference will load) from the backbone actually used.

    A Hub download names itself, at the commit that was read. A local file names the Hub
    file it is a copy of only when ``bundle.backbone`` says so (``lreorg push`` then checks
    the claim against the file's sha256); otherwise ``local/<file name>``, which is never
    published. The resolution is always the file's.
    """
    if used["source"] == "hub":
        return {k: used[k] for k in ("repo_id", "filename", "revision", "format")} | \
            {"size": used["size"]}
    declared = dict(config.bundle.get("backbone") or {})
    if declared.get("repo_id"):
        return {**declared, "size": used["size"]}
    name = Path(used["path"]).name
    return {"repo_id": f"local/{name}", "filename": name, "revision": None,
            "format": declared.get("format", "e4e"), "size": used["size"]}


def build_bundle(config: TrainingConfig, backbone, clip, backbone_config: dict | None = None,
                 provenance: dict | None = None):
    """A new LReOrg bundle sized for the backbone's W+ codes and CLIP's embeddings, with the
    keyword conditions k^f from CLIP's text encoder."""
    from ..bundle import LReOrg

    args = dict(config.bundle)
    if backbone_config is not None:
        args["backbone"] = backbone_config
    cdfnet = dict(args.pop("cdfnet", {}) or {})
    want = {"latent_dim": backbone.generator.style_dim, "num_rows": backbone.n_latent,
            "cond_dim": clip.embed_dim}
    for key, value in want.items():
        if cdfnet.setdefault(key, value) != value:
            raise ValueError(f"bundle.cdfnet.{key}={cdfnet[key]} does not fit the backbone / "
                             f"CLIP, which need {value}")
    args.setdefault("text_encoder", {"model_name": clip.model_name,
                                     "pretrained": clip.pretrained})
    model = LReOrg(cdfnet=cdfnet, provenance=provenance, **args)
    with torch.no_grad():
        model.set_keyword_embeddings(clip.keyword_embeddings(model.keywords).cpu())
    return model


def resolve_backbone(path: str | None, hub: dict | None):
    """(backbone, file path, BackboneSource or None): a local file (``path`` or
    $LREORG_BACKBONE_PATH), else the Hub file of ``hub`` (default: the bundle default)."""
    from ..backbones import BackboneSource, download_backbone, load_backbone
    from ..backbones.sources import ENV_PATH

    path = path or os.environ.get(ENV_PATH)
    if path:
        return load_backbone(path), Path(path).expanduser(), None
    source = BackboneSource.from_dict(hub).with_env()
    file = download_backbone(source)
    return load_backbone(file, format=source.format), file, source


def training_provenance(config: TrainingConfig, backbone, path, source, identity, clip) -> dict:
    """What ``lreorg train`` records in the bundle (no OS-entropy seed)."""
    from .provenance import describe_backbone, describe_scorer

    return {"backbone": describe_backbone(backbone, path, source),
            "identity_encoder": describe_scorer(identity), "clip": describe_scorer(clip),
            "seed": config.seed, "loss_reduction": config.loss_reduction,
            "latents": config.latents}


def build_trainer(config: TrainingConfig, resume: str | None = None) -> SwapTrainer:
    """Everything a run needs, from files and the Hub cache; resumed when ``resume`` names a
    checkpoint folder or a run folder (the newest checkpoint in it). Under a multi-process
    launcher (WORLD_SIZE > 1) the run is data-parallel through accelerate."""
    from .distributed import is_distributed_launch, make_accelerator

    accelerator = make_accelerator(config.device) if is_distributed_launch() else None
    device = accelerator.device if accelerator is not None else resolve_device(config.device)
    backbone, path, source = resolve_backbone(config.backbone, config.bundle.get("backbone"))
    identity, clip = build_scorers(config, device)
    provenance = training_provenance(config, backbone, path, source, identity, clip)
    model = build_bundle(config, backbone, clip, bundle_backbone(config, provenance["backbone"]))
    trainer = SwapTrainer(model, backbone.generator, identity, clip, config, device=device,
                          reset_cdfnet=resume is None, accelerator=accelerator)
    trainer.provenance = provenance
    if resume is not None:
        trainer.load_checkpoint(latest_checkpoint(resume))
    return trainer
