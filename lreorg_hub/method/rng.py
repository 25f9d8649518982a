"""Randomness, one policy: every draw goes through a ``torch.Generator`` made from the user's
seed or from OS entropy; torch's global RNG is never used.

A seed drawn from OS entropy lives only inside its generator: :func:`make_generator` does not
return it, so nothing downstream can record or show it (SPEC §8, secret coins).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

import torch

from .checks import SEED_MAX, check_seed

__all__ = ["SEED_MAX", "SecretSeed", "derive_secret", "derive_seed", "make_generator",
           "fresh_generator", "uniform", "normal", "randint", "randperm", "categorical"]


class SecretSeed(int):
    """A seed derived from a secret the caller keeps (a dataset run's key file, a video run's
    secret): it seeds the draw like any seed, but like OS entropy it is never recorded — the
    record says where the coins came from (``seed_source = "derived"``), not what they were."""

    def __repr__(self) -> str:  # not even in a traceback or a log line
        return "SecretSeed(<not shown>)"

    def __format__(self, spec: str) -> str:
        return repr(self)

    __str__ = __repr__


def derive_secret(secret: bytes, label: str, context: bytes = b"") -> bytes:
    """HMAC-SHA256(secret, context ‖ label): a 32-byte secret of its own for ``label`` (a
    dataset item, a video's track), reproducible only by whoever keeps ``secret``. The one
    derivation rule: :func:`derive_seed` is its first 63 bits."""
    return hmac.new(secret, context + label.encode("utf-8", "surrogatepass"),
                    hashlib.sha256).digest()


def derive_seed(secret: bytes, label: str, context: bytes = b"") -> SecretSeed:
    """The 63-bit seed of :func:`derive_secret` (its first 8 bytes), as a :class:`SecretSeed`:
    reproducible by whoever keeps ``secret``, unpredictable and never recorded for anyone
    else (a dataset item's coins, a video track's coins)."""
    return SecretSeed(int.from_bytes(derive_secret(secret, label, context)[:8], "big") >> 1)


def fresh_generator() -> torch.Generator:
    """A CPU generator seeded from OS entropy: what every function that draws uses when it is
    given no generator (the one randomness policy; torch's global RNG is never used)."""
    return make_generator(None)[0]


def make_generator(seed: int | None) -> tuple[torch.Generator, int | None, str]:
    """A CPU torch.Generator seeded from the user's seed, a :class:`SecretSeed`, or OS entropy
    when None.

    Returns (generator, the seed to record or None, "user" | "derived" | "os-entropy"). An
    OS-entropy or secret seed is *not* returned: it only lives inside the generator, so
    nothing downstream can record or show it.
    """
    generator = torch.Generator(device="cpu")
    if seed is None:
        generator.manual_seed(secrets.randbits(63))
        return generator, None, "os-entropy"
    value = check_seed(seed)
    generator.manual_seed(value)
    if isinstance(seed, SecretSeed):
        return generator, None, "derived"
    return generator, value, "user"


# -- random draws on any device -------------------------------------------------------------
# The rule that makes one seed work whatever the model's device: random numbers are only ever
# *created* on the generator's own device (a creation op with generator=) and then moved to
# where they are used. No op is given a generator together with input tensors, because CUDA
# kernels refuse a CPU generator (and a CUDA generator cannot drive CPU kernels). The same
# CPU generator therefore gives the same draws on CPU and on CUDA.


def _placed(t: torch.Tensor, device) -> torch.Tensor:
    return t if device is None else t.to(device)


def uniform(shape, generator: torch.Generator, device=None,
            dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """U[0, 1) samples drawn on ``generator``'s device, placed on ``device`` (default: there)."""
    return _placed(torch.rand(shape, generator=generator, device=generator.device, dtype=dtype),
                   device)


def normal(shape, generator: torch.Generator, device=None,
           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """N(0, 1) samples drawn on ``generator``'s device, placed on ``device``."""
    return _placed(torch.randn(shape, generator=generator, device=generator.device, dtype=dtype),
                   device)


def randint(high: int, shape, generator: torch.Generator, device=None) -> torch.Tensor:
    """Integers uniform in [0, high) drawn on ``generator``'s device, placed on ``device``."""
    return _placed(torch.randint(high, shape, generator=generator, device=generator.device),
                   device)


def randperm(n: int, generator: torch.Generator, device=None) -> torch.Tensor:
    """A uniform permutation of 0..n-1 drawn on ``generator``'s device, placed on ``device``."""
    return _placed(torch.randperm(n, generator=generator, device=generator.device), device)


def categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One index per row of ``probs`` (…, m) with P(j) ∝ probs[…, j], on ``probs``' device.

    Inverse-CDF sampling from one float64 uniform per row: u·Σp falls in [c_{j−1}, c_j) with
    probability p_j / Σp (c = cumulative sums). Entries with p = 0 have an empty interval and
    are never drawn. The uniform comes from :func:`uniform`, so any generator device works.
    """
    p = probs.to(torch.float64)
    cdf = torch.cumsum(p, dim=-1)
    u = uniform(p.shape[:-1] + (1,), generator, device=p.device, dtype=torch.float64)
    index = torch.searchsorted(cdf, u * cdf[..., -1:], right=True)
    # u·Σp rounds to Σp at most: fall back to the last index with positive probability.
    last = p.shape[-1] - 1 - torch.argmax((p.flip(-1) > 0).to(torch.uint8), dim=-1,
                                          keepdim=True)
    return torch.minimum(index, last).squeeze(-1)
