"""Checks of a bundle's files before and after anything is built: config.json's values and
sizes, the safetensors tensors' names and shapes, and finite weights."""

from __future__ import annotations

import inspect
import json
import math
import os

import torch
from safetensors import SafetensorError, safe_open
from torch import nn

from ..method import keywords as kw
from ..method.cdfnet import CDFNet
from ..method.checks import check_epsilon

__all__ = ["BundleError", "read_config", "check_lreorg_config", "check_finite",
           "check_weights_match", "int_in"]


class BundleError(ValueError):
    """A bundle folder or repo that is not a loadable LReOrg bundle (clear, user-facing)."""


# Bounds that keep a bundle's config.json from asking for absurd memory or time before
# anything is built (the published sizes are far inside them).
_CDFNET_LIMITS = {"latent_dim": (1, 4096), "num_rows": (1, 64), "cond_dim": (1, 4096),
                  "num_blocks": (1, 64), "hidden_dim": (1, 16384), "dense_growth": (1, 4096),
                  "dense_layers": (0, 32)}


_MAX_GROUPS, _MAX_MEMBERS = 65_536, 1_000_000


_MAX_ELEMENTS = 2**31  # 8 GiB of float32: far above any real bundle


def read_config(config_file: str, where: str, a_what: str = "an LReOrg bundle") -> dict:
    """config.json as a dict, or a BundleError naming the file."""
    if not os.path.isfile(config_file):
        raise BundleError(f"{where} is not {a_what}: config.json is missing")
    try:
        with open(config_file, encoding="utf-8") as fh:
            config = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{config_file} is not valid JSON ({e}); the bundle's config.json "
                          f"is damaged") from None
    if not isinstance(config, dict):
        raise BundleError(f"{config_file} must hold a JSON object (the bundle's settings), "
                          f"got a JSON {type(config).__name__}")
    return config


def int_in(value, low: int, high: int, name: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise BundleError(f"{where}: {name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise BundleError(f"{where}: {name} = {value!r} is out of range ({low}..{high})")
    return int(value)


def check_lreorg_config(config: dict, where: str) -> None:
    """Range and type checks of config.json values, before any tensor is allocated."""
    net = config.get("cdfnet") or {}
    if not isinstance(net, dict):
        raise BundleError(f"{where}: cdfnet must be an object of CDFNet sizes, got {net!r}")
    sizes = {k: v.default for k, v in inspect.signature(CDFNet.__init__).parameters.items()
             if v.default is not inspect.Parameter.empty}
    unknown = sorted(set(net) - set(sizes))
    if unknown:
        raise BundleError(f"{where}: unknown cdfnet setting(s) {', '.join(unknown)}")
    sizes.update(net)
    for name, (low, high) in _CDFNET_LIMITS.items():
        int_in(sizes[name], low, high, f"cdfnet.{name}", where)
    clamp = sizes["clamp"]
    if isinstance(clamp, bool) or not isinstance(clamp, (int, float)) or not 0 < clamp < 100:
        raise BundleError(f"{where}: cdfnet.clamp must be a number in (0, 100), got {clamp!r}")
    groups = int_in(config.get("num_groups", 64), 1, _MAX_GROUPS, "num_groups", where)
    members = int_in(config.get("num_members", 1024), groups, _MAX_MEMBERS, "num_members",
                      where)
    window = config.get("rank_window")
    if window is not None:
        if not isinstance(window, list) or len(window) != 2:
            raise BundleError(f"{where}: rank_window must be [a, b], got {window!r}")
        a = int_in(window[0], 1, groups, "rank_window a", where)
        int_in(window[1], a, groups, "rank_window b", where)
    try:
        check_epsilon(config.get("epsilon", 1.0))
    except ValueError as e:
        raise BundleError(f"{where}: {e}") from None
    clip = config.get("laplace_clip_norm", 100.0)
    if isinstance(clip, bool) or not isinstance(clip, (int, float)) or not 0 < clip < math.inf:
        raise BundleError(f"{where}: laplace_clip_norm must be a finite number > 0, got "
                          f"{clip!r}")
    keywords = config.get("keywords")
    if keywords is not None:
        if not isinstance(keywords, list) or not all(isinstance(k, str) for k in keywords):
            raise BundleError(f"{where}: keywords must be a list of names, got {keywords!r}")
        try:
            [kw.get(k) for k in keywords]
        except ValueError as e:
            raise BundleError(f"{where}: {e}") from None
    for name in ("backbone", "text_encoder"):
        if not isinstance(config.get(name) or {}, dict):
            raise BundleError(f"{where}: {name} must be an object, got {config[name]!r}")
    rows, dim = sizes["num_rows"], sizes["latent_dim"]
    elements = (members + groups) * rows * dim
    if elements > _MAX_ELEMENTS:
        raise BundleError(f"{where}: num_members, num_groups, cdfnet.num_rows and latent_dim "
                          f"ask for a member bank of {elements * 4 / 2**30:.0f} GiB; refusing "
                          f"(limit {_MAX_ELEMENTS * 4 / 2**30:.0f} GiB)")


def check_finite(model: nn.Module, model_file: str) -> None:
    """Refuse NaN / ∞ weights: they would turn every output face into NaN pixels."""
    bad = [k for k, t in model.state_dict().items()
           if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise BundleError(f"{model_file} holds non-finite values (NaN or ∞) in "
                          f"{len(bad)} tensor(s), e.g. {', '.join(bad[:5])}; the weights "
                          f"are damaged")


def check_weights_match(model: nn.Module, model_file: str) -> None:
    """Compare the file's tensor names, shapes and dtype kinds with the model built from
    config.json (on the meta device: nothing allocated)."""
    try:
        with safe_open(model_file, framework="pt") as fh:
            found = {k: tuple(fh.get_slice(k).get_shape()) for k in fh.keys()}
            dtypes = {k: fh.get_slice(k).get_dtype() for k in fh.keys()}
    except (SafetensorError, OSError) as e:
        raise BundleError(f"{model_file} is not a readable safetensors file: it is "
                          f"corrupted or truncated ({e}); download the bundle again") \
            from None
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    wrong = sorted(k for k in set(found) & set(expected) if found[k] != expected[k])
    # A float weight stored as integers would load as whole numbers (int8 weights become
    # zeros), an index or flag stored as floats would be cast: the kind must match exactly.
    kinds = {k: _kind(v.dtype) for k, v in model.state_dict().items()}
    mistyped = sorted(k for k in set(dtypes) & set(kinds)
                      if _FILE_KINDS.get(dtypes[k], "?") != kinds[k])
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing from the weights, e.g. "
                        f"{', '.join(missing[:5])}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) in the weights, e.g. "
                        f"{', '.join(unexpected[:5])}")
    if wrong:
        problems.append("shape mismatch: " + "; ".join(
            f"{k} is {list(found[k])} in the weights but {list(expected[k])} per config.json"
            for k in wrong[:5]))
    if mistyped:
        problems.append("wrong dtype: " + "; ".join(
            f"{k} is {dtypes[k]} in the weights but must be {kinds[k]}" for k in mistyped[:5]))
    if problems:
        raise BundleError(f"{model_file}: config.json and model.safetensors do not match: "
                          + " | ".join(problems))


#: safetensors' dtype names by kind: every float weight may be stored in any float precision.
_FILE_KINDS = {**{d: "a float" for d in ("F16", "BF16", "F32", "F64")},
               **{d: "an integer" for d in ("I8", "I16", "I32", "I64", "U8", "U16", "U32",
                                             "U64")},
               "BOOL": "a bool"}


def _kind(dtype: torch.dtype) -> str:
    if dtype == torch.bool:
        return "a bool"
    return "a float" if dtype.is_floating_point else "an integer"
