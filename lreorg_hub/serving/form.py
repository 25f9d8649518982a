"""Which controls the page shows for a method, read off the methods registry (the options a
method takes) and what the loaded weights serve; one sentence says why the rest is hidden."""

from __future__ import annotations

from dataclasses import dataclass

from ..method import keywords as kw
from ..pipeline.options import STRENGTH_LIMITS
from ..pipeline.registry import METHODS
from .runtime import Runtime
from .text import SHORT_NAMES, keyword_note, strength_info

__all__ = ["MethodForm", "method_form"]


@dataclass(frozen=True)
class MethodForm:
    """What the page shows for one method (None / False: hidden)."""

    method: str
    anonymize: list[str]          # keywords the method can replace (shown when there is a
    anonymize_value: list[str]    # choice: more than identity alone)
    show_anonymize: bool
    recover: list[str]            # keywords it can keep (identity never)
    recover_value: list[str]
    show_recover: bool
    budget: bool                  # the privacy budget ε
    versions: bool                # how many versions (samples)
    seed: bool
    advanced: bool                # mechanism and rank window
    groups: int                   # the rank window's upper end
    strength: tuple[float, float] | None   # (default, max) for the image methods
    strength_info: str
    note: str                     # why some controls are hidden, in one sentence


def method_form(runtime: Runtime, method: str) -> MethodForm:
    info = METHODS[method]
    anonymize, recover, unavailable = runtime.keyword_choices(method)
    takes = set(info.options)
    show_anonymize = "anonymize" in takes and anonymize != [kw.IDENTITY]
    show_recover = "recover" in takes and bool(recover)
    name = SHORT_NAMES.get(method, method)
    if info.kind == "image":
        note = (f"{name.capitalize()} covers each whole face: only its strength can be set, "
                f"and it gives no formal privacy guarantee.")
    elif not info.uses_epsilon:
        note = (f"{name} gives the same result every time: it uses no privacy budget, "
                f"versions or seed, and gives no formal guarantee.")
    elif not show_recover:
        note = (f"{name} replaces the identity only; keeping attributes needs LReOrg with a "
                f"trained model.")
    else:
        note = keyword_note(unavailable, anonymize + recover)
    return MethodForm(
        method=method, anonymize=anonymize,
        anonymize_value=[k for k in kw.DEFAULT_ANONYMIZE if k in anonymize],
        show_anonymize=show_anonymize, recover=recover,
        recover_value=[k for k in kw.DEFAULT_RECOVER if k in recover],
        show_recover=show_recover, budget="epsilon" in takes, versions="samples" in takes,
        seed="seed" in takes,
        advanced=bool({"mechanism", "rank_window"} & takes), groups=runtime.groups(method),
        strength=STRENGTH_LIMITS.get(method) if "strength" in takes else None,
        strength_info=strength_info(method) if "strength" in takes else "", note=note)
