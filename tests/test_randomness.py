"""One randomness policy: with no generator, every function that draws uses a fresh
OS-entropy generator, and nothing in the public API touches torch's global RNG."""

import pytest
import torch

from lreorg_hub.method.anonymizers import IdentityAnonymizer, LaplaceIdentityAnonymizer, kmeans
from lreorg_hub.bundle import LReOrg


@pytest.fixture
def global_rng_untouched():
    state = torch.random.get_rng_state()
    yield
    assert torch.equal(torch.random.get_rng_state(), state), "the global RNG was used"


def _points(n=64, d=6, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed))


def test_kmeans_without_generator_uses_os_entropy(global_rng_untouched):
    x = _points(200)
    runs = [kmeans(x, 6, iterations=0)[0] for _ in range(4)]   # k-means++ seeding only
    assert any(not torch.equal(runs[0], r) for r in runs[1:])
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(kmeans(x, 6, generator=g1)[0], kmeans(x, 6, generator=g2)[0])


def test_fitting_and_drawing_without_generator(global_rng_untouched):
    gia = IdentityAnonymizer(num_groups=4, num_members=32, feature_shape=(6,))
    gia.fit(_points(128))
    f = _points(16, seed=1)
    draws = [gia.draw(f, 0.0, (1, 4)).member for _ in range(3)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_laplace_without_generator(global_rng_untouched):
    lap = LaplaceIdentityAnonymizer(clip_norm=1.0)
    f = _points(4)
    assert not torch.equal(lap(f, 1.0), lap(f, 1.0))


def test_random_weights_without_generator(global_rng_untouched):
    config = dict(cdfnet=dict(latent_dim=8, num_rows=2, cond_dim=4, num_blocks=1,
                              hidden_dim=8, dense_growth=4, dense_layers=1),
                  num_groups=2, num_members=4)
    a, b = LReOrg.with_random_weights(**config), LReOrg.with_random_weights(**config)
    assert not torch.equal(a.keyword_embeddings, b.keyword_embeddings)
    g = [torch.Generator().manual_seed(1) for _ in range(2)]
    c, d = (LReOrg.with_random_weights(gen, **config) for gen in g)
    assert all(torch.equal(p, q) for p, q in zip(c.state_dict().values(),
                                                 d.state_dict().values()))


def test_public_api_leaves_the_global_rng_alone(global_rng_untouched, photo_bundle,
                                               tiny_backbone, astronaut, tmp_path):
    from conftest import build_tiny_bundle
    from lreorg_hub.demo import build_demo_backbone, build_demo_bundle
    from lreorg_hub.pipeline import LReOrgPipeline
    from lreorg_hub.training.fitting import fit_identity_anonymizer

    # A new pipeline, so building its face detector is inside the check too.
    pipeline = LReOrgPipeline(photo_bundle, tiny_backbone.encoder, tiny_backbone.generator,
                              tiny_backbone.latent_avg, device="cpu")

    model = build_tiny_bundle(torch.Generator().manual_seed(0))       # fit GIA + every KAA
    codes = torch.randn(3, 4, 16, generator=torch.Generator().manual_seed(2))
    w_codes = torch.randn(256, 1, 16, generator=torch.Generator()).expand(-1, 4, -1)
    fit_identity_anonymizer(model, w_codes)              # no generator: OS entropy
    for draw in ({"mechanism": "window"}, {"mechanism": "strict"}, {"identity": "laplace"},
                 {"identity": "k-anonymity"}):
        model.reorganize(codes, **draw, samples=2)
    pipeline(astronaut, samples=2)
    pipeline(astronaut, method="blur")
    backbone = build_demo_backbone(0, size=32, latent_samples=16)
    build_demo_bundle(backbone, 0, num_groups=4, num_members=16, rank_window=[2, 3],
                      fit_samples=64)
    model.save_pretrained(tmp_path / "b")
    LReOrg.from_pretrained(tmp_path / "b")
