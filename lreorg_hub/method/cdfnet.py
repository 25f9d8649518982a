"""CDFNet: the conditional disentanglement-fusion network (SPEC §3, paper §3.2).

Two streams of the latent's shape. The forward process splits a code s into a key feature f
and a residual r for a keyword condition k; the inverse process fuses (f̂, r) back into a code
and an information loss Δr. Both directions use the same sub-networks; each block class holds
its forward and inverse side by side so the algebra can be checked by eye against SPEC §3.
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

from .rng import fresh_generator

__all__ = ["soft_clamp", "ConditionalLinear", "DenseBlock", "ConditionBlock",
           "DisentangleBlock", "CDFNet"]


def soft_clamp(x: Tensor, clamp: float) -> Tensor:
    """σ(x) = c·tanh(x / c): bounds the log-scale to (−c, c) so exp() stays finite."""
    return clamp * torch.tanh(x / clamp)


class ConditionalLinear(nn.Module):
    """φ(a, k) = FC(act(concat(FC(a), FC(k)))): three fully connected layers.

    The last layer starts at zero, so a new φ outputs 0 and its block is the identity.
    """

    def __init__(self, dim: int, cond_dim: int, hidden_dim: int, negative_slope: float = 0.2):
        super().__init__()
        self.fc_x = nn.Linear(dim, hidden_dim)
        self.fc_k = nn.Linear(cond_dim, hidden_dim)
        self.act = nn.LeakyReLU(negative_slope)
        self.fc_out = nn.Linear(2 * hidden_dim, dim)
        nn.init.zeros_(self.fc_out.weight)
        nn.init.zeros_(self.fc_out.bias)

    def forward(self, a: Tensor, k: Tensor) -> Tensor:
        hx, hk = self.fc_x(a), self.fc_k(k)
        return self.fc_out(self.act(torch.cat([hx, hk.expand_as(hx)], dim=-1)))


class DenseBlock(nn.Module):
    """ψ(x): a densely connected MLP (each layer sees x and all earlier outputs).

    The vector analogue of the ESRGAN dense block that HiNet uses; the last layer starts at 0.
    """

    def __init__(self, dim: int, growth: int, num_layers: int, negative_slope: float = 0.2):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(dim + i * growth, growth) for i in range(num_layers))
        self.act = nn.LeakyReLU(negative_slope)
        self.fc_out = nn.Linear(dim + num_layers * growth, dim)
        nn.init.zeros_(self.fc_out.weight)
        nn.init.zeros_(self.fc_out.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self.layers:
            features.append(self.act(layer(torch.cat(features, dim=-1))))
        return self.fc_out(torch.cat(features, dim=-1))


class ConditionBlock(nn.Module):
    """CB (forward) / BCB (inverse): the keyword-conditioned affine coupling."""

    def __init__(self, dim: int, cond_dim: int, hidden_dim: int, clamp: float):
        super().__init__()
        self.clamp = clamp
        self.phi1 = ConditionalLinear(dim, cond_dim, hidden_dim)
        self.phi2 = ConditionalLinear(dim, cond_dim, hidden_dim)
        self.phi3 = ConditionalLinear(dim, cond_dim, hidden_dim)

    def forward(self, h1: Tensor, h2: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        a1 = h1 + self.phi1(h2, k)
        a2 = h2 * torch.exp(soft_clamp(self.phi2(a1, k), self.clamp)) + self.phi3(a1, k)
        return a1, a2

    def inverse(self, a1: Tensor, a2: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        h2 = (a2 - self.phi3(a1, k)) * torch.exp(-soft_clamp(self.phi2(a1, k), self.clamp))
        h1 = a1 - self.phi1(h2, k)
        return h1, h2


class DisentangleBlock(nn.Module):
    """DB (forward) / FB (inverse): HiNet's unconditional affine coupling."""

    def __init__(self, dim: int, growth: int, dense_layers: int, clamp: float):
        super().__init__()
        self.clamp = clamp
        self.psi1 = DenseBlock(dim, growth, dense_layers)
        self.psi2 = DenseBlock(dim, growth, dense_layers)
        self.psi3 = DenseBlock(dim, growth, dense_layers)

    def forward(self, a1: Tensor, a2: Tensor) -> tuple[Tensor, Tensor]:
        b1 = a1 + self.psi1(a2)
        b2 = a2 * torch.exp(soft_clamp(self.psi2(b1), self.clamp)) + self.psi3(b1)
        return b1, b2

    def inverse(self, b1: Tensor, b2: Tensor) -> tuple[Tensor, Tensor]:
        a2 = (b2 - self.psi3(b1)) * torch.exp(-soft_clamp(self.psi2(b1), self.clamp))
        a1 = b1 - self.psi1(a2)
        return a1, a2


class CDFNet(nn.Module):
    """Conditional invertible network over StyleGAN W+ codes.

    The same weights act on each of the ``num_rows`` rows of a W+ code; a learned row embedding
    added to the keyword condition tells the rows apart. W codes of shape (N, latent_dim) are
    broadcast to all rows, so both (N, latent_dim) and (N, num_rows, latent_dim) inputs work and
    outputs always have shape (N, num_rows, latent_dim).

    Args:
        latent_dim: width of one latent row (512 for FFHQ StyleGAN2).
        num_rows: L, the number of W+ rows (18 for the 1024px generator, 14 for 256px).
        cond_dim: width of the keyword embedding k^f (512 for CLIP ViT-B-32).
        num_blocks: number of CDB/CFB blocks.
        hidden_dim: hidden width of every φ.
        dense_growth, dense_layers: width and depth of every dense block ψ.
        clamp: c of the soft clamp σ(x) = c·tanh(x/c).
    """

    def __init__(self, latent_dim: int = 512, num_rows: int = 18, cond_dim: int = 512,
                 num_blocks: int = 4, hidden_dim: int = 512, dense_growth: int = 128,
                 dense_layers: int = 3, clamp: float = 2.0):
        super().__init__()
        if min(latent_dim, num_rows, cond_dim, num_blocks, hidden_dim, dense_growth) < 1:
            raise ValueError("CDFNet sizes must be positive integers")
        if dense_layers < 0 or not clamp > 0:
            raise ValueError("dense_layers must be >= 0 and clamp > 0")
        self.latent_dim, self.num_rows, self.cond_dim = latent_dim, num_rows, cond_dim
        self._config = dict(latent_dim=latent_dim, num_rows=num_rows, cond_dim=cond_dim,
                            num_blocks=num_blocks, hidden_dim=hidden_dim,
                            dense_growth=dense_growth, dense_layers=dense_layers, clamp=clamp)
        # Built on the meta device so torch's layer init never draws from the global RNG,
        # then materialised where the caller builds (the default device, or meta again) and
        # initialised by reset_parameters from OS entropy (the one randomness policy).
        device = torch.empty(0).device
        with torch.device("meta"):
            self.row_embedding = nn.Parameter(torch.empty(num_rows, cond_dim))
            self.condition_blocks = nn.ModuleList(
                ConditionBlock(latent_dim, cond_dim, hidden_dim, clamp)
                for _ in range(num_blocks))
            self.disentangle_blocks = nn.ModuleList(
                DisentangleBlock(latent_dim, dense_growth, dense_layers, clamp)
                for _ in range(num_blocks))
        self.to_empty(device=device)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None,
                         output_std: float = 0.0) -> "CDFNet":
        """Draw every weight from ``generator`` (a fresh OS-entropy one when None; the global
        RNG is never touched): PyTorch's default Linear init (U(±1/√fan_in) for weights and
        biases), an N(0, 0.02²) row embedding (distinct rows, negligible next to a CLIP
        embedding), and every φ/ψ output layer at N(0, output_std²) (0, the default: exactly
        zero, so a new network is the identity map).

        Swap training needs ``output_std > 0``: with all output layers at zero every key
        feature is 0 and ∂s′/∂f = 0, so the swapped codes equal the originals to first order
        in the weights and every swap-loss gradient vanishes (a stationary point).
        """
        from .init import kaiming_uniform_, randn_, uniform_

        if not output_std >= 0:
            raise ValueError(f"output_std must be >= 0, got {output_std!r}")
        if self.row_embedding.is_meta:
            return self
        gen = generator if generator is not None else fresh_generator()
        randn_(self.row_embedding, gen, std=0.02)
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear):
                if name.endswith("fc_out"):
                    randn_(module.weight, gen, std=output_std)
                    module.bias.zero_()
                else:
                    kaiming_uniform_(module.weight, gen)
                    uniform_(module.bias, gen, 1.0 / module.in_features ** 0.5)
        return self

    # -- shapes ---------------------------------------------------------------------------
    def _rows(self, x: Tensor, name: str) -> Tensor:
        if x.dim() == 2 and x.shape[-1] == self.latent_dim:
            return x.unsqueeze(1).expand(-1, self.num_rows, -1)
        if x.dim() == 3 and x.shape[1:] == (self.num_rows, self.latent_dim):
            return x
        raise ValueError(f"{name} must have shape (N, {self.latent_dim}) or "
                         f"(N, {self.num_rows}, {self.latent_dim}); got {tuple(x.shape)}")

    def _condition(self, k: Tensor, batch: int) -> Tensor:
        """k of shape (cond_dim,) or (N, cond_dim) → per-row condition (N|1, L, cond_dim)."""
        if k.shape[-1] != self.cond_dim or k.dim() not in (1, 2):
            raise ValueError(f"keyword condition must have shape ({self.cond_dim},) or "
                             f"(N, {self.cond_dim}); got {tuple(k.shape)}")
        k = k.reshape(-1, 1, self.cond_dim).to(self.row_embedding)
        if k.shape[0] not in (1, batch):
            raise ValueError(f"keyword condition batch {k.shape[0]} does not match codes {batch}")
        return k + self.row_embedding

    # -- the two processes ----------------------------------------------------------------
    def forward(self, s: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Disentangle: (h¹, h²) = (0, s) through every CDB → (f, r)."""
        h2 = self._rows(s, "codes")
        h1 = torch.zeros_like(h2)
        cond = self._condition(k, h2.shape[0])
        for cb, db in zip(self.condition_blocks, self.disentangle_blocks):
            h1, h2 = db(*cb(h1, h2, cond))
        return h1, h2

    def inverse(self, f: Tensor, r: Tensor, k: Tensor) -> tuple[Tensor, Tensor]:
        """Fuse: (f̂, r) through every CFB in reverse order → (Δr, ŝ)."""
        g1, g2 = self._rows(f, "key feature"), self._rows(r, "residual")
        cond = self._condition(k, g2.shape[0])
        for cb, db in zip(reversed(self.condition_blocks), reversed(self.disentangle_blocks)):
            g1, g2 = cb.inverse(*db.inverse(g1, g2), cond)
        return g1, g2

    @property
    def config(self) -> dict:
        """The constructor arguments (stored in the bundle's config.json under "cdfnet")."""
        return dict(self._config)
