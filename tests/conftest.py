"""Shared fixtures: small configurations built through the real classes."""

import os

# Before anything imports huggingface_hub (it reads these once, at import).
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import pytest  # noqa: E402
import torch  # noqa: E402

TINY_CDFNET = dict(latent_dim=16, num_rows=4, cond_dim=12, num_blocks=2, hidden_dim=24,
                   dense_growth=8, dense_layers=2)


def randomize(module: torch.nn.Module, generator: torch.Generator, std: float = 0.1) -> None:
    """Give every parameter random (non-zero) values, zero-initialised layers included."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * std)


@pytest.fixture(scope="module")
def one_torch_thread():
    """torch on one thread for a test module (restored afterwards)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(1234)


def build_tiny_bundle(generator: torch.Generator, num_groups: int = 8, num_members: int = 64,
                      random_weights: bool = True):
    """A fitted LReOrg bundle of the tiny configuration (GIA and every KAA fitted)."""
    from lreorg_hub.bundle import LReOrg

    model = LReOrg(cdfnet=TINY_CDFNET, num_groups=num_groups, num_members=num_members,
                   rank_window=[2, 5])
    if random_weights:
        randomize(model.cdfnet, generator)
    model.set_keyword_embeddings(torch.randn(len(model.keywords), TINY_CDFNET["cond_dim"],
                                             generator=generator))
    fit_anonymizers(model, generator)
    return model.eval()


@pytest.fixture
def tiny_bundle(gen):
    return build_tiny_bundle(gen)


def make_lossless_projection(cdfnet, p: int) -> None:
    """Set a CDFNet's weights so that it splits s exactly into f = P s and r = (I − P) s,
    P = projection on the first p coordinates of every row (for every keyword).

    First block: φ1(h², k) = P h² (a linear map written through the LeakyReLU as
    (leaky(x) − leaky(−x)) / (1 + α)), ψ3(b¹) = −b¹; every other φ/ψ outputs 0. The inverse then
    has zero information loss for any f̂ in range(P) and r in null(P): the situation the
    L_r training term drives a trained CDFNet towards.
    """
    with torch.no_grad():
        for block in list(cdfnet.condition_blocks) + list(cdfnet.disentangle_blocks):
            for m in block.modules():
                if hasattr(m, "fc_out"):
                    m.fc_out.weight.zero_()
                    m.fc_out.bias.zero_()
        phi1 = cdfnet.condition_blocks[0].phi1
        alpha = phi1.act.negative_slope
        dim, hidden = phi1.fc_x.in_features, phi1.fc_x.out_features
        assert hidden >= 2 * p
        phi1.fc_x.weight.zero_()
        phi1.fc_x.bias.zero_()
        phi1.fc_k.weight.zero_()
        phi1.fc_k.bias.zero_()
        for i in range(p):
            phi1.fc_x.weight[i, i] = 1.0
            phi1.fc_x.weight[p + i, i] = -1.0
            phi1.fc_out.weight[i, i] = 1.0 / (1.0 + alpha)
            phi1.fc_out.weight[i, p + i] = -1.0 / (1.0 + alpha)
        psi3 = cdfnet.disentangle_blocks[0].psi3
        psi3.fc_out.weight[:, :dim] = -torch.eye(dim)


def fit_anonymizers(model, generator: torch.Generator, count: int = 256) -> None:
    """Fit GIA and every KAA of a bundle on key features of random W codes."""
    from lreorg_hub.training.fitting import fit_attribute_anonymizer, fit_identity_anonymizer

    codes = torch.randn(count, model.cdfnet.latent_dim, generator=generator)
    fit_identity_anonymizer(model, codes, generator=generator)
    for name in model.keywords[1:]:
        count_sub = model.attribute_anonymizer(name).num_subcategories
        fit_attribute_anonymizer(model, name, codes, torch.arange(count) % count_sub)


# -- photo pipeline: a tiny backbone and a bundle that fits it, built by the real classes -----
# (lreorg_hub.demo's builders at an even smaller size, so the tests stay fast)
TINY_STYLE_DIM = 32


def build_tiny_backbone(seed: int = 0):
    """A 64 px StyleGAN2 generator (10 W+ rows of 32) and a matching small e4e encoder."""
    from lreorg_hub.demo import build_demo_backbone

    return build_demo_backbone(seed, size=64, style_dim=TINY_STYLE_DIM, channel_base=512,
                               channel_max=32, latent_samples=256)


def save_as_e4e_checkpoint(backbone, path) -> None:
    """Save a backbone in the public e4e file's nesting (prefixed state_dict, latent_avg)."""
    from lreorg_hub.demo import save_e4e_checkpoint

    save_e4e_checkpoint(backbone, path)


def build_photo_bundle(backbone, seed: int = 0):
    """An LReOrg bundle for the tiny backbone's (10, 32) codes, fitted on mapping-network
    samples as SPEC §4 describes (random CDFNet weights: no trained bundle exists)."""
    from lreorg_hub.demo import build_demo_bundle

    return build_demo_bundle(
        backbone, seed, num_groups=8, num_members=64, rank_window=[2, 6], fit_samples=256,
        cdfnet=dict(cond_dim=16, num_blocks=2, hidden_dim=32, dense_growth=8, dense_layers=2),
        backbone_config={"repo_id": "local/tiny", "filename": "tiny_e4e.pt", "size": 64})


def build_tiny_style_mix(backbone, seed: int = 0):
    """style-mix groups for the tiny backbone (8 groups, 64 members of 512 mapping samples)."""
    from lreorg_hub.demo import build_demo_style_mix

    return build_demo_style_mix(backbone, seed, num_groups=8, num_members=64, fit_samples=512)


@pytest.fixture(scope="session")
def tiny_style_mix(tiny_backbone):
    return build_tiny_style_mix(tiny_backbone)


@pytest.fixture(scope="session")
def tiny_backbone():
    return build_tiny_backbone()


@pytest.fixture(scope="session")
def photo_bundle(tiny_backbone):
    return build_photo_bundle(tiny_backbone)


@pytest.fixture(scope="session")
def pipeline(photo_bundle, tiny_backbone):
    from lreorg_hub.pipeline import LReOrgPipeline

    return LReOrgPipeline(photo_bundle, tiny_backbone.encoder, tiny_backbone.generator,
                          tiny_backbone.latent_avg, device="cpu")


@pytest.fixture(scope="session")
def astronaut():
    from PIL import Image
    from skimage import data

    return Image.fromarray(data.astronaut())
