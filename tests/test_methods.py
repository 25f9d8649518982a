"""The method registry and the one up-front validation of a user's options."""

import math

import pytest

from lreorg_hub import cli
from lreorg_hub.image.baselines import BASELINES
from lreorg_hub.pipeline.registry import MAX_SAMPLES
from lreorg_hub.pipeline.registry import METHODS
from lreorg_hub.pipeline.options import (Limits, ProtectOptions, check_faces, check_method,
                                         check_output_size)


def test_registry_names_kinds_and_labels():
    assert list(METHODS) == ["lreorg", "style-mix", "laplace", "k-anonymity", "blur",
                             "pixelate", "mask"]
    assert METHODS["style-mix"].label == "style-mix (training-free baseline)"
    assert {m.name for m in METHODS.values() if m.kind == "image"} == set(BASELINES)
    assert METHODS["style-mix"].needs == "backbone" and METHODS["blur"].needs == "nothing"
    assert [m.name for m in METHODS.values() if m.uses_epsilon] == ["lreorg", "style-mix",
                                                                    "laplace"]
    fields = set(ProtectOptions.__dataclass_fields__)
    assert all(set(m.options) <= fields for m in METHODS.values())
    # the CLI's torch-free copies agree with the registry
    parser = cli.build_parser()  # the CLI offers exactly the registry's methods
    anonymize = parser._subparsers._group_actions[0].choices["anonymize"]
    method = next(a for a in anonymize._actions if a.dest == "method")
    assert tuple(method.choices) == tuple(METHODS) and MAX_SAMPLES == 16


def test_defaults_are_resolved_per_method():
    opts = ProtectOptions(method="lreorg").validate()
    assert opts.anonymize == ("identity",)
    assert opts.recover == ("gender", "age", "expression", "makeup")
    assert opts.mechanism == "window" and opts.samples == 1 and opts.epsilon is None
    assert ProtectOptions(method="lreorg", anonymize="gender").validate().recover == (
        "age", "expression", "makeup")            # the default never clashes with a choice
    assert ProtectOptions(method="style-mix").validate().recover is None
    assert ProtectOptions(method="k-anonymity").validate().samples is None
    assert ProtectOptions(method="blur").validate().strength == 0.1
    assert ProtectOptions(method="mask").validate().strength == 1.0
    assert ProtectOptions(method="lreorg", recover=[]).validate().recover == ()
    assert ProtectOptions(method="lreorg", epsilon=math.inf).validate().epsilon == math.inf


@pytest.mark.parametrize("method", list(METHODS))
def test_validation_is_idempotent(method):
    once = ProtectOptions(method=method).validate()
    assert once.validate() == once


def test_for_method_drops_what_does_not_apply():
    opts = ProtectOptions(epsilon=2.0, seed=4, samples=3, strength=0.3, rank_window=(2, 5),
                          mechanism="strict", recover="age")
    assert opts.for_method("blur") == ProtectOptions(method="blur", strength=0.3)
    assert opts.for_method("k-anonymity") == ProtectOptions(method="k-anonymity", recover="age")
    assert opts.for_method("style-mix") == ProtectOptions(
        method="style-mix", epsilon=2.0, seed=4, samples=3, rank_window=(2, 5),
        mechanism="strict")
    for method in METHODS:
        opts.for_method(method).validate()      # always valid for its method
    assert ProtectOptions(anonymize="gender", epsilon=1.0).for_method("lreorg") == \
        ProtectOptions(method="lreorg", anonymize="gender")


@pytest.mark.parametrize("method, options, message", [
    ("lreorg", dict(epsilon=-0.5), r"epsilon must be >= 0 \(the privacy budget\), got -0.5"),
    ("lreorg", dict(epsilon=float("nan")), "epsilon must be >= 0"),
    ("lreorg", dict(epsilon="lots"), r"epsilon must be a number >= 0 \(the privacy budget\), "
                                   r"got 'lots'"),
    ("lreorg", dict(epsilon=True), "epsilon must be a number"),
    ("laplace", dict(epsilon=0), "the Laplace mechanism needs epsilon > 0"),
    ("lreorg", dict(rank_window=(5, 2)), r"rank_window \(a=5, b=2\) is empty"),
    ("lreorg", dict(rank_window=(0, 3)), r"rank_window \(a=0, b=3\) must lie within 1..m"),
    ("lreorg", dict(rank_window=(2.5, 4)), "rank_window bounds must be an integer"),
    ("lreorg", dict(rank_window="2,4"), "rank_window must be a pair of integers"),
    ("lreorg", dict(mechanism="laplace"), "mechanism must be 'window' or 'strict'"),
    ("lreorg", dict(samples=0), r"samples must be in 1..16 \(each sample is one more draw"),
    ("lreorg", dict(samples=10 ** 6), "samples must be in 1..16"),
    ("lreorg", dict(samples=2.5), "samples must be an integer, got 2.5"),
    ("lreorg", dict(seed=-1), r"seed must be in 0..18446744073709551615 \(2\*\*64 - 1\)"),
    ("lreorg", dict(seed=2 ** 64), "seed must be in 0.."),
    ("lreorg", dict(seed="abc"), "seed must be an integer, got 'abc'"),
    ("lreorg", dict(seed=1.5), "seed must be an integer"),
    ("lreorg", dict(anonymize="face"), "unknown keyword 'face'; valid keywords: identity"),
    ("lreorg", dict(anonymize=""), "nothing to anonymize"),
    ("lreorg", dict(anonymize="identity", recover="identity"),
     "identity cannot be both anonymized and recovered"),
    ("lreorg", dict(anonymize="age,age"), "age given more than once in anonymize"),
    ("lreorg", dict(anonymize=[1, 2]), "anonymize and recover must be keyword names"),
    ("lreorg", dict(anonymize="gender", epsilon=1.0),
     "epsilon applies only when identity is anonymized"),
    ("laplace", dict(anonymize="gender"), "method 'laplace' anonymizes identity"),
    ("style-mix", dict(anonymize="identity,age"), "style-mix anonymizes identity only"),
    ("style-mix", dict(recover="age"), "recover does not apply to method 'style-mix'"),
    ("style-mix", dict(style_rows=(3, 3)), r"style rows \[3, 3\) are empty"),
    ("k-anonymity", dict(seed=1, samples=2), "seed, samples do not apply to method "
                                             "'k-anonymity'; it takes: anonymize, recover"),
    ("lreorg", dict(strength=0.5), "strength does not apply to method 'lreorg'"),
    ("blur", dict(strength=1e9),
     r"strength for blur must be a number in \(0, 1\] \(σ as a fraction"),
    ("pixelate", dict(strength=1000), r"strength for pixelate must be a number in \(0, 1\]"),
    ("mask", dict(strength=1.5), r"strength for mask must be a number in \(0, 1\] \(opacity\)"),
    ("blur", dict(strength=0), r"strength for blur must be a number in \(0, 1\]"),
    ("blur", dict(strength=float("inf")), r"strength for blur must be a number in \(0, 1\]"),
    ("pixelate", dict(strength="big"),
     r"strength for pixelate must be a number in \(0, 1\] .*, got 'big'"),
    ("blur", dict(seed=3), "seed does not apply to method 'blur'; it takes: strength"),
    ("mask", dict(anonymize="identity"), "anonymize does not apply to method 'mask'"),
])
def test_bad_options_are_one_clear_sentence(method, options, message):
    with pytest.raises(ValueError, match=message) as info:
        ProtectOptions(method=method, **options).validate()
    assert "\n" not in str(info.value)


def test_limits_of_the_loaded_weights():
    with pytest.raises(ValueError, match=r"rank_window \(a=2, b=9\) must lie within 1..8"):
        ProtectOptions(method="lreorg", rank_window=(2, 9)).validate(num_groups=8)
    with pytest.raises(ValueError, match=r"style rows \[2, 12\) go past the code's 10 W\+ rows"):
        ProtectOptions(method="style-mix", style_rows=(2, 12)).validate(num_rows=10)
    with pytest.raises(ValueError, match="unknown keyword 'makeup'; valid keywords: identity, "
                                         "gender"):
        ProtectOptions(method="lreorg", anonymize="makeup").validate(
            keywords=["identity", "gender"])
    # the default recovery keeps only the keywords the bundle has
    assert ProtectOptions(method="lreorg").validate(
        keywords=["identity", "age"]).recover == ("age",)


def test_method_faces_and_output_size_checks():
    with pytest.raises(ValueError, match="method must be one of lreorg, style-mix, laplace"):
        check_method("swirl")
    assert check_faces(None) is None and check_faces([2, 0, 2]) == (2, 0)
    for faces, message in [([], "no face selected"), ([-1], "face indices count from 0"),
                           ([0.5], "a face index must be an integer"),
                           ("0", "faces must be a list of face indices"),
                           (list(range(300)), "at most 256 face indices")]:
        with pytest.raises(ValueError, match=message):
            check_faces(faces)
    assert check_output_size(None) is None and check_output_size(256, 1024) == 256
    for size, message in [(100, "a power of two >= 4"), (2, "a power of two >= 4"),
                          (2048, "larger than the generator's 1024 px"),
                          (True, "output size must be an integer")]:
        with pytest.raises(ValueError, match=message):
            check_output_size(size, 1024)


def test_surface_limits_and_call_options():
    app = Limits(max_samples=8, max_epsilon=10.0)
    with pytest.raises(ValueError, match="samples must be in 1..8"):
        ProtectOptions(method="lreorg", samples=9).validate(limits=app)
    with pytest.raises(ValueError, match="epsilon must be at most 10 here"):
        ProtectOptions(method="lreorg", epsilon=11).validate(limits=app)
    with pytest.raises(ValueError, match="choose a method"):
        ProtectOptions().validate()
    assert ProtectOptions().validate(default_method="style-mix").method == "style-mix"
    assert ProtectOptions(method="lreorg").validate().small_faces == "blur"
    for options, message in [
            (dict(method="blur", aligned=True), "works on whole photos, not on aligned crops"),
            (dict(aligned=True, faces=[0]), "faces cannot be chosen for an aligned crop"),
            (dict(small_faces="hide"), "small_faces must be one of blur, mask, keep")]:
        with pytest.raises(ValueError, match=message):
            ProtectOptions(**{"method": "lreorg", **options}).validate()
