"""The objective's weights and reductions (SPEC §5): plain values, no torch, so the
configuration and `lreorg train --help` read them without loading a network."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["REDUCTIONS", "IOSWeights", "AOSWeights"]

REDUCTIONS = ("mean", "sum")


@dataclass(frozen=True)
class IOSWeights:
    """λ1..λ4 of L_IOS (SPEC §5, the paper's weights)."""

    identity: float = 24.0
    perceptual: float = 1.2
    latent: float = 3.0
    information: float = 10.0


@dataclass(frozen=True)
class AOSWeights:
    """α1..α4 of L_AOS (SPEC §5, the paper's weights)."""

    identity: float = 0.2
    swap: float = 30.0
    latent: float = 3.0
    information: float = 10.0
