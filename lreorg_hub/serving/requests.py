"""A visitor's choices, checked once, up front, before the photo is decoded."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from ..image.baselines import BASELINES
from ..image.io import ImageLoadError, ImageTooLargeError, load_image
from ..method import keywords as kw
from ..method.rng import SEED_MAX
from ..pipeline.options import STRENGTH_LIMITS
from ..pipeline.registry import METHODS
from .text import METHOD_LABELS, RequestError

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["ProtectRequest", "parse_seed", "check_request", "read_photo", "EPSILON_RANGE",
           "MAX_SAMPLES"]

#: The ε a visitor can choose (the slider's range; the API enforces it too).
EPSILON_RANGE = (0.0, 10.0)


MAX_SAMPLES = 8


@dataclass
class ProtectRequest:
    """A visitor's choices, checked once, up front, before the photo is decoded."""

    method: str
    anonymize: tuple[str, ...] = ()
    recover: tuple[str, ...] = ()
    epsilon: float | None = None
    mechanism: str = "window"
    rank_window: tuple[int, int] | None = None
    seed: int | None = None
    samples: int = 1
    strength: float | None = None

    @property
    def spends_budget(self) -> bool:
        return METHODS[self.method].uses_epsilon and kw.IDENTITY in self.anonymize


def parse_seed(value) -> int | None:
    """"random" (or empty) → None (OS entropy); a whole number 0..2^64-1 → that seed."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "random")):
        return None
    number = None
    if isinstance(value, str):
        try:
            number = int(value.strip())  # exact: a float would round large seeds
        except ValueError:
            number = None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    if number is None or not 0 <= number <= SEED_MAX:
        raise RequestError("The seed must be 'random' or a whole number from 0 to 2^64−1.")
    return number


def _number(value, what: str, low: float, high: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not (math.isfinite(number) and low <= number <= high):
        raise RequestError(f"{what} must be a number from {low:g} to {high:g}.")
    return number


def check_request(runtime: Runtime, method, anonymize, recover, epsilon, mechanism="window",
                  rank_low=None, rank_high=None, seed="random", samples=1,
                  strength=None) -> ProtectRequest:
    """Validate everything a visitor chose (range, type, combination) with page sentences."""
    if method not in runtime.methods:
        label = METHOD_LABELS.get(method)
        raise RequestError(
            f"The method {method!r} cannot run here: " + (
                "it needs weights that are not loaded (see the banner)." if label else
                f"choose one of {', '.join(runtime.methods)}."))
    seed_value = parse_seed(seed)
    if method in BASELINES:
        top = STRENGTH_LIMITS[method][1]
        value = None if strength in (None, "") else _number(strength, "The strength", 0, top)
        return ProtectRequest(method=method, seed=seed_value, strength=value)
    k1, k2 = kw.parse_list(anonymize), kw.parse_list(recover)
    if not k1:
        raise RequestError("Choose at least one thing to anonymize (identity is the usual "
                           "choice).")
    both = [n for n in k1 if n in k2]
    if both:
        raise RequestError(f"'{both[0]}' is ticked both to anonymize and to recover; untick "
                           f"it in one of the two lists.")
    if k2 and "recover" not in METHODS[method].options:
        raise RequestError(f"The {method} method cannot recover attributes (it has no CDFNet); "
                           f"untick the Recover list or choose lreorg.")
    support = runtime.pipeline.keywords(method)
    for name, group in [(n, support.anonymize) for n in k1] + [(n, support.recover) for n in k2]:
        if name not in group:
            why = support.unavailable.get(name) or "not a keyword this app knows"
            raise RequestError(f"'{name}' cannot be used with {method}: {why}.")
    if method != "lreorg" and k1 != [kw.IDENTITY]:
        raise RequestError(f"The {method} method anonymizes identity only; untick the other "
                           f"keywords or choose lreorg.")
    low, high = EPSILON_RANGE
    eps = _number(epsilon, "The privacy budget ε", low, high)
    if mechanism not in ("window", "strict"):
        raise RequestError("The mechanism must be 'window' or 'strict'.")
    window = None
    if rank_low not in (None, "") or rank_high not in (None, ""):
        groups = runtime.groups(method)
        a = _number(rank_low, "The rank window start", 1, groups)
        b = _number(rank_high, "The rank window end", 1, groups)
        if a != int(a) or b != int(b) or a > b:
            raise RequestError(f"The rank window must be whole numbers with 1 ≤ start ≤ end ≤ "
                               f"{groups}.")
        window = (int(a), int(b))
    count = _number(samples, "The number of samples", 1, MAX_SAMPLES)
    if count != int(count):
        raise RequestError(f"The number of samples must be a whole number from 1 to "
                           f"{MAX_SAMPLES}.")
    if "samples" not in METHODS[method].options:  # deterministic: one output
        count = 1
    return ProtectRequest(method=method, anonymize=tuple(k1), recover=tuple(k2), epsilon=eps,
                          mechanism=mechanism, rank_window=window, seed=seed_value,
                          samples=int(count))


def read_photo(data: bytes | None, max_pixels: int) -> Image.Image:
    """Decode an upload in memory, with one clear sentence for every way it can fail."""
    if data is None:
        raise RequestError("Please upload a photo first.")
    if len(data) == 0:
        raise RequestError("The uploaded file is empty.")
    try:
        return load_image(bytes(data), max_pixels=max_pixels)
    except ImageTooLargeError as exc:
        if "decompression bomb" in str(exc):
            raise RequestError("This file was refused as a possible decompression bomb: it "
                               "claims far more pixels than any photo.") from None
        raise RequestError(f"This photo has more than {max_pixels / 1e6:g} million pixels; "
                           f"please downscale it and try again.") from None
    except ImageLoadError as exc:
        if isinstance(exc.__cause__, UnidentifiedImageError):
            raise RequestError("This file is not an image that can be read (use JPEG, PNG or "
                               "WebP).") from None
        raise RequestError("This image file is damaged or incomplete (for example truncated) "
                           "and cannot be decoded.") from None
