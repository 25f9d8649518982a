import subprocess
import sys

import pytest

from lreorg_hub.method import keywords as kw


def test_registry_matches_paper_table_1():
    assert list(kw.KEYWORDS) == ["identity", "gender", "age", "expression", "makeup",
                                 "hair color", "curly", "length"]
    assert kw.KEYWORDS["gender"].subcategories == ("male", "female")
    assert kw.KEYWORDS["hair color"].subcategories == ("blond", "black", "brown", "gray")
    assert kw.KEYWORDS["identity"].subcategories == ()
    assert kw.KEYWORDS["gender"].prompts == ("a photo of a male.", "a photo of a female.")
    assert kw.KEYWORDS["expression"].prompts[1] == "a photo of a not smiling person."
    assert kw.KEYWORDS["hair color"].slug == "hair_color"
    assert kw.KEYWORDS["age"].condition_text == "age"


def test_defaults_are_the_papers():
    k1, k2 = kw.validate_selection(kw.DEFAULT_ANONYMIZE, kw.DEFAULT_RECOVER)
    assert k1 == ("identity",)
    assert k2 == ("gender", "age", "expression", "makeup")


def test_order_kept_and_identity_first():
    k1, k2 = kw.validate_selection(["makeup", "Identity", "age"], "expression,hair_color")
    assert k1 == ("identity", "makeup", "age")
    assert k2 == ("expression", "hair color")
    assert kw.validate_selection(None, None) == ((), ())


@pytest.mark.parametrize("anonymize, recover, message", [
    (["identity", "wings"], [], "unknown keyword 'wings'"),
    (["age", "age"], [], "age given more than once in anonymize"),
    ([], ["gender", "Gender"], "gender given more than once in recover"),
    (["identity", "age"], ["age"], "age cannot be both anonymized and recovered"),
])
def test_bad_selection_is_a_value_error_listing_valid_keywords(anonymize, recover, message):
    with pytest.raises(ValueError) as err:
        kw.validate_selection(anonymize, recover)
    text = str(err.value)
    assert message in text
    assert "valid keywords: identity, gender, age, expression, makeup, hair color, curly, " \
           "length" in text


def test_selection_limited_to_a_bundles_keywords():
    with pytest.raises(ValueError, match="valid keywords: identity, gender$"):
        kw.validate_selection(["identity"], ["age"], valid=["identity", "gender"])


def test_keywords_module_does_not_import_torch():
    code = "import sys, lreorg_hub.method.keywords; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
