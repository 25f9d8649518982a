"""Deterministic, global-RNG-free parameter initialisation and sampling helpers.

Library code never touches the global RNG: every random draw goes through a
``torch.Generator``. When the caller gives none, initialisation uses a fixed seed (so two
fresh models are equal) and sampling uses a generator seeded from OS entropy.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .rng import normal, uniform

__all__ = ["default_init_generator", "entropy_generator", "randn", "randn_", "kaiming_uniform_",
           "uniform_", "build_uninitialised"]

INIT_SEED = 0


def default_init_generator() -> torch.Generator:
    """The generator used for initial weights when none is given (fixed seed, CPU)."""
    return torch.Generator().manual_seed(INIT_SEED)


def entropy_generator(device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator on ``device`` seeded from OS entropy (non-reproducible on purpose)."""
    g = torch.Generator(device=device)
    g.seed()
    return g


def randn(shape, *, generator: torch.Generator | None, device=None,
          dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, 1) samples drawn with ``generator`` (OS entropy when None), placed on ``device``.

    A generator on another device than ``device`` samples on its own device and the result
    is moved, so a CPU generator gives the same numbers whatever the model's device.
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if generator is None:
        generator = entropy_generator(device)
    return normal(shape, generator, device=device, dtype=dtype)


def _materialised(t: torch.Tensor) -> bool:
    return t.device.type != "meta"


@torch.no_grad()
def randn_(t: torch.Tensor, generator: torch.Generator, std: float = 1.0) -> torch.Tensor:
    """Fill ``t`` in place with N(0, std²) drawn from ``generator`` (no-op on meta)."""
    if _materialised(t):
        t.copy_(normal(t.shape, generator, device=t.device, dtype=t.dtype) * std)
    return t


@torch.no_grad()
def uniform_(t: torch.Tensor, generator: torch.Generator, bound: float) -> torch.Tensor:
    """Fill ``t`` in place with U(-bound, bound) drawn from ``generator`` (no-op on meta)."""
    if _materialised(t):
        u = uniform(t.shape, generator, device=t.device, dtype=t.dtype)
        t.copy_(u.mul_(2 * bound).sub_(bound))
    return t


def kaiming_uniform_(weight: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """PyTorch's default conv init (kaiming uniform, a=√5 → bound 1/√fan_in)."""
    fan_in = weight[0].numel()
    return uniform_(weight, generator, 1.0 / math.sqrt(fan_in))


def build_uninitialised(cls, *args, **kwargs) -> nn.Module:
    """Instantiate a torch layer (``nn.Conv2d``…) without running its global-RNG init.

    The layer is built on the meta device and materialised, uninitialised, on the current
    default device (which is ``meta`` again inside a ``torch.device("meta")`` context).
    The owner must initialise it afterwards.
    """
    device = torch.empty(0).device
    module = cls(*args, device="meta", **kwargs)
    return module.to_empty(device=device)
