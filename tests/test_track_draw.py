"""One identity draw applied to many codes (a video track, SPEC §9), at the method layer and
through the pipeline's runners: the draw is the same one ``reorganize`` makes, and every code
that gets it ends with the same identity key feature while keeping its own residual."""

import pytest
import torch

from lreorg_hub.bundle import LReOrg
from lreorg_hub.method.rng import SecretSeed, derive_seed, make_generator
from lreorg_hub.pipeline.options import ProtectOptions

from conftest import TINY_CDFNET, fit_anonymizers, make_lossless_projection

N, L, D = 5, TINY_CDFNET["num_rows"], TINY_CDFNET["latent_dim"]


@pytest.fixture
def codes(gen):
    return torch.randn(N, L, D, generator=gen)


@pytest.fixture
def lossless(gen):
    model = LReOrg(cdfnet=TINY_CDFNET, num_groups=8, num_members=64, rank_window=[2, 5])
    model.set_keyword_embeddings(torch.randn(8, TINY_CDFNET["cond_dim"], generator=gen))
    make_lossless_projection(model.cdfnet, p=4)
    fit_anonymizers(model, gen)
    return model.eval()


@pytest.mark.parametrize("identity", ["gia", "laplace", "k-anonymity"])
def test_a_fixed_draw_is_the_draw_reorganize_makes(tiny_bundle, codes, identity):
    drawn = tiny_bundle.reorganize(codes, anonymize=["identity"], recover=["age"], seed=11,
                                   identity=identity)
    features = tiny_bundle.identity_features(codes)
    fixed = tiny_bundle.draw_identity(features, identity=identity,
                                      generator=make_generator(11)[0])
    (replayed,) = tiny_bundle.reorganize_many([codes], [None], anonymize=["identity"],
                                              recover=["age"], identity=identity,
                                              identities=[fixed])
    assert torch.allclose(replayed.recovered, drawn.recovered, atol=1e-5)
    assert replayed.record.seed_source == "none" and replayed.record.seed is None


def test_one_draw_gives_every_code_the_same_identity_and_keeps_each_residual(lossless, codes):
    track = lossless.identity_features(codes).mean(dim=0, keepdim=True)   # the track's mean
    f_hat = lossless.draw_identity(track, generator=make_generator(SecretSeed(5))[0])
    (out,) = lossless.reorganize_many([codes], [None], anonymize=["identity"], recover=[],
                                      identities=[f_hat.expand(N, -1, -1)])
    f_out, r_out = lossless.disentangle(out.anonymized[0], "identity")
    assert (f_out - f_hat).abs().max() < 1e-4                      # one identity everywhere
    _, r_in = lossless.disentangle(codes, "identity")
    assert (r_out - r_in).abs().max() < 1e-4                       # each frame's own residual
    assert (r_in[0] - r_in[1]).abs().max() > 0.1


def test_fixed_identities_are_refused_where_they_make_no_sense(tiny_bundle, codes):
    f_hat = tiny_bundle.draw_identity(tiny_bundle.identity_features(codes))
    message = "identities: one replacement tensor per code tensor"
    for kwargs in (dict(samples=2), dict(anonymize=["age"], recover=[])):
        with pytest.raises(ValueError, match=message):
            tiny_bundle.reorganize_many([codes], [None], identities=[f_hat], **kwargs)
    with pytest.raises(ValueError, match=message):
        tiny_bundle.reorganize_many([codes], [3], identities=[f_hat])
    with pytest.raises(ValueError, match="identity replacements must have shape"):
        tiny_bundle.reorganize_many([codes], [None], identities=[f_hat[:2]])


def test_style_mix_fixed_members_equal_its_own_draw(tiny_style_mix, gen):
    sm = tiny_style_mix
    codes = torch.randn(4, sm.num_rows, sm.style_dim, generator=gen)
    drawn = sm(codes, 1.0, generator=make_generator(3)[0])
    w = sm.members(sm.draw(sm.feature(codes), 1.0, generator=make_generator(3)[0]))
    assert torch.equal(sm.mix(codes, w), drawn.codes)
    one = sm.mix(codes, w[:1])                                   # one member for every code
    r0, r1 = sm.rows
    assert torch.equal(one[:, r0:r1], w[:1, None].expand(4, r1 - r0, -1))
    assert torch.equal(one[:, :r0], codes[:, :r0]) and torch.equal(one[:, r1:], codes[:, r1:])


@pytest.mark.parametrize("method", ["lreorg", "style-mix", "laplace", "k-anonymity"])
def test_runners_draw_per_track_with_their_own_coins(pipeline, tiny_style_mix, gen, method):
    from lreorg_hub.pipeline.methods import StyleMixMethod

    runner = StyleMixMethod(tiny_style_mix) if method == "style-mix" else \
        pipeline.methods[method]
    options = runner.check(ProtectOptions(method=method, anonymize=["identity"]))
    rows, dim = pipeline.generator.n_latent, pipeline.generator.style_dim
    codes = torch.randn(6, rows, dim, generator=gen)
    features = runner.track_features(codes)
    means = torch.stack([features[:3].mean(0), features[3:].mean(0)])   # two tracks
    seeds = [derive_seed(b"run secret", "track:0"), derive_seed(b"run secret", "track:1")]
    first, again = (runner.draw_tracks(means, options, seeds) for _ in range(2))
    assert torch.equal(first, again)                          # the coins replay the draws
    out = runner.protect_codes(codes, options, torch.cat([first[:1].expand(3, *first.shape[1:]),
                                                          first[1:].expand(3, *first.shape[1:])]))
    assert out.recovered.shape == (1, 6, rows, dim)
    assert out.record.seed is None and out.record.seed_source == "none"
    if method != "k-anonymity":
        other = runner.draw_tracks(means, options, [derive_seed(b"other", "track:0")] * 2)
        draws = [runner.draw_tracks(means, options, [derive_seed(b"s", f"{i}")] * 2)
                 for i in range(8)]
        assert any(not torch.equal(d, other) for d in draws)  # coins matter


def test_derived_seeds_are_secret_and_one_rule_serves_photos_and_clips():
    """A dataset item's secret is HMAC(key, context ‖ salt ‖ id): a photo's seed is its first
    63 bits, a clip's per-track coins are HMAC of it and the track (one rule, not two)."""
    import hashlib
    import hmac

    from lreorg_hub.dataset.keys import _SEED_CONTEXT, item_secret, item_seed

    key, salt = b"k" * 32, "0f" * 16
    by_hand = hmac.new(key, _SEED_CONTEXT + bytes.fromhex(salt) + b"photo.jpg",
                       hashlib.sha256).digest()
    assert item_secret(key, salt, "photo.jpg") == by_hand
    seed = derive_seed(key, "photo.jpg", _SEED_CONTEXT + bytes.fromhex(salt))
    assert isinstance(seed, SecretSeed) and int(seed) == item_seed(key, salt, "photo.jpg")
    assert int(seed) == int.from_bytes(by_hand[:8], "big") >> 1
    assert item_secret(key, "1e" * 16, "photo.jpg") != by_hand          # the run's salt counts
    assert str(int(seed)) not in f"{seed} {seed!r} {seed:d}"
    assert derive_seed(key, "track:0") != derive_seed(key, "track:1")
    assert 0 <= int(seed) < 2 ** 63
