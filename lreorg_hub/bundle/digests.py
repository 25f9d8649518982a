"""sha256 fingerprints of files and of loaded weights (the bundle's provenance records)."""

from __future__ import annotations

import hashlib
import os

import torch

__all__ = ["sha256_file", "sha256_state", "RANDOM"]

#: What a provenance record says for a scorer built with random weights (tests and timing).
RANDOM = "random"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_state(module: torch.nn.Module) -> str:
    """sha256 over a module's state dict: each entry's name, dtype, shape and raw bytes, in
    name order (the numbers used, whatever file format they came in)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        digest.update(t.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
