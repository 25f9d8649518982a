"""Builders for the dataset tests: a micro backbone and bundle saved to disk (real classes,
real files, loaded the way the CLI and every Ray actor load them), and generated inputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]

MICRO_DIM = 16


@pytest.fixture(scope="session")
def micro(tmp_path_factory):
    """The micro bundle and backbone on disk, as the dataset runs (local and Ray) load them."""
    from lreorg_hub.dataset import PipelineSpec
    bundle, backbone = write_micro_model(tmp_path_factory.mktemp("micro"))
    return PipelineSpec(bundle=str(bundle), backbone=str(backbone), device="cpu")


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray for the session (2 CPUs); whichever test module asks first starts it."""
    import ray
    owner = not ray.is_initialized()
    if owner:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=150 * 1024 ** 2,
                 # 2 threads in the environment: the actor must set its own (cpus_per_actor=1)
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2"}})
    yield ray
    if owner:
        ray.shutdown()


def build_micro_backbone():
    """32 px StyleGAN2 (8 W+ rows of 16) and a matching 32 px e4e: milliseconds per face."""
    from lreorg_hub.backbones import Backbone, E4EEncoder, StyleGAN2Generator

    generator = StyleGAN2Generator(size=32, style_dim=MICRO_DIM, n_mlp=1, channel_base=64,
                                   channel_max=16)
    encoder = E4EEncoder(n_styles=generator.n_latent, units=(1, 1, 1, 1), base_width=2,
                         style_dim=MICRO_DIM, input_size=32)
    latent_avg = generator.mean_latent(128, generator=torch.Generator().manual_seed(0))
    return Backbone(generator=generator, encoder=encoder,
                    latent_avg=latent_avg.expand(generator.n_latent, -1).clone(),
                    source="micro")


def build_micro_bundle(backbone, seed: int = 0):
    from lreorg_hub.bundle import LReOrg
    from lreorg_hub.training.fitting import fit_attribute_anonymizer, fit_identity_anonymizer

    gen = torch.Generator().manual_seed(seed)
    rows = backbone.generator.n_latent
    model = LReOrg.with_random_weights(
        gen, std=0.05, num_groups=8, num_members=64, rank_window=[2, 6],
        cdfnet=dict(latent_dim=MICRO_DIM, num_rows=rows, cond_dim=8, num_blocks=1,
                    hidden_dim=16, dense_growth=4, dense_layers=1),
        backbone={"repo_id": "local/micro", "filename": "micro_e4e.pt", "size": 32})
    with torch.no_grad():
        w = backbone.generator.sample_w(128, generator=gen)
    codes = w.reshape(128, 1, -1).expand(-1, rows, -1)
    fit_identity_anonymizer(model, codes, generator=gen, iterations=5)
    for name in model.keywords[1:]:
        count = model.attribute_anonymizer(name).num_subcategories
        fit_attribute_anonymizer(model, name, codes, torch.arange(128) % count)
    return model.eval()


def write_micro_model(folder: Path) -> tuple[Path, Path]:
    """(bundle folder, backbone checkpoint) on disk."""
    from conftest import save_as_e4e_checkpoint

    folder.mkdir(parents=True, exist_ok=True)
    backbone = build_micro_backbone()
    bundle = build_micro_bundle(backbone)
    bundle.save_pretrained(folder / "bundle")
    save_as_e4e_checkpoint(backbone, folder / "backbone.pt")
    return folder / "bundle", folder / "backbone.pt"


def face_crops(n: int, size: int = 32, seed: int = 0) -> list[bytes]:
    """n distinct generated 'aligned face' crops as PNG bytes (smooth random colour fields)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        low = rng.random((4, 4, 3))
        img = Image.fromarray((low * 255).astype(np.uint8)).resize((size, size),
                                                                   Image.BILINEAR)
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def digests(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every entry under ``root`` outside ``skip`` → its SHA-256 (files), its target (links) or
    its kind (FIFOs and the like): links never followed, nothing but regular files opened."""
    import hashlib
    import os
    import stat

    found = {}
    for here, dirs, names in os.walk(root, followlinks=False):
        here = Path(here)
        if skip is not None and (here == skip or skip in here.parents):
            dirs[:] = []
            continue
        for name in names + [d for d in dirs if (here / d).is_symlink()]:
            p = here / name
            st = os.lstat(p)
            key = str(p.relative_to(root))
            if stat.S_ISLNK(st.st_mode):
                found[key] = "link→" + os.readlink(p)
            elif stat.S_ISREG(st.st_mode):
                found[key] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                found[key] = "special"
    return found
