"""A visitor's form, turned into the library's one options type and checked once, up front,
before the photo is decoded. The form's text and numbers are parsed here; every rule is the
library's (``ProtectOptions.validate`` through ``LReOrgPipeline.check``), with the app's own
caps (``Runtime.limits``), and its message becomes one sentence for the page."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from PIL import Image, UnidentifiedImageError

from ..image.io import ImageLoadError, ImageTooLargeError, load_image
from ..method import keywords as kw
from ..pipeline.options import ProtectOptions
from ..pipeline.registry import METHODS
from .text import (METHOD_LABELS, RequestError, _sentence, budget_sentence,
                   page_sentence)

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["parse_seed", "options_from_form", "check_options", "read_photo", "spent_budget",
           "budget"]


def parse_seed(value) -> int | None:
    """"random" (or empty) → None (OS entropy); a whole number → that seed (its range is
    checked with the other options)."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "random")):
        return None
    if isinstance(value, str):
        try:
            return int(value.strip())  # exact: a float would round large seeds
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    elif isinstance(value, float) and value.is_integer():
        return int(value)
    raise RequestError("The seed must be 'random' or a whole number from 0 to 2^64−1.")


def _number(value, what: str) -> float | None:
    """A form number (None / "" = not given); text that is no number is the visitor's error."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RequestError(f"{what} must be a number.") from None


def options_from_form(runtime: "Runtime", method, anonymize=None, recover=None, epsilon=None,
                      mechanism=None, rank_low=None, rank_high=None, seed="random",
                      samples=None, strength=None) -> ProtectOptions:
    """The form's fields as ``ProtectOptions`` for ``method``. Numbers the method does not use
    (the page always sends its sliders) are dropped; ticked keywords are the visitor's
    choice and are refused where the method cannot serve them."""
    if not isinstance(method, str) or method not in runtime.methods:
        raise RequestError(f"The method {method!r} cannot run here: choose one of "
                           f"{', '.join(runtime.methods)}.")
    window = None
    if rank_low not in (None, "") or rank_high not in (None, ""):
        low, high = _number(rank_low, "The rank window start"), \
            _number(rank_high, "The rank window end")
        if low is None or high is None:
            raise RequestError("Give both ends of the rank window, or neither.")
        window = (low, high)
    count = _number(samples, "The number of samples")
    k1, k2 = tuple(kw.parse_list(anonymize)), tuple(kw.parse_list(recover))
    given = ProtectOptions(
        method=method, anonymize=k1, recover=k2, epsilon=_number(epsilon, "The privacy budget ε"),
        rank_window=window, mechanism=mechanism or None, seed=parse_seed(seed),
        samples=None if count is None else int(count) if count.is_integer() else count,
        strength=_number(strength, "The strength"))
    options = given.for_method(method)
    if METHODS[method].kind == "latent" and k2 and options.recover is None:
        options = replace(options, recover=k2)  # refused by the check: cannot recover
    return options


def check_options(runtime: "Runtime", options: ProtectOptions) -> ProtectOptions:
    """The one validation, against what runs here and the app's caps, as a page sentence."""
    if options.method not in runtime.methods:
        label = METHOD_LABELS.get(options.method)
        raise RequestError(
            f"The method {options.method!r} cannot run here: " + (
                "it needs model weights that are not loaded here." if label else
                f"choose one of {', '.join(runtime.methods)}."))
    try:
        return runtime.pipeline.check(options, limits=runtime.limits)
    except ValueError as exc:
        raise RequestError(page_sentence(str(exc), runtime.limits.max_epsilon,
                                         runtime.limits.max_samples)) from None


def spent_budget(runtime: "Runtime", options: ProtectOptions) -> float | None:
    """The privacy budget that checked ``options`` will spend on one photo: k·ε for the
    methods with an ε-DP identity draw when identity is anonymized, else None (what the
    record's ``epsilon_total`` says after the run)."""
    anonymize = kw.DEFAULT_ANONYMIZE if options.anonymize is None else \
        kw.parse_list(options.anonymize)
    if not METHODS[options.method].uses_epsilon or kw.IDENTITY not in anonymize:
        return None
    eps = runtime.default_epsilon if options.epsilon is None else options.epsilon
    return (options.samples or 1) * eps


def budget(runtime: "Runtime", method, anonymize, epsilon, samples) -> str:
    """The total privacy budget a choice will spend, in words; the choice is checked by the
    library like a request (a budget that is not a number, or out of range, is refused)."""
    options = check_options(runtime, options_from_form(runtime, method, anonymize, (),
                                                       epsilon, samples=samples))
    return budget_sentence(spent_budget(runtime, options), options.epsilon,
                           options.samples or 1)


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
        if exc.__cause__ is None:  # the library's own refusal (e.g. "has N frames")
            raise RequestError(_about_the_photo(str(exc))) from None
        raise RequestError("This image file is damaged or incomplete (for example truncated) "
                           "and cannot be decoded.") from None


def _about_the_photo(message: str) -> str:
    """The library names an in-memory source "image <N bytes in memory>"; the page says
    "This photo"."""
    if message.startswith("image <") and ">" in message:
        message = "This photo" + message[message.index(">") + 1:]
    return _sentence(message)
