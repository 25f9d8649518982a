"""A bundle made the way a maintainer makes one, at the tiny size: `lreorg train` on a local
copy of a backbone declared as the Hub file, scorers loaded from weight files (not random),
`lreorg fit-anonymizers` (identity only), and an evaluation record of this very bundle."""

import json

import torch

from conftest import build_tiny_backbone, save_as_e4e_checkpoint
from training_setup import FACENET_SIZE, TINY_CLIP, TRAIN_CDFNET

COMMIT = "0123456789abcdef0123456789abcdef01234567"
HUB_BACKBONE = {"repo_id": "AIRI-Institute/HairFastGAN",
                "filename": "pretrained_models/encoder4editing/e4e_ffhq_encode.pt",
                "format": "e4e"}


def write_weights(folder):
    """backbone.pt (e4e layout), facenet.pt and clip.pt (state dicts of the real classes)."""
    from facenet_pytorch import InceptionResnetV1

    from lreorg_hub.scorers import KeywordEncoder

    save_as_e4e_checkpoint(build_tiny_backbone(), folder / "backbone.pt")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        torch.save(InceptionResnetV1(pretrained=None).state_dict(), folder / "facenet.pt")
        clip = KeywordEncoder(pretrained=None, model_cfg=TINY_CLIP)
    torch.save(clip.model.state_dict(), folder / "clip.pt")
    (folder / "clip.json").write_text(json.dumps(TINY_CLIP))


def train_config(folder, random_scorers: bool = False, declare_hub: bool = True) -> dict:
    return {
        "steps": 1, "batch_size": 1, "image_size": 64, "seed": 3, "log_every": 1,
        "keywords": ["identity", "gender"], "backbone": str(folder / "backbone.pt"),
        "device": "cpu", "progress": False, "out": str(folder / "run"),
        "bundle": {"keywords": ["identity", "gender"], "num_groups": 4, "num_members": 16,
                   "rank_window": [2, 3],
                   "cdfnet": {k: v for k, v in TRAIN_CDFNET.items() if k != "cond_dim"},
                   **({"backbone": HUB_BACKBONE} if declare_hub else {})},
        "identity_encoder": {"pretrained": None if random_scorers else str(folder / "facenet.pt"),
                             "image_size": FACENET_SIZE, "crop": None},
        "clip": {"pretrained": None if random_scorers else str(folder / "clip.pt"),
                 "model_cfg": TINY_CLIP},
    }


def make_bundle(folder, **options):
    """Train one step and fit GIA: returns the bundle folder."""
    from lreorg_hub.cli import main

    (folder / "run.json").write_text(json.dumps(train_config(folder, **options)))
    assert main(["train", "--config", str(folder / "run.json")]) == 0
    bundle = folder / "run" / "bundle"
    assert main(["fit-anonymizers", str(bundle), "--backbone", str(folder / "backbone.pt"),
                 "--samples", "40", "--keywords", "identity", "--clip-pretrained",
                 str(folder / "clip.pt"), "--clip-config", str(folder / "clip.json"),
                 "--seed", "5", "--device", "cpu", "--quiet"]) == 0
    return bundle


def results_of(bundle, folder) -> dict:
    """An `lreorg eval` results.json for this bundle (scorer records of real weight files)."""
    from lreorg_hub.bundle.digests import sha256_file
    from lreorg_hub.evaluation import EvalConfig
    from lreorg_hub.scorers import IdentityEncoder, KeywordEncoder
    from lreorg_hub.training.provenance import describe_scorer

    judge = IdentityEncoder(pretrained=str(folder / "facenet.pt"))
    clip = KeywordEncoder(pretrained=str(folder / "clip.pt"), model_cfg=TINY_CLIP)
    config = EvalConfig(judge="facenet casia-webface",
                        dataset={"name": "CelebA-HQ", "type": "custom", "split": "test"},
                        provenance={"bundle": {"source": str(bundle),
                                               "sha256": sha256_file(bundle / "model.safetensors")},
                                    "judge": describe_scorer(judge),
                                    "apr_clip": describe_scorer(clip)})

    def row(label, method, psr, detection, apr, fid):
        return {"method": method, "label": label, "epsilon": None, "faces": 3, "psr": psr,
                "detection": detection, "apr": apr, "apr_per_keyword": {}, "fid": fid,
                "similarity": {"count": 3}}

    return {"config": config.to_dict(),
            "photos": {"evaluated": 3, "no_face": [], "failed": []}, "faces": 3,
            "main": ["original", "lreorg", "blur"], "sweep": {},
            "methods": {"original": row("original (input)", "original", 0.0, 1.0, 1.0, 0.0),
                        "lreorg": row("lreorg", "lreorg", 2 / 3, 1.0, 0.75, 12.5),
                        "blur": row("blur", "blur", 1 / 3, 2 / 3, 0.5, None)},
            "recovery": {"identity": 0.5, "gender": 1.0},
            "preserved_attributes": ["gender", "age"],
            "warnings": ["FID is computed on 3 face(s), fewer than 2,000"]}
