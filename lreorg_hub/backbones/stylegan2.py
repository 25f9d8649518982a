"""StyleGAN2 generator with the rosinality state-dict layout, in plain PyTorch.

The arithmetic follows ``docs/CHECKPOINT_LAYOUTS.md`` §2 (equalised learning
rate applied at run time, fused leaky ReLU = √2·lrelu₀.₂(x + b), mapping with lr_mul 0.01,
modulation/demodulation, transposed conv + [1,3,3,1] blur, ToRGB skips, noise before the
bias), so real rosinality / e4e weights strict-load without renaming and give the same
images. Module and parameter names reproduce the reference keys exactly
(``stylegan2_generator_{1024,256}.json``).

How it is made fast on CPU (all exact up to float rounding, see the tests):

- The batch is folded into the channel axis: activations live in memory as
  (1, N·C, H, W) in channels-last order, and every modulated convolution is one grouped
  convolution with groups = N (per-sample weights, no Python loop over the batch, no
  extra passes to modulate the input or to demodulate the output). The tensors the
  layers exchange are ordinary (N, C, H, W) views of that memory.
- The stride-2 transposed 3×3 convolution is rewritten as its polyphase form: one
  ordinary 2×2 convolution with 4·C_out outputs (the four output phases; taps a phase
  does not use are zero) followed by ``pixel_shuffle``. oneDNN runs ordinary
  convolutions in channels-last much faster than transposed ones.
- The blur is a depthwise convolution (not a single-channel convolution over N·C images),
  and it carries the layer's bias for free; the ToRGB skip upsampling is a depthwise
  transposed convolution.

A second way to run every modulated convolution, ``modconv="shared"``, applies the style to
the activations instead of the weights (as StyleGAN2-ADA does without fused modconv):
x·s_n, one convolution with the shared weight for the whole batch, then the output times
the demodulation coefficients d_n. A grouped convolution with N groups is a poor fit for
GPU convolution libraries at large N (and half precision); one shared convolution is a
plain large GEMM. ``modconv="auto"`` (the default) takes the shared path on accelerators
for batches > 1 and the grouped path on CPU, where it is the faster one (see
``benchmarks/bench_dataset.py``). Both give the same images up to float rounding (tests).

Half precision: parameters may be bfloat16 / float16 (``generator.to(dtype)``); the codes
are cast to that dtype, and the small per-sample style and demodulation coefficients are
computed in float32 and then cast, so only the large convolutions run in half precision.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..method.init import default_init_generator, randn, randn_

__all__ = [
    "StyleGAN2Generator", "MappingNetwork", "EqualLinear", "PixelNorm", "ConstantInput",
    "ModulatedConv2d", "StyledConv", "ToRGB", "NoiseInjection", "FusedLeakyReLU", "Blur",
    "Upsample", "fused_leaky_relu", "blur_kernel_2d", "truncate",
    "channel_table", "NOISE_MODES", "MODCONV_MODES",
]

SQRT2 = math.sqrt(2.0)
LRELU_SLOPE = 0.2
BLUR_1D = (1.0, 3.0, 3.0, 1.0)  # the only blur kernel the reference checkpoints use
NOISE_MODES = ("random", "const", "none")
MODCONV_MODES = ("auto", "grouped", "shared")
DEMOD_EPS = 1e-8


# --------------------------------------------------------------------------------------
# Small functional pieces
# --------------------------------------------------------------------------------------
def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor, negative_slope: float = LRELU_SLOPE,
                     scale: float = SQRT2) -> torch.Tensor:
    """Reference semantics of rosinality's fused activation: scale·lrelu(x + bias).

    ``bias`` is added per channel along dimension 1 (the last one for 2-D input).
    """
    shape = [1, -1] + [1] * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope) * scale


def blur_kernel_2d(kernel_1d: Sequence[float] = BLUR_1D, factor: int = 1) -> torch.Tensor:
    """outer(k, k) normalised to sum 1, times factor² (the stored ``*.kernel`` buffers)."""
    k = torch.tensor(kernel_1d, dtype=torch.float32)
    k2 = torch.outer(k, k)
    return k2 / k2.sum() * (factor ** 2)


def truncate(w: torch.Tensor, psi: float, w_avg: torch.Tensor) -> torch.Tensor:
    """Truncation trick w' = w̄ + ψ·(w − w̄); ``w_avg`` of shape (D,), (1, D) or (L, D)."""
    if psi == 1.0:
        return w
    if w.dim() == 2 and w_avg.dim() == 2:
        w_avg = w_avg[:1]  # (L, D) rows of an e4e latent_avg are equal; W codes need one
    return torch.lerp(w_avg.to(w), w, psi)


def channel_table(size: int, channel_multiplier: int = 2, channel_base: int = 16384,
                  channel_max: int = 512) -> dict[int, int]:
    """Channels per resolution: min(channel_max, channel_base·multiplier / resolution).

    The defaults give the reference table (4–64 px: 512, 128: 256, 256: 128, 512: 64,
    1024: 32 with multiplier 2); smaller ``channel_base`` / ``channel_max`` give tiny test
    configurations from the same class.
    """
    log_size = int(math.log2(size))
    return {2 ** i: max(1, min(channel_max, (channel_base * channel_multiplier) // 2 ** i))
            for i in range(2, log_size + 1)}


def _fold(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) → (1, N·C, H, W) channels-last (a view when x came from ``_unfold``)."""
    n, c, h, w = x.shape
    y = x.reshape(1, n * c, h, w)
    if not y.is_contiguous(memory_format=torch.channels_last):
        y = y.contiguous(memory_format=torch.channels_last)
    return _canonical(y)


def _canonical(y: torch.Tensor) -> torch.Tensor:
    """The same channels-last (1, C, H, W) memory with the size-1 batch axis given its
    canonical stride H·W·C. Views made by reshape/pixel_shuffle may carry another one,
    and then ``suggest_memory_format()`` reports NCHW, so convolutions would silently
    copy their input to NCHW and back (a large cost at 1024 px)."""
    if y.stride(0) == y.numel() or not y.is_contiguous(memory_format=torch.channels_last):
        return y
    return y[0].permute(1, 2, 0).unsqueeze(0).permute(0, 3, 1, 2)


def _unfold(y: torch.Tensor, n: int) -> torch.Tensor:
    """(1, N·C, H, W) → (N, C, H, W) view (always possible: it splits a dimension)."""
    return y.view(n, y.shape[1] // n, y.shape[2], y.shape[3])


# Polyphase form of the stride-2 transposed 3×3 convolution. Output row 2m (even phase)
# receives x[m−1]·W[2] + x[m]·W[0]; row 2m+1 (odd phase) receives x[m]·W[1]. With the
# input zero-padded by one on every side, a 2×2 window at m covers (x[m−1], x[m]): tap 0
# is x[m−1], tap 1 is x[m]. ``_PHASE_TAPS[phase][tap]`` is the kernel row (or column)
# feeding that tap, -1 for none.
_PHASE_TAPS = ((2, 0), (-1, 1))


def _phase_kernels(base: torch.Tensor) -> torch.Tensor:
    """3×3 kernels (O, 3, 3, I) → the four 2×2 phase kernels (O, 4, 4, I): phase (a, b) =
    2a + b, tap (ty, tx) = 2ty + tx, unused taps exactly zero. Built by slicing on the
    kernels' own device (a constant index matrix would be a host-to-device copy per call)."""
    def taps(k: torch.Tensor, dim: int) -> list[torch.Tensor]:  # one (…, 2, …) per phase
        zero = torch.zeros_like(k.narrow(dim, 0, 1))
        return [torch.cat([k.narrow(dim, t, 1) if t >= 0 else zero for t in phase], dim)
                for phase in _PHASE_TAPS]

    phases = [col for row in taps(base, 1) for col in taps(row, 2)]  # (O, 2, 2, I) each
    return torch.stack(phases, 1).reshape(base.shape[0], 4, 4, base.shape[-1])


# --------------------------------------------------------------------------------------
# Layers (names and registration order reproduce the reference keys)
# --------------------------------------------------------------------------------------
class PixelNorm(nn.Module):
    """z ← z / √(mean(z²) + 1e-8) over the feature (last) dimension. No tensors."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(dim=-1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate: W_eff = W·lr_mul/√in, b_eff = b·lr_mul.

    Stored tensors are the raw ones (``weight`` (out, in), ``bias`` (out,)). With
    ``activation="fused_lrelu"`` the output is √2·lrelu₀.₂(x·W_effᵀ + b_eff).
    """

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0,
                 lr_mul: float = 1.0, activation: str | None = None):
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"unknown activation {activation!r}")
        self.in_dim, self.out_dim = in_dim, out_dim
        self.lr_mul = float(lr_mul)
        self.bias_init = float(bias_init)
        self.activation = activation
        self.scale = self.lr_mul / math.sqrt(in_dim)
        self.weight = nn.Parameter(torch.empty(out_dim, in_dim))
        self.bias = nn.Parameter(torch.empty(out_dim)) if bias else None

    def reset_parameters(self, generator: torch.Generator) -> None:
        # rosinality draws N(0,1)/lr_mul so that the effective weight is N(0, 1/in).
        randn_(self.weight, generator, std=1.0 / self.lr_mul)
        if self.bias is not None and self.bias.device.type != "meta":
            with torch.no_grad():
                self.bias.fill_(self.bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        out = F.linear(x * self.scale, self.weight, bias)  # scaling x is cheaper than W
        if self.activation == "fused_lrelu":
            out = F.leaky_relu(out, LRELU_SLOPE) * SQRT2
        return out

    def extra_repr(self) -> str:
        return (f"{self.in_dim}, {self.out_dim}, lr_mul={self.lr_mul}, "
                f"activation={self.activation}")


class MappingNetwork(nn.Sequential):
    """z → w: PixelNorm then ``n_mlp`` EqualLinear(lr_mul) + fused leaky ReLU.

    A ``Sequential`` so the keys are ``style.1.*`` … ``style.8.*`` (``style.0`` is the
    parameter-free PixelNorm), as in the reference.
    """

    def __init__(self, style_dim: int = 512, n_mlp: int = 8, lr_mul: float = 0.01):
        layers: list[nn.Module] = [PixelNorm()]
        layers += [EqualLinear(style_dim, style_dim, lr_mul=lr_mul, activation="fused_lrelu")
                   for _ in range(n_mlp)]
        super().__init__(*layers)


class ConstantInput(nn.Module):
    """The learned 4×4 constant (key ``input.input``), repeated over the batch."""

    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.empty(1, channel, size, size))

    def reset_parameters(self, generator: torch.Generator) -> None:
        randn_(self.input, generator)

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.expand(batch, -1, -1, -1)


class Blur(nn.Module):
    """Holds the blur kernel buffer ``kernel`` = outer([1,3,3,1])/64 · factor²."""

    def __init__(self, upsample_factor: int = 2):
        super().__init__()
        self.register_buffer("kernel", blur_kernel_2d(BLUR_1D, upsample_factor))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        if self.kernel.device.type != "meta":
            with torch.no_grad():
                self.kernel.copy_(blur_kernel_2d(BLUR_1D, 2))

    def forward(self, x: torch.Tensor, pad: tuple[int, int] = (1, 1),
                bias: torch.Tensor | None = None) -> torch.Tensor:
        """Depthwise upfirdn2d(x; kernel, pad=(p, p)) on (B, C, H, W), plus optional bias."""
        if pad[0] != pad[1]:
            raise ValueError("Blur.forward supports symmetric padding only")
        c = x.shape[1]
        k = torch.flip(self.kernel, (0, 1)).to(x.dtype)  # true convolution
        return F.conv2d(x, k.expand(c, 1, *k.shape), bias=bias, padding=pad[0], groups=c)


class Upsample(nn.Module):
    """2× upsampling of the RGB skip: upfirdn2d(up=2, pad=(2, 1)) with ``kernel`` (·4)."""

    def __init__(self, factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", blur_kernel_2d(BLUR_1D, factor))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        if self.kernel.device.type != "meta":
            with torch.no_grad():
                self.kernel.copy_(blur_kernel_2d(BLUR_1D, self.factor))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Zero insertion + pad (2, 1) + true convolution with K is exactly a transposed
        # convolution with K (unflipped), stride 2 and padding len(K) − 1 − 2 = 1.
        c = x.shape[1]
        k = self.kernel.to(x.dtype)
        return F.conv_transpose2d(x, k.expand(c, 1, *k.shape), stride=2, padding=1, groups=c)


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) convolution, optionally 2× upsampling.

    Stored: ``weight`` (1, C_out, C_in, k, k), ``modulation`` EqualLinear(style → C_in,
    bias init 1), and for upsampling layers ``blur.kernel``. Per sample n:
    W_n = W·s_n/√(C_in·k²), demodulated by 1/√(ΣW_n² + 1e-8) per output channel.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 demodulate: bool = True, upsample: bool = False):
        super().__init__()
        if upsample and kernel_size != 3:
            raise ValueError("upsampling modulated convolutions are 3×3 in StyleGAN2")
        self.in_channel, self.out_channel = in_channel, out_channel
        self.kernel_size = kernel_size
        self.demodulate = demodulate
        self.upsample = upsample
        self.scale = 1.0 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        # Registration order = state-dict order: weight, blur.kernel, modulation.*
        self.weight = nn.Parameter(torch.empty(1, out_channel, in_channel, kernel_size,
                                               kernel_size))
        if upsample:
            self.blur = Blur(upsample_factor=2)
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1.0)

    def reset_parameters(self, generator: torch.Generator) -> None:
        randn_(self.weight, generator)

    def _coefficients(self, style: torch.Tensor) -> torch.Tensor:
        """Per-sample multipliers of the raw weight, (N, C_out, C_in) or (N, 1, C_in).

        W_n[o, i] = W[o, i]·c·s_n[i]·d_n[o] with the demodulation
        d_n[o] = (Σ_i (c·s_n[i])²·Σ_k W[o, i, k]² + 1e-8)^(−1/2) — the reference's
        Σ over (i, k) of W_n², computed as one small matrix product instead of squaring
        the N·C_out·C_in·k² modulated kernel.
        """
        s, d = self._style_and_demod(style)
        if d is None:
            return s[:, None, :]
        return d[:, :, None] * s[:, None, :]

    def _style_and_demod(self, style: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """c·s_n (N, C_in) and d_n (N, C_out) (None without demodulation), in float32
        whatever the parameters' dtype: tiny tensors, and a half-precision Σ over C_in·k²
        squares would lose the digits the demodulation needs."""
        s = self.modulation(style.to(self.weight.dtype)).float() * self.scale
        if not self.demodulate:
            return s, None
        w2 = self.weight[0].float().square().sum(dim=(2, 3))  # (C_out, C_in)
        return s, torch.rsqrt(s.square() @ w2.t() + DEMOD_EPS)

    def modulated_weight(self, style: torch.Tensor) -> torch.Tensor:
        """Per-sample kernels (N, C_out, C_in, k, k) for styles (N, style_dim)."""
        return self.weight * self._coefficients(style)[..., None, None]

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                bias: torch.Tensor | None = None, shared: bool = False) -> torch.Tensor:
        """x (N, C_in, H, W), style (N, style_dim) → (N, C_out, H', W').

        ``bias`` (C_out,) is added to the result (fused into the convolution or blur). The
        result may be a strided view; callers treat it as an ordinary tensor.
        ``shared``: style the activations and run one convolution with the shared weight
        (see the module docstring) instead of one grouped convolution of per-sample kernels.
        """
        if shared:
            return self._forward_shared(x, style, bias)
        n, _, h, w_ = x.shape
        o, i, k = self.out_channel, self.in_channel, self.kernel_size
        coef = self._coefficients(style).to(x.dtype)  # (N, O or 1, I)
        base = self.weight[0].permute(0, 2, 3, 1)  # (O, k, k, I): channels-last kernels
        xf = _fold(x)
        fb = bias.repeat(n) if bias is not None else None
        if not self.upsample:
            wgt = base[None] * coef[:, :, None, None, :]  # (N, O, k, k, I)
            wgt = wgt.reshape(n * o, k, k, i).permute(0, 3, 1, 2)
            y = F.conv2d(xf, wgt, bias=fb, padding=self.padding, groups=n)
            return _unfold(y, n)
        # Transposed conv (stride 2, no flip) in polyphase form: the 3×3 kernel becomes
        # four 2×2 phase kernels (unused taps exactly zero), run as one convolution with
        # 4·C_out outputs and interleaved by pixel_shuffle. The result is the (2H+1)²
        # transposed-conv output followed by one zero row and column.
        pw = _phase_kernels(base)
        wgt = pw[None] * coef[:, :, None, None, :]  # (N, O, phase, tap, I)
        wgt = wgt.reshape(n * o * 4, 2, 2, i).permute(0, 3, 1, 2)
        y = F.conv2d(xf, wgt, padding=1, groups=n)
        y = _canonical(F.pixel_shuffle(y, 2))
        # Blur = upfirdn2d(pad=(1,1)) of the (2H+1)² grid; the extra zero row/column is
        # the right-hand pad, so padding 1 yields 2H+1 outputs of which the first 2H count.
        y = self.blur(y, pad=(1, 1), bias=fb)
        y = y[:, :, : 2 * h, : 2 * w_]
        return _unfold(y, n)

    def _forward_shared(self, x: torch.Tensor, style: torch.Tensor,
                        bias: torch.Tensor | None) -> torch.Tensor:
        """conv(x·s_n, W)·d_n (+ bias): the same function with one shared convolution.

        Demodulation scales whole output channels, so it commutes with the convolution
        (and, for upsampling layers, with the depthwise blur); it is applied to the output.
        Activations are channels-last (N, C, H, W) tensors, not folded.
        """
        n, _, h, w_ = x.shape
        o, i = self.out_channel, self.in_channel
        s, d = self._style_and_demod(style)
        x = (x * s.to(x.dtype)[:, :, None, None]).contiguous(memory_format=torch.channels_last)
        weight = self.weight[0].to(x.dtype)
        if not self.upsample:
            y = F.conv2d(x, weight, padding=self.padding)
            if d is not None:
                y = y.mul_(d.to(y.dtype)[:, :, None, None])
            return y if bias is None else y.add_(bias.to(y.dtype).view(1, -1, 1, 1))
        # The polyphase transposed convolution of the grouped path, with the shared kernel.
        base = weight.permute(0, 2, 3, 1)  # (O, 3, 3, I)
        pw = _phase_kernels(base).view(o * 4, 2, 2, i)
        y = F.conv2d(x, pw.permute(0, 3, 1, 2), padding=1)
        y = F.pixel_shuffle(y, 2)
        if d is not None:
            y = y * d.to(y.dtype)[:, :, None, None]
        y = self.blur(y.contiguous(memory_format=torch.channels_last), pad=(1, 1),
                      bias=None if bias is None else bias.to(y.dtype))
        return y[:, :, : 2 * h, : 2 * w_]

    def extra_repr(self) -> str:
        return (f"{self.in_channel}, {self.out_channel}, kernel_size={self.kernel_size}, "
                f"demodulate={self.demodulate}, upsample={self.upsample}")


class NoiseInjection(nn.Module):
    """Adds g·ν with the learned scalar g (``weight``, shape (1,), initialised to 0)."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(1))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        if self.weight.device.type != "meta":
            with torch.no_grad():
                self.weight.zero_()

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """x + g·noise, noise (N or 1, 1, H, W) broadcast over channels; x if None."""
        return x if noise is None else x + self.weight * noise


class FusedLeakyReLU(nn.Module):
    """√2·lrelu₀.₂(x + b) with the learned per-channel ``bias``."""

    def __init__(self, channel: int):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(channel))

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        if self.bias.device.type != "meta":
            with torch.no_grad():
                self.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


def _is_folded_dense(x: torch.Tensor) -> bool:
    """True when x is an ``_unfold`` view of a dense channels-last (1, N·C, H, W) tensor."""
    n, c, h, w = x.shape
    s = x.stride()
    return ((c == 1 or s[1] == 1) and (n == 1 or s[0] == c) and (w == 1 or s[3] == n * c)
            and (h == 1 or s[2] == w * n * c))


class StyledConv(nn.Module):
    """Modulated conv → + g·noise → √2·lrelu₀.₂(· + bias). Keys: conv.*, noise.*, activate.*

    Same function as ``activate(noise(conv(x)))``, computed with the bias fused into the
    convolution (adding it before the noise only changes the float summation order) and
    the rest in place on the fresh convolution output.
    """

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int,
                 upsample: bool = False, demodulate: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim,
                                    demodulate=demodulate, upsample=upsample)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                noise: torch.Tensor | None = None, shared: bool = False) -> torch.Tensor:
        y = self.conv(x, style, bias=self.activate.bias, shared=shared)
        # False for the cropped output of upsampling layers
        dense = (y.is_contiguous(memory_format=torch.channels_last) if shared
                 else _is_folded_dense(y))
        if noise is not None:
            add = self.noise.weight * noise.to(y.dtype)
            y = y.add_(add) if dense else y + add  # out of place = one dense copy
        elif not dense:
            y = (y.contiguous(memory_format=torch.channels_last) if shared
                 else _unfold(_fold(y), y.shape[0]))
        # √2·lrelu(v) = lrelu(√2·v); scaling first keeps autograd valid (leaky_relu_ saves
        # its own output for the backward pass).
        return F.leaky_relu_(y.mul_(SQRT2), LRELU_SLOPE)


class ToRGB(nn.Module):
    """1×1 modulated conv (no demodulation) to RGB + ``bias``, plus the upsampled skip.

    Keys in order: ``bias``, ``upsample.kernel`` (not on the first ToRGB), ``conv.*``.
    """

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True):
        super().__init__()
        self.bias = nn.Parameter(torch.empty(1, 3, 1, 1))
        if upsample:
            self.upsample = Upsample(2)
        self.conv = ModulatedConv2d(in_channel, 3, 1, style_dim, demodulate=False)

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        if self.bias.device.type != "meta":
            with torch.no_grad():
                self.bias.zero_()

    def forward(self, x: torch.Tensor, style: torch.Tensor,
                skip: torch.Tensor | None = None, shared: bool = False) -> torch.Tensor:
        out = self.conv(x, style, bias=self.bias.view(3), shared=shared)
        if skip is not None:
            if shared:  # fresh dense output of a 1×1 convolution: add in place
                return out.add_(self.upsample(skip))
            n = skip.shape[0]
            up = _unfold(self.upsample(_fold(skip)), n)
            out = out.add_(up) if _is_folded_dense(out) else out + up
        return out


# --------------------------------------------------------------------------------------
# The generator
# --------------------------------------------------------------------------------------
class StyleGAN2Generator(nn.Module):
    """rosinality-compatible StyleGAN2 generator (mapping + W+ synthesis).

    Args:
        size: output resolution (power of two ≥ 4); 1024 for FFHQ config-f.
        style_dim: latent width (512).
        n_mlp: mapping layers (8).
        channel_multiplier: 2 for config-f.
        channel_base, channel_max: channels at resolution r are
            min(channel_max, channel_base·channel_multiplier / r). The defaults give the
            reference table; smaller values give tiny test models from the same class.
        lr_mlp: mapping learning-rate multiplier (0.01).
        modconv: how modulated convolutions run: "grouped" (per-sample kernels, one grouped
            convolution), "shared" (styles on the activations, one shared convolution) or
            "auto" (shared on accelerators for batches > 1, grouped otherwise). Same images
            up to rounding; also settable later as the ``modconv`` attribute or per call.

    State-dict keys, shapes and order equal the reference checkpoints'.
    Parameters are initialised as in the reference (N(0,1) raw weights) from a fixed-seed
    generator; call :meth:`reset_parameters` with your own ``torch.Generator`` to redraw.
    """

    def __init__(self, size: int = 1024, style_dim: int = 512, n_mlp: int = 8,
                 channel_multiplier: int = 2, channel_base: int = 16384,
                 channel_max: int = 512, lr_mlp: float = 0.01, modconv: str = "auto"):
        super().__init__()
        self.modconv = modconv
        log_size = int(math.log2(size))
        if size < 4 or 2 ** log_size != size:
            raise ValueError(f"size must be a power of two ≥ 4, got {size}")
        self.size, self.style_dim, self.n_mlp = size, style_dim, n_mlp
        self.channel_multiplier, self.channel_base = channel_multiplier, channel_base
        self.channel_max, self.lr_mlp = channel_max, float(lr_mlp)
        self.log_size = log_size
        self.channels = channel_table(size, channel_multiplier, channel_base, channel_max)
        self.n_latent = 2 * log_size - 2
        self.num_layers = 2 * log_size - 3  # StyledConvs = noise inputs

        self.style = MappingNetwork(style_dim, n_mlp, lr_mlp)
        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False)
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        in_ch = self.channels[4]
        for i in range(3, log_size + 1):
            out_ch = self.channels[2 ** i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim))
            self.to_rgbs.append(ToRGB(out_ch, style_dim))
            in_ch = out_ch
        for j in range(self.num_layers):
            r = 2 ** ((j + 5) // 2)
            self.noises.register_buffer(f"noise_{j}", torch.empty(1, 1, r, r))
        self.reset_parameters()

    # -- configuration -----------------------------------------------------------------
    def get_config(self) -> dict:
        """Constructor arguments (plain values, JSON-serialisable)."""
        return dict(size=self.size, style_dim=self.style_dim, n_mlp=self.n_mlp,
                    channel_multiplier=self.channel_multiplier,
                    channel_base=self.channel_base, channel_max=self.channel_max,
                    lr_mlp=self.lr_mlp, modconv=self.modconv)

    @property
    def modconv(self) -> str:
        """"auto", "grouped" or "shared" (see the class docstring)."""
        return self._modconv

    @modconv.setter
    def modconv(self, mode: str) -> None:
        if mode not in MODCONV_MODES:
            raise ValueError(f"modconv must be one of {', '.join(MODCONV_MODES)}, got {mode!r}")
        self._modconv = mode

    def uses_shared_modconv(self, batch: int, modconv: str | None = None) -> bool:
        """Whether a batch of this size takes the shared-convolution path."""
        mode = self.modconv if modconv is None else modconv
        if mode not in MODCONV_MODES:
            raise ValueError(f"modconv must be one of {', '.join(MODCONV_MODES)}, got {mode!r}")
        if mode == "auto":
            # Grouped convolutions are oneDNN's fast case on CPU; on GPUs one large shared
            # convolution beats N small groups as soon as there is more than one sample.
            return self.device.type != "cpu" and batch > 1
        return mode == "shared"

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """(Re)initialise every tensor as the reference does, drawing from ``generator``
        (a fixed-seed CPU generator when None). No-op for tensors on the meta device."""
        gen = generator if generator is not None else default_init_generator()
        for m in self.modules():
            if m is not self and hasattr(m, "reset_parameters"):
                m.reset_parameters(gen)
        for j in range(self.num_layers):
            randn_(getattr(self.noises, f"noise_{j}"), gen)

    @property
    def device(self) -> torch.device:
        return self.input.input.device

    @property
    def dtype(self) -> torch.dtype:
        return self.input.input.dtype

    # -- mapping -----------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (…, style_dim) → w (…, style_dim)."""
        return self.style(z)

    def sample_z(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """n latent vectors z ~ N(0, I) drawn with ``generator`` (OS entropy when None)."""
        return randn((n, self.style_dim), generator=generator, device=self.device,
                     dtype=self.input.input.dtype)

    def sample_w(self, n: int, generator: torch.Generator | None = None,
                 truncation: float = 1.0, truncation_latent: torch.Tensor | None = None
                 ) -> torch.Tensor:
        """n mapped latents w (n, style_dim), optionally truncated."""
        w = self.mapping(self.sample_z(n, generator))
        if truncation != 1.0:
            w = truncate(w, truncation, self._require_avg(truncation_latent))
        return w

    @torch.no_grad()
    def mean_latent(self, n_samples: int = 4096, generator: torch.Generator | None = None,
                    batch_size: int = 1024) -> torch.Tensor:
        """Average of the mapping outputs over ``n_samples`` random z, shape (1, style_dim)."""
        total = torch.zeros(self.style_dim, device=self.device, dtype=torch.float64)
        done = 0
        while done < n_samples:
            b = min(batch_size, n_samples - done)
            total += self.mapping(self.sample_z(b, generator)).double().sum(0)
            done += b
        return (total / n_samples).to(self.input.input.dtype).unsqueeze(0)

    # -- synthesis -----------------------------------------------------------------------
    @staticmethod
    def _require_avg(w_avg: torch.Tensor | None) -> torch.Tensor:
        if w_avg is None:
            raise ValueError("truncation != 1 needs truncation_latent (e.g. the checkpoint's "
                             "latent_avg or generator.mean_latent(generator=...))")
        return w_avg

    def to_w_plus(self, styles: torch.Tensor, input_is_latent: bool = True) -> torch.Tensor:
        """(N, D) or (N, n_latent, D) codes (w, or z with ``input_is_latent=False``) → W+."""
        if styles.dim() not in (2, 3) or styles.shape[-1] != self.style_dim:
            raise ValueError(f"expected styles of shape (N, {self.style_dim}) or "
                             f"(N, {self.n_latent}, {self.style_dim}), got "
                             f"{tuple(styles.shape)}")
        if not input_is_latent:
            styles = self.mapping(styles)
        if styles.dim() == 2:
            styles = styles.unsqueeze(1).expand(-1, self.n_latent, -1)
        elif styles.shape[1] != self.n_latent:
            raise ValueError(f"W+ codes need {self.n_latent} rows for size {self.size}, "
                             f"got {styles.shape[1]}")
        return styles

    def resolve_noise(self, batch: int, noise_mode: str = "const",
                      noise: Sequence[torch.Tensor | None] | None = None,
                      generator: torch.Generator | None = None,
                      num_layers: int | None = None) -> list[torch.Tensor | None]:
        """The per-layer noise images ν_j, each (N or 1, 1, R_j, R_j) or None (no noise).

        An explicit ``noise`` list wins (None entries fall back to ``noise_mode``).
        Modes: "const" = stored buffers ``noises.noise_j`` (deterministic, what e4e uses),
        "random" = fresh N(0,1) per call and sample drawn with ``generator``, "none" = zero.
        """
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        n_layers = self.num_layers if num_layers is None else num_layers
        if noise is not None and len(noise) != self.num_layers:
            raise ValueError(f"noise must list {self.num_layers} tensors, got {len(noise)}")
        out: list[torch.Tensor | None] = []
        for j in range(n_layers):
            given = noise[j] if noise is not None else None
            if given is not None:
                out.append(given)
            elif noise_mode == "const":
                out.append(getattr(self.noises, f"noise_{j}"))
            elif noise_mode == "random":
                r = 2 ** ((j + 5) // 2)
                out.append(randn((batch, 1, r, r), generator=generator, device=self.device,
                                 dtype=self.input.input.dtype))
            else:
                out.append(None)
        return out

    def forward(self, styles: torch.Tensor, *, input_is_latent: bool = True,
                noise_mode: str = "const", noise: Sequence[torch.Tensor | None] | None = None,
                truncation: float = 1.0, truncation_latent: torch.Tensor | None = None,
                output_size: int | None = None,
                generator: torch.Generator | None = None,
                modconv: str | None = None) -> torch.Tensor:
        """Synthesise images (N, 3, S, S), nominal range [−1, 1] (not clamped).

        Args:
            styles: W+ codes (N, n_latent, style_dim) or W codes (N, style_dim) repeated
                to every row; with ``input_is_latent=False`` they are z and go through the
                mapping network first.
            noise_mode / noise / generator: see :meth:`resolve_noise`. Default "const"
                (stored noise: reproducible, as e4e decodes).
            truncation, truncation_latent: w' = w̄ + ψ(w − w̄); ψ = 1 is a no-op.
            output_size: stop after the block of this resolution and return the image
                the ToRGB skips have accumulated so far (S = output_size, e.g. a fast
                256 px preview from the 1024 px generator). Default: ``size``.
            modconv: "grouped" / "shared" / "auto" for this call (default: the attribute).
        """
        w = self.to_w_plus(styles, input_is_latent)
        if truncation != 1.0:
            w = truncate(w, truncation, self._require_avg(truncation_latent))
        return self.synthesis(w, noise_mode=noise_mode, noise=noise, generator=generator,
                              output_size=output_size, modconv=modconv)

    def synthesis(self, w: torch.Tensor, *, noise_mode: str = "const",
                  noise: Sequence[torch.Tensor | None] | None = None,
                  generator: torch.Generator | None = None,
                  output_size: int | None = None, modconv: str | None = None) -> torch.Tensor:
        """W+ codes (N, n_latent, style_dim) → images in the generator's dtype; see
        :meth:`forward`. ``modconv`` overrides the attribute for this call."""
        out_size = self.size if output_size is None else int(output_size)
        if out_size not in self.channels:
            raise ValueError(f"output_size must be a power of two in [4, {self.size}], "
                             f"got {output_size}")
        n_blocks = int(math.log2(out_size)) - 2  # upsampling blocks to run
        n = w.shape[0]
        shared = self.uses_shared_modconv(n, modconv)
        w = w.to(self.dtype)
        noises = self.resolve_noise(n, noise_mode, noise, generator,
                                    num_layers=2 * n_blocks + 1)

        x = self.conv1(self.input(n), w[:, 0], noises[0], shared=shared)
        skip = self.to_rgb1(x, w[:, 1], shared=shared)
        for k in range(n_blocks):
            x = self.convs[2 * k](x, w[:, 2 * k + 1], noises[2 * k + 1], shared=shared)
            x = self.convs[2 * k + 1](x, w[:, 2 * k + 2], noises[2 * k + 2], shared=shared)
            skip = self.to_rgbs[k](x, w[:, 2 * k + 3], skip, shared=shared)
        return skip.contiguous()

    def extra_repr(self) -> str:
        return (f"size={self.size}, style_dim={self.style_dim}, n_latent={self.n_latent}, "
                f"channels={self.channels}")
