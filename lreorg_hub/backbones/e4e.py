"""e4e encoder (Encoder4Editing with an IR-SE-50 body), reference state-dict layout.

Follows ``docs/CHECKPOINT_LAYOUTS.md`` §3: 256×256 RGB input in [−1, 1],
input layer (conv → BN → PReLU), 24 bottleneck_IR_SE units in four stages, a two-level
FPN (bilinear, align_corners=True), 18 GradualStyle heads (3 on c3, 4 on p2, 11 on p1;
stride-2 convs with LeakyReLU 0.01, then an EqualLinear), and the progressive W+ output
w0 + deltas. ``latent_avg`` is not part of the encoder's state dict; pass it to
:meth:`E4EEncoder.forward` (or use :class:`~lreorg_hub.backbones.checkpoints.Backbone`).

Module names reproduce ``e4e_encoder_ffhq.json`` exactly (621 entries at 18 heads), so the
``encoder.`` half of ``e4e_ffhq_encode.pt`` strict-loads after stripping the prefix.

Speed (CPU): conv weights and activations live in channels-last memory format (oneDNN
then needs no per-call layout conversion), except the heads' layers on ≤ 16 px maps,
which are faster in NCHW; in eval mode each unit's trailing BatchNorm is folded into the
convolution before it, once (cached until the weights change) (exact up to rounding; a BN in front of a zero-padded convolution
cannot be folded and stays). Beyond that the forward is compute-bound: ~72 GMAC per
image, which direct convolutions already run near this CPU's peak, so it is only a few
per cent faster than a plain NCHW forward. Winograd convolutions were tried and gave
< 5 % at batch 1 in pure PyTorch (and lose precision), so they are not used.
"""

from __future__ import annotations

import math
import weakref
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..method.init import build_uninitialised, default_init_generator, kaiming_uniform_, uniform_
from .stylegan2 import EqualLinear

__all__ = ["E4EEncoder", "BottleneckIRSE", "SEModule", "GradualStyleBlock", "IR_SE_UNITS"]

# Units per stage of the IR-SE bodies (the e4e FFHQ encoder uses 50).
IR_SE_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
HEAD_SLOPE = 0.01  # nn.LeakyReLU default, as the reference heads use


def _conv(in_ch: int, out_ch: int, k: int, stride: int = 1, padding: int = 0,
          bias: bool = False) -> nn.Conv2d:
    return build_uninitialised(nn.Conv2d, in_ch, out_ch, k, stride=stride, padding=padding,
                               bias=bias)


def _bn(ch: int) -> nn.BatchNorm2d:
    return build_uninitialised(nn.BatchNorm2d, ch)


def _prelu(ch: int) -> nn.PReLU:
    return build_uninitialised(nn.PReLU, ch)


def _fold_bn(conv_w: torch.Tensor, conv_b: torch.Tensor | None,
             bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of conv followed by eval-mode BN as one convolution."""
    # In float32 whatever the parameters' dtype (rsqrt of a half-precision variance loses
    # digits), then back to the convolution's dtype.
    g = bn.weight.float() * torch.rsqrt(bn.running_var.float() + bn.eps)
    b = bn.bias.float() - bn.running_mean.float() * g
    if conv_b is not None:
        b = b + conv_b.float() * g
    return (conv_w.float() * g.view(-1, 1, 1, 1)).to(conv_w.dtype), b.to(conv_w.dtype)


#: Folded (weight, bias) per convolution, computed once and reused while neither the
#: convolution nor its BN changes (a load, an in-place update or .to() changes the key).
_FOLDED: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _folded(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`_fold_bn` of an eval-mode conv + BN, cached: folded once after loading rather
    than on every forward. When gradients must reach the weights it is recomputed."""
    tensors = (conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return _fold_bn(conv.weight, None, bn)
    key = tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    hit = _FOLDED.get(conv)
    if hit is None or hit[0] != key:
        # Plain tensors (not inference-mode ones), so a later call outside
        # torch.inference_mode can use them too.
        with torch.inference_mode(False), torch.no_grad():
            hit = (key, *_fold_bn(conv.weight, None, bn))
        _FOLDED[conv] = hit
    return hit[1], hit[2]


class SEModule(nn.Module):
    """Squeeze-and-excitation gate: r ⊙ sigmoid(fc2(relu(fc1(mean_hw r)))), no biases."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = _conv(channels, hidden, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = _conv(hidden, channels, 1)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * g


class BottleneckIRSE(nn.Module):
    """bottleneck_IR_SE unit: residual BN→conv3×3→PReLU→conv3×3(stride)→BN→SE, plus a
    shortcut (subsampling, or 1×1 conv + BN when the depth changes); no final activation.
    """

    def __init__(self, in_channel: int, depth: int, stride: int):
        super().__init__()
        self.in_channel, self.depth, self.stride = in_channel, depth, stride
        # Registration order = state-dict order (shortcut first, as in the reference).
        if in_channel == depth:
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(_conv(in_channel, depth, 1, stride), _bn(depth))
        self.res_layer = nn.Sequential(
            _bn(in_channel),
            _conv(in_channel, depth, 3, 1, 1),
            _prelu(depth),
            _conv(depth, depth, 3, stride, 1),
            _bn(depth),
            SEModule(depth, 16),
        )

    def _shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.shortcut_layer, nn.MaxPool2d):
            return x[:, :, :: self.stride, :: self.stride] if self.stride > 1 else x
        if self.training:
            return self.shortcut_layer(x)
        conv, bn = self.shortcut_layer
        w, b = _folded(conv, bn)
        return F.conv2d(x, w, b, stride=self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.res_layer(x) + self._shortcut(x)
        bn0, conv1, prelu, conv2, bn2, se = self.res_layer
        r = bn0(x)
        r = prelu(conv1(r))
        w, b = _folded(conv2, bn2)
        r = se(F.conv2d(r, w, b, stride=self.stride, padding=1))
        return r.add_(self._shortcut(x))


class GradualStyleBlock(nn.Module):
    """log2(spatial) stride-2 convs (3×3, bias, LeakyReLU 0.01) down to 1×1, then an
    EqualLinear (lr_mul 1). Keys: ``convs.{0,2,…}`` and ``linear``."""

    # Feature maps at most this wide run in NCHW: there oneDNN's NCHW kernels are faster
    # (the layer is bound by reading its 9.4 MB of weights, not by arithmetic).
    nchw_max_size = 16

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c, self.spatial = out_c, spatial
        num_pools = int(math.log2(spatial))
        if 2 ** num_pools != spatial or num_pools < 1:
            raise ValueError(f"head spatial size must be a power of two ≥ 2, got {spatial}")
        layers: list[nn.Module] = []
        for j in range(num_pools):
            layers += [_conv(in_c if j == 0 else out_c, out_c, 3, 2, 1, bias=True),
                       nn.LeakyReLU(HEAD_SLOPE)]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1.0)

    def set_memory_formats(self) -> None:
        """Channels-last weights for wide inputs, NCHW for narrow ones (see forward)."""
        size = self.spatial
        for m in self.convs:
            if isinstance(m, nn.Conv2d):
                fmt = (torch.contiguous_format if size <= self.nchw_max_size
                       else torch.channels_last)
                with torch.no_grad():
                    m.weight.data = m.weight.data.contiguous(memory_format=fmt)
                size //= 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.convs:
            if isinstance(m, nn.Conv2d) and x.shape[-1] <= self.nchw_max_size:
                x = x.contiguous()
            x = m(x)
        return self.linear(x.reshape(-1, self.out_c))


def _run_heads(heads: Sequence[GradualStyleBlock], x: torch.Tensor) -> torch.Tensor:
    """Apply several heads to the same feature map → (N, len(heads), out_c)."""
    return torch.stack([h(x) for h in heads], dim=1)


class E4EEncoder(nn.Module):
    """Encoder4Editing with an IR-SE body: image (N, 3, S, S) in ``input_range`` → W+ codes
    (N, n_styles, style_dim), relative to the average latent (add ``latent_avg``).

    Args:
        n_styles: style heads = W+ rows (18 for the 1024 px generator, 14 for 256 px).
        num_layers: IR-SE depth (50, 100 or 152) picking units per stage.
        units: explicit units per stage (4 ints), overriding ``num_layers`` (tiny models).
        base_width: channels of the first stage (64); stages use ×1, ×2, ×4, ×8.
        style_dim: head / FPN width (512).
        input_size: the only accepted input size (256); features are input_size/4, /8, /16.
        input_range: value range the encoder expects ((−1, 1): (x/255 − 0.5)/0.5).
    """

    coarse_ind = 3
    middle_ind = 7

    def __init__(self, n_styles: int = 18, num_layers: int = 50,
                 units: Sequence[int] | None = None, base_width: int = 64,
                 style_dim: int = 512, input_size: int = 256,
                 input_range: Sequence[float] = (-1.0, 1.0)):
        super().__init__()
        if units is None:
            if num_layers not in IR_SE_UNITS:
                raise ValueError(f"num_layers must be one of {sorted(IR_SE_UNITS)}")
            units = IR_SE_UNITS[num_layers]
        units = tuple(int(u) for u in units)
        if len(units) != 4 or min(units) < 1:
            raise ValueError(f"units must be 4 positive ints, got {units}")
        if input_size % 32 or input_size < 32:
            raise ValueError(f"input_size must be a multiple of 32, got {input_size}")
        self.n_styles, self.num_layers, self.units = n_styles, num_layers, units
        self.base_width, self.style_dim = base_width, style_dim
        self.input_size = int(input_size)
        self.input_range = (float(input_range[0]), float(input_range[1]))

        depths = [base_width * m for m in (1, 2, 4, 8)]
        self.input_layer = nn.Sequential(_conv(3, base_width, 3, 1, 1), _bn(base_width),
                                         _prelu(base_width))
        body: list[nn.Module] = []
        in_c = base_width
        self._taps: list[int] = []  # body indices whose outputs are c1, c2, c3
        for stage, (n_units, depth) in enumerate(zip(units, depths)):
            for u in range(n_units):
                body.append(BottleneckIRSE(in_c, depth, 2 if u == 0 else 1))
                in_c = depth
            if stage >= 1:
                self._taps.append(len(body) - 1)
        self.body = nn.Sequential(*body)
        self.styles = nn.ModuleList()
        s = self.input_size
        for i in range(n_styles):
            spatial = s // 16 if i < self.coarse_ind else s // 8 if i < self.middle_ind else s // 4
            self.styles.append(GradualStyleBlock(style_dim, style_dim, spatial))
        self.latlayer1 = _conv(depths[2], style_dim, 1, bias=True)
        self.latlayer2 = _conv(depths[1], style_dim, 1, bias=True)
        if depths[3] != style_dim:
            raise ValueError("the deepest stage width (8·base_width) must equal style_dim")
        self.reset_parameters()
        # Channels-last weights (and activations, see ``features``) let oneDNN skip the
        # per-call layout conversions; loading a checkpoint re-applies it.
        self.set_memory_formats()
        self.register_load_state_dict_post_hook(_formats_after_load)

    def get_config(self) -> dict:
        """Constructor arguments (plain values, JSON-serialisable)."""
        return dict(n_styles=self.n_styles, num_layers=self.num_layers,
                    units=list(self.units), base_width=self.base_width,
                    style_dim=self.style_dim, input_size=self.input_size,
                    input_range=list(self.input_range))

    def set_memory_formats(self) -> None:
        """Put the conv weights in the memory formats the forward is fastest with
        (channels-last, except the heads' narrow layers). Done at construction and after
        every ``load_state_dict``; call again after replacing parameters by hand."""
        self.to(memory_format=torch.channels_last)
        for head in self.styles:
            head.set_memory_formats()

    @torch.no_grad()
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise like PyTorch's defaults (kaiming-uniform convs, unit BNs, PReLU 0.25,
        N(0,1) EqualLinear), drawing from ``generator`` (fixed seed when None)."""
        gen = generator if generator is not None else default_init_generator()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                kaiming_uniform_(m.weight, gen)
                if m.bias is not None:
                    uniform_(m.bias, gen, 1.0 / math.sqrt(m.weight[0].numel()))
            elif isinstance(m, (nn.BatchNorm2d, nn.PReLU)) and m.weight.device.type != "meta":
                m.reset_parameters()
                if isinstance(m, nn.BatchNorm2d):
                    m.reset_running_stats()
            elif isinstance(m, EqualLinear):
                m.reset_parameters(gen)

    # -- forward -----------------------------------------------------------------------
    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype (float32, or bfloat16 / float16 after ``.to(dtype)``)."""
        return self.input_layer[0].weight.dtype

    def check_input(self, x: torch.Tensor) -> None:
        """Reject inputs the heads would silently mis-handle (any size but input_size)."""
        if x.dim() != 4 or x.shape[1] != 3 or tuple(x.shape[2:]) != (self.input_size,) * 2:
            raise ValueError(f"E4EEncoder expects (N, 3, {self.input_size}, "
                             f"{self.input_size}) images in {self.input_range}, got "
                             f"{tuple(x.shape)}; resize the aligned face first")

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """Aligned face crops → encoder input: (N, 3, H, W) uint8 in [0, 255] or float in
        [0, 1], resized to ``input_size`` (bilinear, antialiased, like the reference's PIL
        resize) and mapped linearly to ``input_range`` ((x − 0.5)/0.5 for (−1, 1))."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (N, 3, H, W) images, got {tuple(images.shape)}")
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        if tuple(x.shape[-2:]) != (self.input_size,) * 2:
            x = F.interpolate(x, size=(self.input_size,) * 2, mode="bilinear",
                              align_corners=False, antialias=True)
        lo, hi = self.input_range
        return x * (hi - lo) + lo

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Body taps (c1, c2, c3) at input_size/4, /8 and /16 (channels-last tensors)."""
        x = x.contiguous(memory_format=torch.channels_last)
        if self.training:
            x = self.input_layer(x)
        else:
            conv, bn, prelu = self.input_layer
            w, b = _folded(conv, bn)
            x = prelu(F.conv2d(x, w, b, padding=1))
        taps = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self._taps:
                taps.append(x)
        return taps[0], taps[1], taps[2]

    @staticmethod
    def _upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y

    def forward(self, x: torch.Tensor, latent_avg: torch.Tensor | None = None) -> torch.Tensor:
        """Images (N, 3, S, S) → W+ codes (N, n_styles, style_dim).

        Row 0 is w0 = head_0(c3); row i is w0 + head_i(feature_i). With ``latent_avg``
        ((D,), (1, D) or (n_styles, D)) it is added, giving codes for the generator.
        """
        self.check_input(x)
        c1, c2, c3 = self.features(x.to(self.dtype))  # prepare() gives float32
        k1, k2 = min(self.coarse_ind, self.n_styles), min(self.middle_ind, self.n_styles)
        groups = [_run_heads(self.styles[:k1], c3)]
        if self.n_styles > k1:
            p2 = self._upsample_add(c3, self.latlayer1(c2))
            groups.append(_run_heads(self.styles[k1:k2], p2))
            if self.n_styles > k2:
                p1 = self._upsample_add(p2, self.latlayer2(c1))
                groups.append(_run_heads(self.styles[k2:], p1))
        heads = torch.cat(groups, dim=1)  # (N, n_styles, D)
        w0 = heads[:, :1]
        codes = torch.cat([w0, w0 + heads[:, 1:]], dim=1)
        if latent_avg is not None:
            codes = codes + _broadcast_latent_avg(latent_avg, self.n_styles).to(codes)
        return codes

    def extra_repr(self) -> str:
        return (f"n_styles={self.n_styles}, units={self.units}, input_size={self.input_size},"
                f" input_range={self.input_range}")


def _formats_after_load(module: "E4EEncoder", incompatible_keys) -> None:
    """Loading with ``assign=True`` replaces the parameters by the file's (NCHW) tensors."""
    module.set_memory_formats()


def _broadcast_latent_avg(latent_avg: torch.Tensor, n_rows: int) -> torch.Tensor:
    """(D,), (1, D) or (n_rows, D) → (n_rows, D)."""
    if latent_avg.dim() == 1:
        latent_avg = latent_avg.unsqueeze(0)
    if latent_avg.dim() != 2 or latent_avg.shape[0] not in (1, n_rows):
        raise ValueError(f"latent_avg must be (D,), (1, D) or ({n_rows}, D), got "
                         f"{tuple(latent_avg.shape)}")
    return latent_avg.expand(n_rows, -1)
