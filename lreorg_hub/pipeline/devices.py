"""Where the networks run: one place that turns "auto", "cpu", "cuda:N", "mps" into a device
that exists here, and a dtype name into a torch dtype."""

from __future__ import annotations

import torch

__all__ = ["check_device", "auto_device"]


def auto_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def check_device(device: str | torch.device) -> torch.device:
    """"auto", "cpu", "cuda", "cuda:N", "mps" → a device that exists here (ValueError else)."""
    if str(device) == "auto":
        return auto_device()
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here "
                             f"(use cpu or auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} does not exist: "
                             f"{torch.cuda.device_count()} CUDA device(s) here")
    elif dev.type == "mps" and not (getattr(torch.backends, "mps", None) and
                                    torch.backends.mps.is_available()):
        raise ValueError("device 'mps' asked for, but MPS is not available here")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    return dev
