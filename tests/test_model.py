import json

import pytest
import torch
from huggingface_hub import ModelCard
from safetensors.torch import load_file, save_file

from lreorg_hub.bundle import BundleError, LReOrg
from lreorg_hub.training.fitting import fit_identity_anonymizer

from conftest import TINY_CDFNET, fit_anonymizers, make_lossless_projection

N, L, D = 5, TINY_CDFNET["num_rows"], TINY_CDFNET["latent_dim"]


@pytest.fixture
def codes(gen):
    return torch.randn(N, L, D, generator=gen)


#: Every way the bundle replaces the identity key feature.
IDENTITY_DRAWS = [dict(identity="gia", mechanism="window"), dict(identity="gia", mechanism="strict"),
                  dict(identity="laplace"), dict(identity="k-anonymity")]

def test_nothing_to_do_returns_the_codes_unchanged(tiny_bundle, codes):
    result = tiny_bundle.reorganize(codes, anonymize=[], recover=[], seed=0, samples=2)
    assert result.anonymized.shape == (2, N, L, D)
    assert torch.equal(result.anonymized[0], codes) and torch.equal(result.recovered[1], codes)
    assert result.record.identity == "none" and result.record.mechanism is None
    assert result.record.epsilon is None


def test_w_codes_are_accepted(tiny_bundle, gen):
    result = tiny_bundle.reorganize(torch.randn(3, D, generator=gen), seed=0)
    assert result.recovered.shape == (1, 3, L, D)


def lossless_bundle(gen):
    model = LReOrg(cdfnet=TINY_CDFNET, num_groups=8, num_members=64, rank_window=[2, 5])
    model.set_keyword_embeddings(torch.randn(8, TINY_CDFNET["cond_dim"], generator=gen))
    make_lossless_projection(model.cdfnet, p=4)
    fit_anonymizers(model, gen)
    return model.eval()


def test_anonymize_then_recover_restores_the_key_feature(gen, codes):
    """With a CDFNet whose information loss Δr is zero (what L_r trains towards), recovering a
    keyword gives back its original key feature exactly."""
    model = lossless_bundle(gen)
    f0, _ = model.disentangle(codes, "age")
    _, s_m = model.anonymize_step(codes, "age")
    f_m, _ = model.disentangle(s_m, "age")
    assert (f_m - f0).abs().max() > 0.1          # KAA really changed the key feature
    delta, s_n = model.recover_step(s_m, codes, "age")
    f_n, _ = model.disentangle(s_n, "age")
    assert delta.abs().max() < 1e-5
    assert (f_n - f0).abs().max() < 1e-4

    result = model.reorganize(codes, anonymize=["identity"], recover=["gender"], seed=3,
                              samples=2)
    f_n, _ = model.disentangle(result.recovered.reshape(-1, L, D), "gender")
    assert (f_n - f0.repeat(2, 1, 1)).abs().max() < 1e-4
    assert result.information_loss["recover:gender"].max() < 1e-5


def test_information_loss_is_reported(tiny_bundle, codes):
    result = tiny_bundle.reorganize(codes, anonymize=["identity", "makeup"],
                                    recover=["age"], seed=1, samples=3)
    assert list(result.information_loss) == ["anonymize:identity", "anonymize:makeup",
                                              "recover:age"]
    assert all(v.shape == (3, N) for v in result.information_loss.values())
    assert result.information_loss["anonymize:identity"].min() > 0  # random, untrained net


def test_samples_differ_and_the_same_seed_reproduces(tiny_bundle, codes):
    a = tiny_bundle.reorganize(codes, epsilon=1.0, seed=7, samples=4)
    b = tiny_bundle.reorganize(codes, epsilon=1.0, seed=7, samples=4)
    assert torch.equal(a.anonymized, b.anonymized) and torch.equal(a.recovered, b.recovered)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(a.anonymized[i], a.anonymized[j])
    c = tiny_bundle.reorganize(codes, epsilon=1.0, seed=8, samples=4)
    assert not torch.equal(a.anonymized, c.anonymized)


def test_record_says_what_ran(tiny_bundle, codes):
    result = tiny_bundle.reorganize(codes, anonymize=["makeup", "identity"],
                                    recover=["expression", "gender"], epsilon=2.5,
                                    rank_window=(3, 6), mechanism="strict", seed=11)
    rec = result.record
    assert rec.anonymize == ["identity", "makeup"] and rec.recover == ["expression", "gender"]
    assert (rec.mechanism, rec.epsilon, rec.rank_window) == ("strict", 2.5, [3, 6])
    assert (rec.seed, rec.seed_source, rec.samples) == (11, "user", 1)
    assert "e^ε" in rec.guarantee and "pixels outside the face" in rec.scope
    assert "KAA" in rec.extra["attribute_anonymizer"]
    json.dumps(rec.to_dict())


def test_no_seed_draws_from_os_entropy(tiny_bundle, codes):
    torch.manual_seed(0)
    a = tiny_bundle.reorganize(codes, seed=None)
    torch.manual_seed(0)
    b = tiny_bundle.reorganize(codes, seed=None)
    assert a.record.seed_source == b.record.seed_source == "os-entropy"
    assert a.record.seed is None and b.record.seed is None   # secret coins: never kept
    assert not torch.equal(a.anonymized, b.anonymized)


@pytest.mark.parametrize("identity, epsilon", [("laplace", 1.0), ("k-anonymity", None)])
def test_latent_baselines_run_through_the_same_api(tiny_bundle, codes, identity, epsilon):
    result = tiny_bundle.reorganize(codes, identity=identity, epsilon=1.0, seed=0)
    assert result.record.identity == identity and result.record.mechanism is None
    assert result.record.epsilon == epsilon
    assert not torch.equal(result.anonymized[0], codes)


@pytest.mark.parametrize("kwargs, message", [
    (dict(anonymize=["identity", "nose"]), "unknown keyword 'nose'; valid keywords: identity"),
    (dict(anonymize=["age"], recover=["age"]), "cannot be both anonymized and recovered"),
    (dict(epsilon=-1), "epsilon must be >= 0"),
    (dict(rank_window=(4, 2)), "is empty"),
    (dict(rank_window=(2, 99)), "within 1..8"),
    (dict(mechanism="laplace"), "mechanism must be one of window, strict, got 'laplace'"),
    (dict(identity="gaussian"), "identity must be one of gia, laplace, k-anonymity"),
    (dict(samples=0), "samples must be in 1.."),
    (dict(seed=-3), r"seed must be in 0..18446744073709551615 \(2\*\*64 - 1\), got -3"),
])
def test_bad_arguments_are_clear_errors(tiny_bundle, codes, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_bundle.reorganize(codes, **kwargs)


def test_untrained_network_gives_a_clear_fitting_error(gen):
    model = LReOrg(cdfnet=TINY_CDFNET, num_groups=8, num_members=64)
    with pytest.raises(ValueError, match="an untrained CDFNet maps every code to the key "
                                         "feature 0"):
        fit_identity_anonymizer(model, torch.randn(100, D, generator=gen), generator=gen)


def test_unfitted_bundle_says_so(codes):
    model = LReOrg(cdfnet=TINY_CDFNET, num_groups=8, num_members=64)
    with pytest.raises(RuntimeError, match="IdentityAnonymizer is not fitted"):
        model.reorganize(codes)


def test_save_and_load_reproduce_bit_identical_outputs(tiny_bundle, codes, tmp_path):
    tiny_bundle.save_pretrained(tmp_path / "bundle")
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == [
        "README.md", "config.json", "model.safetensors"]
    loaded = LReOrg.from_pretrained(tmp_path / "bundle")
    assert not loaded.training
    for draw in IDENTITY_DRAWS:
        a = tiny_bundle.reorganize(codes, **draw, seed=5, samples=2)
        b = loaded.reorganize(codes, **draw, seed=5, samples=2)
        assert torch.equal(a.anonymized, b.anonymized) and torch.equal(a.recovered, b.recovered)
    for key, value in tiny_bundle.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


def test_config_holds_only_plain_values(tiny_bundle, tmp_path):
    tiny_bundle.save_pretrained(tmp_path / "bundle")
    config = json.loads((tmp_path / "bundle" / "config.json").read_text())

    def plain(x):
        if isinstance(x, dict):
            return all(isinstance(k, str) and plain(v) for k, v in x.items())
        if isinstance(x, list):
            return all(plain(v) for v in x)
        return isinstance(x, (int, float, str, bool)) or x is None
    assert plain(config)
    assert config["cdfnet"]["num_rows"] == L and config["num_groups"] == 8
    assert config["backbone"]["repo_id"] == "AIRI-Institute/HairFastGAN"
    assert config["rank_window"] == [2, 5]
    # every tensor is in the safetensors file, buffers included
    tensors = load_file(tmp_path / "bundle" / "model.safetensors")
    for key in ("keyword_embeddings", "identity_anonymizer.centres",
                "identity_anonymizer.members", "identity_anonymizer.member_group",
                "attribute_anonymizers.hair_color.means", "identity_anonymizer.fitted"):
        assert key in tensors


def test_model_card_is_rendered_from_the_template(tiny_bundle, tmp_path):
    tiny_bundle.save_pretrained(tmp_path / "bundle")
    card = ModelCard.load(tmp_path / "bundle" / "README.md")
    data = card.data.to_dict()
    assert data["library_name"] == "lreorg-hub" and data["pipeline_tag"] == "image-to-image"
    assert "face-anonymization" in data["tags"]
    assert "`hair color` (anonymizer fitted)" in card.text
    assert "Identity anonymizer (GIA) fitted: **True**" in card.text
    assert "AIRI-Institute/HairFastGAN" in card.text
    assert "says\n  nothing about pixels outside the face" in card.text


def test_load_is_strict_about_missing_and_unexpected_tensors(tiny_bundle, tmp_path):
    folder = tmp_path / "bundle"
    tiny_bundle.save_pretrained(folder)
    tensors = load_file(folder / "model.safetensors")
    tensors.pop("identity_anonymizer.centres")
    tensors["stray.weight"] = torch.zeros(2)
    save_file(tensors, folder / "model.safetensors")
    with pytest.raises(BundleError) as err:
        LReOrg.from_pretrained(folder)
    assert "1 tensor(s) missing from the weights, e.g. identity_anonymizer.centres" in str(err.value)
    assert "1 unexpected tensor(s) in the weights, e.g. stray.weight" in str(err.value)


def test_config_that_does_not_match_the_weights_names_the_mismatch(tiny_bundle, tmp_path):
    folder = tmp_path / "bundle"
    tiny_bundle.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["num_groups"] = 9
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(BundleError, match=r"identity_anonymizer.centres is \[8, 4, 16\] in the "
                                          r"weights but \[9, 4, 16\] per config.json"):
        LReOrg.from_pretrained(folder)


def test_load_honours_device_and_dtype(tiny_bundle, tmp_path):
    tiny_bundle.save_pretrained(tmp_path / "bundle")
    loaded = LReOrg.from_pretrained(tmp_path / "bundle", map_location=torch.device("cpu"),
                                    dtype=torch.float64)
    assert loaded.device.type == "cpu"
    assert loaded.cdfnet.row_embedding.dtype == torch.float64 == loaded.compute_dtype
    # dtype is CDFNet's: the anonymizers' statistics stay float32
    assert loaded.identity_anonymizer.members.dtype == torch.float32
    assert loaded.keyword_embeddings.dtype == torch.float32


@pytest.mark.parametrize("draw", IDENTITY_DRAWS, ids=lambda d: "-".join(d.values()))
def test_many_photos_in_one_pass_equal_one_call_per_photo(tiny_bundle, gen, draw):
    photos = [torch.randn(n, L, D, generator=gen) for n in (1, 3, 2)]
    seeds = [11, 12, 13]
    many = tiny_bundle.reorganize_many(photos, seeds, epsilon=1.0, **draw, samples=3)
    assert len(many) == 3
    for codes, seed, got in zip(photos, seeds, many):
        one = tiny_bundle.reorganize(codes, epsilon=1.0, **draw, seed=seed, samples=3)
        assert got.recovered.shape == one.recovered.shape == (3, codes.shape[0], L, D)
        # each photo keeps its own draw; only float rounding of the larger batch differs
        torch.testing.assert_close(got.anonymized, one.anonymized, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got.recovered, one.recovered, atol=1e-5, rtol=1e-5)
        assert got.record == one.record and got.record.seed == seed
        assert set(got.information_loss) == set(one.information_loss)
        for k, v in got.information_loss.items():
            torch.testing.assert_close(v, one.information_loss[k], atol=1e-5, rtol=1e-4)
    # photos with different seeds get different draws even with the same codes
    same = tiny_bundle.reorganize_many([photos[1], photos[1]], [1, 2], **draw)
    if draw["identity"] != "k-anonymity":  # deterministic
        assert not torch.equal(same[0].anonymized, same[1].anonymized)
    with pytest.raises(ValueError, match="3 code tensors but 2 seeds"):
        tiny_bundle.reorganize_many(photos, [1, 2])
    unkept = tiny_bundle.reorganize_many(photos[:2], [None, None])
    assert all(r.record.seed is None and r.record.seed_source == "os-entropy" for r in unkept)


def test_not_a_bundle_and_offline_hub_are_clear_errors(tmp_path):
    with pytest.raises(BundleError, match="is not a folder with an LReOrg bundle"):
        LReOrg.from_pretrained(tmp_path / "nothing-here")
    with pytest.raises(BundleError, match="config.json is missing"):
        LReOrg.from_pretrained(tmp_path)
    with pytest.raises(BundleError, match="the Hub is unreachable or offline"):
        LReOrg.from_pretrained("lreorg-hub/no-such-bundle")


def test_keyword_embeddings_must_match(tiny_bundle):
    with pytest.raises(ValueError, match="embeddings missing for keywords: curly"):
        tiny_bundle.set_keyword_embeddings({n: torch.zeros(12) for n in tiny_bundle.keywords
                                            if n != "curly"})
    with pytest.raises(ValueError, match=r"must have shape \(8, 12\)"):
        tiny_bundle.set_keyword_embeddings(torch.zeros(8, 13))


def test_a_bundle_with_fewer_keywords(gen, codes):
    model = LReOrg.with_random_weights(gen, std=0.1, cdfnet=TINY_CDFNET,
                                       keywords=["identity", "Gender"], num_groups=8,
                                       num_members=64)
    fit_anonymizers(model, gen)
    assert model.keywords == ["identity", "gender"] and list(model.attribute_anonymizers) == [
        "gender"]
    with pytest.raises(ValueError, match="unknown keyword 'age'; valid keywords: identity, gender"):
        model.reorganize(codes, recover=["age"])
    assert model.reorganize(codes, recover=["gender"], seed=0).recovered.shape == (1, N, L, D)
