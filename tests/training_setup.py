"""Small swap-training setups built from the real classes (imported by the training tests).

- the tiny 64 px StyleGAN2 of conftest (mapping network included),
- facenet's real InceptionResnetV1 with random weights, its BatchNorm statistics estimated on
  the tiny generator's images (with the default statistics every random embedding is nearly
  the same vector, cosine distances ~1e-5, and L_I would carry no signal),
- open_clip's real CLIP class with a two-layer config.
"""

import torch

from conftest import build_tiny_backbone

TINY_CLIP = dict(
    embed_dim=32,
    vision_cfg=dict(image_size=32, layers=2, width=64, patch_size=8, head_width=32),
    text_cfg=dict(context_length=77, vocab_size=49408, width=64, heads=2, layers=2),
)
TRAIN_CDFNET = dict(cond_dim=32, num_blocks=2, hidden_dim=32, dense_growth=8, dense_layers=2)
FACENET_SIZE = 80  # about the smallest input InceptionResnetV1 takes (64 is too small)


def build_tiny_clip():
    from lreorg_hub.scorers import KeywordEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return KeywordEncoder(pretrained=None, model_cfg=TINY_CLIP)


def build_calibrated_facenet(generator, count: int = 64):
    """Random InceptionResnetV1 whose BatchNorm running statistics are those of G's images."""
    from lreorg_hub.scorers import IdentityEncoder

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        identity = IdentityEncoder(pretrained=None, image_size=FACENET_SIZE)
    batchnorms = [m for m in identity.net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    for bn in batchnorms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration batch
    with torch.no_grad():
        images = generator(generator.sample_w(count, generator=torch.Generator().manual_seed(7)))
        identity.net.train()  # the wrapper's train() always means eval; the inner net may
        identity.embed(images)
        identity.net.eval()
    for bn in batchnorms:
        bn.momentum = 0.1
    return identity


def build_training_parts(keywords=("identity", "gender")):
    """(bundle, backbone, facenet, clip) for a tiny run; CLIP gives the keyword conditions."""
    from lreorg_hub.bundle import LReOrg

    backbone = build_tiny_backbone()
    clip = build_tiny_clip()
    facenet = build_calibrated_facenet(backbone.generator)
    model = LReOrg(cdfnet=dict(TRAIN_CDFNET, latent_dim=backbone.generator.style_dim,
                               num_rows=backbone.n_latent),
                   keywords=list(keywords), num_groups=4, num_members=16, rank_window=[2, 3],
                   backbone={"repo_id": "local/tiny", "filename": "tiny_e4e.pt", "size": 64})
    with torch.no_grad():
        model.set_keyword_embeddings(clip.keyword_embeddings(model.keywords))
    return model, backbone, facenet, clip
