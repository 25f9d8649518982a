"""`style-mix`: a training-free latent baseline that needs only the generator (SPEC §8).

Fitting: k-means m groups of mapping-network samples w (synthetic identities only: the fit
API takes the StyleGAN2 generator, never codes, so no encoded photo can enter the member bank)
and keep a member bank. Use: for a face's W+ code s, f = mean of rows [r₀, r₁); rank the group
centres by distance to f; draw a group with GIA's exponential mechanism (window or strict);
draw one member w̃ uniformly; replace rows [r₀, r₁) of s by w̃. Rows outside the range are
untouched, bit for bit.

It is a baseline and the Space's fallback until a trained CDFNet bundle exists: it has no
keyword disentanglement and no attribute recovery. The group draw and the member draw are
those of ``IdentityAnonymizer`` (the same code, not a copy), so the guarantee text is GIA's
applied to the row-mean feature f.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .anonymizers import GroupDraw, IdentityAnonymizer
from .checks import check_epsilon, check_rank_window

__all__ = ["StyleMixModule", "StyleMixResult", "default_style_rows", "check_style_rows",
           "STYLE_MIX_LABEL"]

STYLE_MIX_LABEL = "style-mix (training-free baseline)"


def default_style_rows(num_rows: int) -> tuple[int, int]:
    """The middle W+ rows: [4, 8) of the 18 rows of a 1024 px StyleGAN2, scaled for others.

    Rows 0-3 set pose and coarse shape, 4-7 the facial features that carry most of the
    identity, 8+ colour and texture (StyleGAN's coarse / middle / fine styles).
    """
    r0 = max(0, round(num_rows * 4 / 18))
    r1 = max(r0 + 1, round(num_rows * 8 / 18))
    return r0, min(r1, num_rows)


def check_style_rows(rows, num_rows: int | None = None) -> tuple[int, int]:
    """Rows [r₀, r₁) to replace: integers with 0 ≤ r₀ < r₁ (≤ num_rows when known)."""
    try:
        r0, r1 = rows
    except (TypeError, ValueError):
        raise ValueError(f"style rows must be a pair (r0, r1), got {rows!r}") from None
    if any(isinstance(v, bool) or not isinstance(v, (int, float)) or int(v) != v
           for v in (r0, r1)):
        raise ValueError(f"style rows must be integers, got {rows!r}")
    r0, r1 = int(r0), int(r1)
    if not 0 <= r0 < r1:
        raise ValueError(f"style rows [{r0}, {r1}) are empty or negative: need 0 <= r0 < r1")
    if num_rows is not None and r1 > num_rows:
        raise ValueError(f"style rows [{r0}, {r1}) go past the code's {num_rows} W+ rows "
                         f"(valid: 0 <= r0 < r1 <= {num_rows})")
    return r0, r1


@dataclass
class StyleMixResult:
    """The mixed codes and what the draw chose (group, member, the mechanism's P)."""

    codes: Tensor      # (N, L, D): rows [r0, r1) replaced, every other row the input's
    draw: GroupDraw
    rows: tuple[int, int]


class StyleMixModule(nn.Module):
    """Groups of synthetic identities (k-means of mapping-network samples) and the draw.

    Args:
        num_groups, num_members: m groups and the member bank size.
        style_dim: the generator's w width.
        num_rows: the generator's W+ rows (the codes this works on).
        rows: default rows [r₀, r₁) to replace (default: the middle rows).
        epsilon, rank_window: the default privacy budget and GIA window.
        truncation: ψ of the mapping samples the groups were fitted on (1 = none).
    """

    label = STYLE_MIX_LABEL

    def __init__(self, num_groups: int = 64, num_members: int = 1024, style_dim: int = 512,
                 num_rows: int = 18, rows: list[int] | None = None, epsilon: float = 1.0,
                 rank_window: list[int] | None = None, truncation: float = 1.0):
        super().__init__()
        if num_rows < 1 or style_dim < 1:
            raise ValueError("style-mix needs num_rows >= 1 and style_dim >= 1")
        self.groups = IdentityAnonymizer(num_groups, num_members, (style_dim,))
        self.style_dim, self.num_rows = int(style_dim), int(num_rows)
        self.rows = check_style_rows(rows if rows is not None else default_style_rows(num_rows),
                                     num_rows)
        self.default_epsilon = check_epsilon(epsilon)
        self.default_rank_window = check_rank_window(
            tuple(rank_window or (2, max(2, min(num_groups, 16)))) if num_groups > 1
            else (1, 1), num_groups)
        if not 0 < truncation <= 1:
            raise ValueError(f"truncation must be in (0, 1], got {truncation!r}")
        self.truncation = float(truncation)

    # -- configuration -----------------------------------------------------------------------
    @property
    def num_groups(self) -> int:
        return self.groups.num_groups

    @property
    def fitted(self) -> bool:
        return bool(self.groups.fitted)

    def get_config(self) -> dict:
        return {"num_groups": self.groups.num_groups, "num_members": self.groups.num_members,
                "style_dim": self.style_dim, "num_rows": self.num_rows,
                "rows": list(self.rows), "epsilon": self.default_epsilon,
                "rank_window": list(self.default_rank_window), "truncation": self.truncation}

    # -- fitting: the generator only ---------------------------------------------------------
    @torch.no_grad()
    def fit(self, stylegan: nn.Module, num_samples: int = 10_000, iterations: int = 50,
            generator: torch.Generator | None = None,
            batch_size: int = 1024) -> "StyleMixModule":
        """Sample w from ``stylegan``'s mapping network and cluster them into the m groups.

        Takes the StyleGAN2 generator, not codes: the member bank must hold synthetic
        identities only, never a code encoded from someone's photo.
        """
        if isinstance(stylegan, Tensor) or not callable(getattr(stylegan, "sample_w", None)):
            raise TypeError("style-mix is fitted on the generator itself (pass the StyleGAN2 "
                            "generator): its groups hold mapping-network samples only, never "
                            "codes encoded from photos")
        if stylegan.style_dim != self.style_dim or stylegan.n_latent != self.num_rows:
            raise ValueError(f"generator gives ({stylegan.n_latent}, {stylegan.style_dim}) "
                             f"codes but this style-mix works on ({self.num_rows}, "
                             f"{self.style_dim})")
        if generator is None:  # fresh OS entropy; never the global RNG
            generator = torch.Generator()
            generator.seed()
        avg = None
        if self.truncation != 1.0:
            avg = stylegan.mean_latent(4096, generator=generator)
        chunks, done = [], 0
        while done < num_samples:
            b = min(batch_size, num_samples - done)
            chunks.append(stylegan.sample_w(b, generator=generator, truncation=self.truncation,
                                            truncation_latent=avg).float().cpu())
            done += b
        self.groups.fit(torch.cat(chunks), iterations, generator)
        return self

    # -- the draw ----------------------------------------------------------------------------
    def feature(self, codes: Tensor, rows: tuple[int, int] | None = None) -> Tensor:
        """f = mean of rows [r₀, r₁) of each W+ code, shape (N, D)."""
        r0, r1 = check_style_rows(rows if rows is not None else self.rows, self.num_rows)
        return codes[:, r0:r1].mean(dim=1)

    def probabilities(self, codes: Tensor, epsilon: float | None = None,
                      rank_window: tuple[int, int] | None = None, mechanism: str = "window",
                      rows: tuple[int, int] | None = None) -> Tensor:
        """The closed-form group distribution P(j | f), shape (N, m)."""
        return self.groups.probabilities(
            self.feature(self._codes(codes), rows),
            self.default_epsilon if epsilon is None else epsilon,
            tuple(rank_window or self.default_rank_window), mechanism)

    def forward(self, codes: Tensor, epsilon: float | None = None,
                rank_window: tuple[int, int] | None = None, mechanism: str = "window",
                rows: tuple[int, int] | None = None,
                generator: torch.Generator | None = None) -> StyleMixResult:
        """Replace rows [r₀, r₁) of each code (N, L, D) by a drawn synthetic identity w̃."""
        if not self.fitted:
            raise RuntimeError("the style-mix groups are not fitted: call fit(generator) on the "
                               "StyleGAN2 generator, or load fitted groups with from_pretrained")
        codes = self._codes(codes)
        r0, r1 = check_style_rows(rows if rows is not None else self.rows, self.num_rows)
        draw = self.draw(self.feature(codes, (r0, r1)), epsilon, rank_window, mechanism,
                         generator)
        return StyleMixResult(self.mix(codes, self.members(draw), (r0, r1)), draw, (r0, r1))

    # -- the two halves of forward, for one draw applied to many codes (a video track) -------
    def draw(self, features: Tensor, epsilon: float | None = None,
             rank_window: tuple[int, int] | None = None, mechanism: str = "window",
             generator: torch.Generator | None = None) -> GroupDraw:
        """A group and a member per row of the row-mean features f (N, D) (each row one
        draw, spending ε): GIA's exponential mechanism, then a uniform member."""
        eps = self.default_epsilon if epsilon is None else epsilon
        return self.groups.draw(features, eps, tuple(rank_window or self.default_rank_window),
                                mechanism, generator)

    def members(self, draw: GroupDraw) -> Tensor:
        """The drawn synthetic identities w̃ (N, D)."""
        return self.groups.members[draw.member.to(self.groups.members.device)]

    def mix(self, codes: Tensor, w: Tensor, rows: tuple[int, int] | None = None) -> Tensor:
        """The codes (N, L, D) with rows [r₀, r₁) replaced by w (N, D) or (1, D); every
        other row is the input's, bit for bit."""
        codes = self._codes(codes)
        r0, r1 = check_style_rows(rows if rows is not None else self.rows, self.num_rows)
        out = codes.clone()
        out[:, r0:r1] = w.to(out).reshape(-1, 1, self.style_dim)
        return out

    def _codes(self, codes: Tensor) -> Tensor:
        if codes.dim() != 3 or tuple(codes.shape[1:]) != (self.num_rows, self.style_dim):
            raise ValueError(f"codes must have shape (N, {self.num_rows}, {self.style_dim}), "
                             f"got {tuple(codes.shape)}")
        if not torch.isfinite(codes).all():
            raise ValueError("codes contain non-finite values (NaN or inf)")
        return codes
