"""The keyword registry (paper Table 1, SPEC §2) and validation of a user's choices.

Pure Python on purpose: the CLI, the app and the docs read it without importing torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

IDENTITY = "identity"


@dataclass(frozen=True)
class Keyword:
    """One keyword k_i: its condition text, and the sub-categories C_i with template T_i."""

    name: str
    subcategories: tuple[str, ...] = ()
    template: str = "a photo of a {}."
    region: str = "inner"  # "inner" face attribute or "outer" (hair); the paper's advice differs

    @property
    def condition_text(self) -> str:
        """The text whose CLIP embedding is the condition k^f (the keyword word itself)."""
        return self.name

    @property
    def prompts(self) -> tuple[str, ...]:
        """t_ij: the template filled with each sub-category (CLIP zero-shot prompts)."""
        return tuple(self.template.format(c) for c in self.subcategories)

    @property
    def slug(self) -> str:
        """A name usable as a module / tensor key ("hair color" -> "hair_color")."""
        return self.name.replace(" ", "_")


KEYWORDS: dict[str, Keyword] = {
    k.name: k
    for k in (
        Keyword(IDENTITY),
        Keyword("gender", ("male", "female"), "a photo of a {}."),
        Keyword("age", ("young", "old"), "a photo of a {} person."),
        Keyword("expression", ("smiling", "not smiling"), "a photo of a {} person."),
        Keyword("makeup", ("heavy makeup", "no makeup"), "a photo of a person with {}."),
        Keyword("hair color", ("blond", "black", "brown", "gray"),
                "a photo of a person with {} hair.", region="outer"),
        Keyword("curly", ("curly", "straight"), "a photo of a person with {} hair.", region="outer"),
        Keyword("length", ("long", "short"), "a photo of a person with {} hair.", region="outer"),
    )
}

DEFAULT_ANONYMIZE: tuple[str, ...] = (IDENTITY,)
DEFAULT_RECOVER: tuple[str, ...] = ("gender", "age", "expression", "makeup")


def normalize(name: str) -> str:
    """Case-insensitive, and `hair_color` / `hair-color` mean `hair color`."""
    return " ".join(str(name).strip().lower().replace("_", " ").replace("-", " ").split())


def get(name: str, valid: Iterable[str] | None = None) -> Keyword:
    """Look a keyword up by (normalised) name; a ValueError lists the valid names."""
    valid_names = list(KEYWORDS) if valid is None else list(valid)
    key = normalize(name)
    if key not in valid_names or key not in KEYWORDS:
        raise ValueError(f"unknown keyword {name!r}; valid keywords: {', '.join(valid_names)}")
    return KEYWORDS[key]


def parse_list(value: str | Sequence[str] | None) -> list[str]:
    """Accept "gender,age", ["gender", "age"] or None (nothing); normalise each name."""
    if value is None:
        return []
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    return [normalize(v) for v in value if str(v).strip()]


def validate_selection(
    anonymize: str | Sequence[str] | None,
    recover: str | Sequence[str] | None,
    valid: Iterable[str] | None = None,
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Check the user's K1 (anonymize) and K2 (recover) and return them in run order.

    Order is the order given, except that identity always runs first in K1 (SPEC §1).
    Raises ValueError, naming the valid keywords, for an unknown or repeated keyword or one
    that is both anonymized and recovered.
    """
    valid_names = list(KEYWORDS) if valid is None else list(valid)
    listing = ", ".join(valid_names)
    k1, k2 = parse_list(anonymize), parse_list(recover)
    for which, names in (("anonymize", k1), ("recover", k2)):
        for name in names:
            get(name, valid_names)
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"keyword(s) {', '.join(repeated)} given more than once in "
                             f"{which}; valid keywords: {listing}")
    both = [n for n in k1 if n in k2]
    if both:
        raise ValueError(f"keyword(s) {', '.join(both)} cannot be both anonymized and "
                         f"recovered; valid keywords: {listing}")
    if IDENTITY in k1:
        k1 = [IDENTITY] + [n for n in k1 if n != IDENTITY]
    return tuple(k1), tuple(k2)
