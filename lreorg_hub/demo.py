"""A small random-weight bundle and backbone, so every command can be tried offline.

No trained LReOrg bundle is published yet and the real StyleGAN2 / e4e weights are 1.2 GB
downloads. ``write_demo`` builds both through the real classes at a small size (a 128 px
generator with narrow channels, a matching e4e encoder, a CDFNet with random weights, GIA and
every KAA fitted on mapping-network samples) and writes them in the same formats as the real
files: ``bundle/`` via ``save_pretrained`` (config.json + model.safetensors + card) and
``backbone.pt`` in the public e4e checkpoint's layout. The faces it produces are random
textures, not faces: it shows the workflow and the records, not the method's quality.
"""

from __future__ import annotations

from pathlib import Path

import torch

from .method import keywords as kw
from .backbones import Backbone, E4EEncoder, StyleGAN2Generator
from .bundle import LReOrg, StyleMixAnonymizer

__all__ = ["DEMO_BACKBONE", "DEMO_BUNDLE", "DEMO_STYLE_MIX", "build_demo_backbone",
           "build_demo_bundle", "build_demo_style_mix", "save_e4e_checkpoint", "write_demo"]

#: The demo backbone: 128 px output (large enough to see), 12 W+ rows of 64, few channels,
#: so one photo runs in a fraction of a second on a laptop CPU.
DEMO_BACKBONE = dict(size=128, style_dim=64, n_mlp=2, channel_base=2048, channel_max=64,
                     encoder_units=(1, 1, 1, 1))

#: The demo bundle: GIA with 16 groups and 256 synthetic members, fitted on 1024 samples.
DEMO_BUNDLE = dict(num_groups=16, num_members=256, rank_window=[2, 8], fit_samples=1024,
                   cdfnet=dict(cond_dim=32, num_blocks=2, hidden_dim=64, dense_growth=16,
                               dense_layers=2), weight_std=0.05)


def build_demo_backbone(seed: int = 0, *, size: int = DEMO_BACKBONE["size"],
                        style_dim: int = DEMO_BACKBONE["style_dim"],
                        n_mlp: int = DEMO_BACKBONE["n_mlp"],
                        channel_base: int = DEMO_BACKBONE["channel_base"],
                        channel_max: int = DEMO_BACKBONE["channel_max"],
                        encoder_units: tuple[int, ...] = DEMO_BACKBONE["encoder_units"],
                        latent_samples: int = 1024) -> Backbone:
    """A small StyleGAN2 generator and e4e encoder with random weights drawn from ``seed``.

    The encoder's input size equals the generator's size; its deepest stage is style_dim wide
    (base width style_dim / 8), as the e4e layout requires. ``latent_avg`` is the mean of
    ``latent_samples`` mapped samples. The global RNG is not touched.
    """
    gen = torch.Generator().manual_seed(seed)
    generator = StyleGAN2Generator(size=size, style_dim=style_dim, n_mlp=n_mlp,
                                   channel_base=channel_base, channel_max=channel_max)
    generator.reset_parameters(gen)
    encoder = E4EEncoder(n_styles=generator.n_latent, units=encoder_units,
                         base_width=style_dim // 8, style_dim=style_dim, input_size=size)
    encoder.reset_parameters(gen)
    with torch.no_grad():
        latent_avg = generator.mean_latent(latent_samples, generator=gen)
    latent_avg = latent_avg.reshape(1, -1).expand(generator.n_latent, -1).clone()
    return Backbone(generator=generator, encoder=encoder, latent_avg=latent_avg,
                    source=f"demo (random weights, seed {seed})")


def build_demo_bundle(backbone: Backbone, seed: int = 0, *,
                      num_groups: int = DEMO_BUNDLE["num_groups"],
                      num_members: int = DEMO_BUNDLE["num_members"],
                      rank_window: list[int] = DEMO_BUNDLE["rank_window"],
                      fit_samples: int = DEMO_BUNDLE["fit_samples"],
                      cdfnet: dict | None = None,
                      weight_std: float = DEMO_BUNDLE["weight_std"],
                      backbone_config: dict | None = None) -> LReOrg:
    """An LReOrg bundle for ``backbone``'s W+ codes: random CDFNet weights and keyword
    embeddings, GIA and every KAA fitted on mapping-network samples (synthetic identities
    only, SPEC §4; KAA labels are assigned in turn, as there is no CLIP labelling here)."""
    gen = torch.Generator().manual_seed(seed)
    rows, dim = backbone.generator.n_latent, backbone.generator.style_dim
    net = {**DEMO_BUNDLE["cdfnet"], **(cdfnet or {}), "latent_dim": dim, "num_rows": rows}
    model = LReOrg.with_random_weights(
        gen, std=weight_std, num_groups=num_groups, num_members=num_members,
        rank_window=list(rank_window), cdfnet=net,
        backbone=backbone_config or {"repo_id": "local/lreorg-demo", "filename": "backbone.pt",
                                     "revision": "main", "format": "e4e",
                                     "size": backbone.generator.size})
    with torch.no_grad():
        w = backbone.generator.sample_w(fit_samples, generator=gen)
    codes = w.reshape(fit_samples, 1, dim).expand(-1, rows, -1)
    from .method.fitting import fit_attribute_anonymizer, fit_identity_anonymizer

    fit_identity_anonymizer(model, codes, generator=gen)
    for name in model.keywords:
        if name != kw.IDENTITY:
            count = model.attribute_anonymizer(name).num_subcategories
            fit_attribute_anonymizer(model, name, codes, torch.arange(fit_samples) % count)
    return model.eval()


#: The demo style-mix groups: 16 groups, 256 synthetic members, fitted on 2048 samples.
DEMO_STYLE_MIX = dict(num_groups=16, num_members=256, fit_samples=2048)


def build_demo_style_mix(backbone: Backbone, seed: int = 0, *,
                         num_groups: int = DEMO_STYLE_MIX["num_groups"],
                         num_members: int = DEMO_STYLE_MIX["num_members"],
                         fit_samples: int = DEMO_STYLE_MIX["fit_samples"]) -> StyleMixAnonymizer:
    """style-mix groups fitted on ``backbone``'s generator (mapping-network samples only)."""
    g = backbone.generator
    style_mix = StyleMixAnonymizer(num_groups, num_members, g.style_dim, g.n_latent)
    return style_mix.fit(g, num_samples=fit_samples,
                         generator=torch.Generator().manual_seed(seed)).eval()


def save_e4e_checkpoint(backbone: Backbone, path: str | Path) -> Path:
    """Save a backbone in the public ``e4e_ffhq_encode.pt`` nesting: a ``state_dict`` with
    ``encoder.`` / ``decoder.`` prefixes, ``latent_avg`` and plain ``opts`` (loadable with
    ``weights_only=True``)."""
    if backbone.encoder is None:
        raise ValueError("an e4e checkpoint needs an encoder; this backbone has none")
    state = {**{f"encoder.{k}": v.contiguous() for k, v in backbone.encoder.state_dict().items()},
             **{f"decoder.{k}": v.contiguous()
                for k, v in backbone.generator.state_dict().items()}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": state, "latent_avg": backbone.latent_avg,
                "opts": {"encoder_type": "Encoder4Editing",
                         "stylegan_size": backbone.generator.size,
                         "start_from_latent_avg": True}}, path)
    return path


def write_demo(directory: str | Path, seed: int = 0, overwrite: bool = False) -> dict:
    """Write ``directory/bundle/`` (save_pretrained), ``directory/backbone.pt`` (e4e) and
    ``directory/style_mix/`` (fitted style-mix groups).

    Refuses to replace an existing demo unless ``overwrite``. Returns the paths:
    {"bundle": ..., "backbone": ..., "style_mix": ...}.
    """
    directory = Path(directory).expanduser()
    if directory.exists() and not directory.is_dir():
        raise FileExistsError(f"{directory} exists and is not a folder")
    bundle_dir, backbone_file = directory / "bundle", directory / "backbone.pt"
    existing = [str(p) for p in (bundle_dir, backbone_file) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{' and '.join(existing)} already exist; choose another folder "
                              f"or overwrite it (--force)")
    backbone = build_demo_backbone(seed)
    model = build_demo_bundle(backbone, seed)
    model.save_pretrained(bundle_dir)
    save_e4e_checkpoint(backbone, backbone_file)
    style_mix_dir = build_demo_style_mix(backbone, seed).save_pretrained(directory / "style_mix")
    return {"bundle": str(bundle_dir), "backbone": str(backbone_file),
            "style_mix": str(style_mix_dir)}
