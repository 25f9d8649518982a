"""The privacy record survives publication (SPEC §8): no OS-entropy seed anywhere, a chosen
seed comes with a warning, k samples state k·ε, ε = ∞ says no DP guarantee holds."""

import json
import math
import secrets

import pytest
import torch

from lreorg_hub.privacy import (DERIVED_SEED_NOTE, NO_DP_NOTE, OS_ENTROPY_NOTE,
                                USER_SEED_WARNING, PrivacyRecord)
from lreorg_hub.method.rng import SecretSeed, make_generator

# A recognisable value the patched OS entropy returns, so tests can look for it in outputs.
SECRET = 7_364_019_283_746_551


@pytest.fixture
def known_entropy(monkeypatch):
    monkeypatch.setattr(secrets, "randbits", lambda bits: SECRET)
    return SECRET


def _record(**overrides):
    args = dict(method="lreorg", anonymize=["identity"], recover=["gender"], identity="gia",
                mechanism="window", epsilon=1.0, rank_window=[2, 5], seed=None,
                seed_source="os-entropy", samples=1)
    return PrivacyRecord(**{**args, **overrides})


def test_make_generator_never_returns_an_os_entropy_seed(known_entropy):
    generator, seed, source = make_generator(None)
    assert (seed, source) == (None, "os-entropy")
    assert generator.initial_seed() == SECRET   # the coins exist, only inside the generator
    g, seed, source = make_generator(5)
    assert (seed, source, g.initial_seed()) == (5, "user", 5)


@pytest.mark.parametrize("bad", [-1, 2**64, 1.5, "3", True])
def test_make_generator_rejects_bad_seeds(bad):
    with pytest.raises(ValueError, match="seed must"):
        make_generator(bad)


def test_os_entropy_seed_is_dropped_even_when_passed():
    # Old callers passed the seed they drew; the record still must not keep it.
    rec = _record(seed=SECRET)
    assert rec.seed is None and rec.to_dict()["seed"] is None
    assert str(SECRET) not in json.dumps(rec.to_dict()) + rec.describe()
    assert OS_ENTROPY_NOTE in rec.describe() and rec.warnings == []


def test_user_seed_is_kept_with_a_warning():
    rec = _record(seed=42, seed_source="user")
    assert rec.seed == 42 and USER_SEED_WARNING in rec.warnings
    text = rec.describe()
    assert "Seed: 42" in text and "voids the privacy guarantee" in text


def test_k_samples_state_the_total_budget():
    rec = _record(epsilon=2.0, samples=3)
    assert rec.epsilon == 2.0 and rec.epsilon_total == 6.0
    assert "3·ε = 6 in total" in rec.composition and "sequential composition" in rec.describe()
    single = _record(epsilon=0.5)
    assert single.epsilon_total == 0.5 and "total budget is ε = 0.5" in single.describe()


def test_infinite_epsilon_says_no_dp_guarantee_holds():
    rec = _record(epsilon=math.inf, samples=2)
    d = rec.to_dict()
    assert d["epsilon"] == "inf" and d["epsilon_total"] == "inf"
    assert rec.guarantee == NO_DP_NOTE and NO_DP_NOTE in rec.warnings
    assert "No differential-privacy guarantee holds" in rec.describe()
    json.dumps(d)


def test_deterministic_methods_have_no_budget_and_no_seed_warning():
    rec = _record(method="k-anonymity", identity="k-anonymity", mechanism=None, epsilon=None,
                  rank_window=None, seed=3, seed_source="user")
    assert rec.epsilon_total is None and rec.warnings == []
    assert "no ε-DP" in rec.guarantee and "k-anonymity baseline" in rec.describe()


def test_describe_is_plain_words_for_every_part():
    rec = _record(anonymize=["identity", "makeup"], recover=["age", "gender"], samples=2,
                  mechanism="strict")
    text = rec.describe()
    for part in ("GIA, strict mechanism, ranks 2..5", "ε = 1 per draw", "KAA): makeup",
                 "Recovered from the input: age, gender.", "Samples per face: 2.",
                 "2·ε = 2 in total", "e^ε", "pixels outside the face"):
        assert part in text, part


def test_reorganize_never_records_the_os_entropy_seed(tiny_bundle, known_entropy):
    codes = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    result = tiny_bundle.reorganize(codes, epsilon=1.5, samples=3)
    rec = result.record
    assert (rec.seed, rec.seed_source) == (None, "os-entropy")
    assert rec.epsilon == 1.5 and rec.epsilon_total == 4.5
    assert str(SECRET) not in json.dumps(rec.to_dict()) + rec.describe() + repr(rec)
    # The draw still used the (patched) OS entropy: replaying with that value reproduces it,
    # which is exactly why the value must stay secret.
    replay = tiny_bundle.reorganize(codes, epsilon=1.5, samples=3, seed=SECRET)
    assert torch.equal(replay.anonymized, result.anonymized)
    assert USER_SEED_WARNING in replay.record.warnings


def test_pipeline_and_cli_outputs_carry_no_os_entropy_seed(pipeline, astronaut, photo_bundle,
                                                          tiny_backbone, tmp_path, capsys,
                                                          known_entropy):
    from conftest import save_as_e4e_checkpoint
    from lreorg_hub.cli import main

    result = pipeline(astronaut, samples=2, epsilon=1.0)
    assert result.record.seed is None and result.record.epsilon_total == 2.0
    assert str(SECRET) not in json.dumps(result.to_dict())

    photo_bundle.save_pretrained(tmp_path / "bundle")
    save_as_e4e_checkpoint(tiny_backbone, tmp_path / "tiny.pt")
    astronaut.save(tmp_path / "a.png")
    code = main(["anonymize", str(tmp_path / "a.png"), "--out", str(tmp_path / "out"),
                 "--bundle", str(tmp_path / "bundle"), "--backbone", str(tmp_path / "tiny.pt"),
                 "--samples", "2", "--epsilon", "0.5", "--device", "cpu", "--quiet"])
    assert code == 0
    written = "".join(p.read_text() for p in (tmp_path / "out").glob("*.json"))
    printed = "".join(capsys.readouterr())
    assert str(SECRET) not in written + printed
    record = json.loads((tmp_path / "out" / "a.json").read_text())["record"]
    assert record["seed"] is None and record["seed_note"] == OS_ENTROPY_NOTE
    assert record["epsilon"] == 0.5 and record["epsilon_total"] == 1.0


def test_record_round_trips_through_its_dict():
    rec = _record(epsilon=math.inf, samples=2, seed=9, seed_source="user")
    back = PrivacyRecord.from_dict({**rec.to_dict(), "id": "not a record field"})
    assert back == rec and back.describe() == rec.describe()


def test_derived_seed_is_used_but_never_recorded(tiny_bundle):
    """A seed derived from a secret (a dataset's key, a video's run secret) draws like any seed
    but is recorded as its rule only, never as a value, not even in a repr or an f-string."""
    codes = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    secret = SecretSeed(SECRET)
    result = tiny_bundle.reorganize(codes, samples=2, seed=secret)
    rec = result.record
    assert (rec.seed, rec.seed_source) == (None, "derived") and rec.warnings == []
    assert DERIVED_SEED_NOTE in rec.describe()
    shown = json.dumps(rec.to_dict()) + rec.describe() + repr(rec) + repr(secret) + f"{secret}"
    assert str(SECRET) not in shown
    plain = tiny_bundle.reorganize(codes, samples=2, seed=SECRET)  # the same coins
    assert torch.equal(plain.anonymized, result.anonymized)


def test_public_record_holds_counts_not_detections(pipeline, astronaut):
    """What may be published: method, keywords, ε and total, seed rule, guarantee and face
    counts; the detector's boxes and scores and the CDFNet diagnostics are private."""
    result = pipeline(astronaut, seed=3)
    public = result.record.to_dict()
    assert public["faces"] == 1 and public["faces_found"] == 1 and public["faces_covered"] == {}
    text = json.dumps(public)
    for private in ("box", "score", "information_loss", "landmarks"):
        assert private not in text
    assert result.diagnostics["faces"][0]["box"] == result.faces[0].box
    assert 0 < result.diagnostics["faces"][0]["score"] <= 1
    assert set(result.diagnostics["information_loss"]) >= {"anonymize:identity"}


def test_a_method_without_a_draw_records_no_seed_rule(tiny_bundle):
    """k-anonymity (and KAA alone) draws nothing: its record says so, not "OS entropy"."""
    codes = torch.randn(2, 4, 16, generator=torch.Generator().manual_seed(0))
    for kwargs in (dict(identity="k-anonymity"), dict(anonymize=["makeup"], recover=["age"])):
        rec = tiny_bundle.reorganize(codes, **kwargs).record
        assert (rec.seed, rec.seed_source, rec.epsilon) == (None, "none", None)
        assert rec.seed_note == "No random draw: no seed was used."
