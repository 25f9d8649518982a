"""The rules for a user's choices, each written once: ε, the rank window, the seed and the
number of samples. Every surface (CLI, app, datasets, evaluation, Python API) and the method
itself call these, so a value is accepted or refused with the same sentence everywhere.

Plain Python (no torch), so the CLI can check arguments before anything heavy is imported.
"""

from __future__ import annotations

import math
import numbers

__all__ = ["SEED_MAX", "check_epsilon", "check_rank_window", "check_seed", "check_samples",
           "check_integer"]

#: Largest seed a torch.Generator accepts (manual_seed takes 64-bit unsigned values).
SEED_MAX = 2**64 - 1


def check_integer(value, what: str) -> int:
    """A whole number given as an int (or an integral float); bools and text are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or \
            not math.isfinite(value) or int(value) != value:
        raise ValueError(f"{what} must be an integer, got {value!r}")
    return int(value)


def check_epsilon(value, upper: float = math.inf) -> float:
    """ε, the privacy budget of one draw: a number >= 0 (∞ allowed: a deterministic choice
    with no DP guarantee) and at most ``upper`` (a surface may cap it, e.g. the app)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"epsilon must be a number >= 0 (the privacy budget), got {value!r}")
    eps = float(value)
    if math.isnan(eps) or eps < 0:
        raise ValueError(f"epsilon must be >= 0 (the privacy budget), got {value!r}")
    if eps > upper:
        raise ValueError(f"epsilon must be at most {upper:g} here, got {value!r}")
    return eps


def check_rank_window(rank_window, num_groups: int | None = None) -> tuple[int, int]:
    """The window [a, b] of allowed group ranks: integers with 1 ≤ a ≤ b ≤ m (m = the number
    of identity groups, when known)."""
    if isinstance(rank_window, (str, bytes)):
        raise ValueError(f"rank_window must be a pair of integers (a, b), got {rank_window!r}")
    try:
        a, b = rank_window
    except (TypeError, ValueError):
        raise ValueError(f"rank_window must be a pair of integers (a, b), got "
                         f"{rank_window!r}") from None
    a, b = check_integer(a, "rank_window bounds"), check_integer(b, "rank_window bounds")
    if a > b:
        raise ValueError(f"rank_window (a={a}, b={b}) is empty: a must be <= b")
    if a < 1 or (num_groups is not None and b > num_groups):
        upper = num_groups if num_groups is not None else "m"
        raise ValueError(f"rank_window (a={a}, b={b}) must lie within 1..{upper} "
                         f"(the number of identity groups)")
    return a, b


def check_seed(value) -> int:
    """A seed the user chose: an integer in 0..2⁶⁴−1 (None, OS entropy, is handled by the
    caller: it is never a value to check, record or show)."""
    seed = check_integer(value, "seed")
    if not 0 <= seed <= SEED_MAX:
        raise ValueError(f"seed must be in 0..{SEED_MAX} (2**64 - 1), got {value!r}")
    return seed


def check_samples(value, upper: int) -> int:
    """How many draws per face are released: 1..upper (k samples spend k·ε)."""
    samples = check_integer(value, "samples")
    if not 1 <= samples <= upper:
        raise ValueError(f"samples must be in 1..{upper} (each sample is one more draw: k "
                         f"samples spend k·ε), got {value!r}")
    return samples
