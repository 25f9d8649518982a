"""StyleGAN2 generator: equivalence with a literal per-sample reference written from
checkpoint_layouts.md §2, and behaviour of small configurations built from the real class.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lreorg_hub.backbones.stylegan2 import (ModulatedConv2d, StyledConv, StyleGAN2Generator,
                                            ToRGB, Upsample, blur_kernel_2d, truncate)

TINY = dict(size=64, style_dim=32, n_mlp=2, channel_base=256, channel_max=32)


# --------------------------------------------------------------------------------------
# Literal reference (slow, per sample, float64), from the written description only
# --------------------------------------------------------------------------------------
def upfirdn(x, k, up=1, pad=(0, 0)):
    """Zero insertion by `up`, zero pad (p0, p1), true 2-D convolution with k, per channel."""
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    if up > 1:
        z = y.new_zeros(n * c, 1, h * up, w * up)
        z[:, :, ::up, ::up] = y
        y = z
    y = F.pad(y, [pad[0], pad[1], pad[0], pad[1]])
    y = F.conv2d(y, torch.flip(k, (0, 1))[None, None].to(y))
    return y.reshape(n, c, y.shape[2], y.shape[3])


def ref_linear(x, w, b, lr_mul=1.0):
    return x @ (w * lr_mul / math.sqrt(w.shape[1])).T + b * lr_mul


def ref_modconv(sd, pre, x, wrow, demod=True, up=False):
    weight = sd[pre + "weight"][0]
    o, i, k, _ = weight.shape
    outs = []
    for n in range(x.shape[0]):
        s = ref_linear(wrow[n], sd[pre + "modulation.weight"], sd[pre + "modulation.bias"])
        wn = weight / math.sqrt(i * k * k) * s[None, :, None, None]
        if demod:
            wn = wn / torch.sqrt((wn ** 2).sum((1, 2, 3), keepdim=True) + 1e-8)
        if up:  # transposed conv, stride 2, no flip, then blur with pad (1, 1)
            y = F.conv_transpose2d(x[n:n + 1], wn.transpose(0, 1), stride=2)
            y = upfirdn(y, sd[pre + "blur.kernel"], pad=(1, 1))
        else:
            y = F.conv2d(x[n:n + 1], wn, padding=k // 2)
        outs.append(y)
    return torch.cat(outs)


def ref_styled(sd, pre, x, wrow, noise, up=False):
    y = ref_modconv(sd, pre + "conv.", x, wrow, up=up)
    if noise is not None:
        y = y + sd[pre + "noise.weight"] * noise
    return math.sqrt(2) * F.leaky_relu(y + sd[pre + "activate.bias"].view(1, -1, 1, 1), 0.2)


def ref_torgb(sd, pre, x, wrow, skip):
    y = ref_modconv(sd, pre + "conv.", x, wrow, demod=False) + sd[pre + "bias"]
    if skip is not None:
        y = y + upfirdn(skip, sd[pre + "upsample.kernel"], up=2, pad=(2, 1))
    return y


def ref_mapping(sd, z, n_mlp, lr_mul=0.01):
    h = z * torch.rsqrt((z ** 2).mean(-1, keepdim=True) + 1e-8)
    for layer in range(1, n_mlp + 1):
        h = ref_linear(h, sd[f"style.{layer}.weight"], sd[f"style.{layer}.bias"], lr_mul)
        h = math.sqrt(2) * F.leaky_relu(h, 0.2)
    return h


def ref_generate(sd, w, noises, n_blocks):
    """w (N, L, D) float64; noises[j] (N or 1, 1, R, R) or None; returns the skip image."""
    x = sd["input.input"].expand(w.shape[0], -1, -1, -1)
    x = ref_styled(sd, "conv1.", x, w[:, 0], noises[0])
    skip = ref_torgb(sd, "to_rgb1.", x, w[:, 1], None)
    for k in range(n_blocks):
        x = ref_styled(sd, f"convs.{2 * k}.", x, w[:, 2 * k + 1], noises[2 * k + 1], up=True)
        x = ref_styled(sd, f"convs.{2 * k + 1}.", x, w[:, 2 * k + 2], noises[2 * k + 2])
        skip = ref_torgb(sd, f"to_rgbs.{k}.", x, w[:, 2 * k + 3], skip)
    return skip


def randomized(module, seed=0, std=0.5):
    """Random values everywhere (zero-initialised noise gains and biases included)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * std)
            if name.endswith("modulation.bias"):
                p.add_(1.0)  # the reference initialises (and TF weights carry) +1
    return module.eval()


def f64_state(module):
    return {k: v.double() for k, v in module.state_dict().items()}


def rel_err(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


@pytest.fixture(scope="module")
def tiny():
    return randomized(StyleGAN2Generator(**TINY))


# --------------------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------------------
@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (True, True, 3),
                                                    (False, False, 1)])
def test_modulated_conv_equals_per_sample_formula(upsample, demodulate, k):
    g = torch.Generator().manual_seed(1)
    conv = randomized(ModulatedConv2d(12, 10, k, 16, demodulate=demodulate,
                                      upsample=upsample))
    x = torch.randn(3, 12, 9, 9, generator=g)
    style = torch.randn(3, 16, generator=g)
    bias = torch.randn(10, generator=g)
    with torch.no_grad():
        out = conv(x, style, bias=bias)
        ref = ref_modconv(f64_state(conv), "", x.double(), style.double(), demod=demodulate,
                          up=upsample) + bias.double().view(1, -1, 1, 1)
    assert out.shape == ref.shape == (3, 10, 18 if upsample else 9, 18 if upsample else 9)
    assert rel_err(out, ref) < 1e-5


def test_modulated_weight_is_the_demodulated_kernel():
    conv = randomized(ModulatedConv2d(6, 5, 3, 8))
    style = torch.randn(2, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        w = conv.modulated_weight(style)
        s = conv.modulation(style)
        ref = conv.weight * s[:, None, :, None, None] / math.sqrt(6 * 9)
        ref = ref / torch.sqrt(ref.square().sum((2, 3, 4), keepdim=True) + 1e-8)
    torch.testing.assert_close(w, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("upsample", [False, True])
def test_styled_conv_equals_its_parts(upsample):
    """The fused fast path = activate(noise(conv(x))) with the modules' own semantics."""
    g = torch.Generator().manual_seed(14)
    layer = randomized(StyledConv(8, 6, 3, 16, upsample=upsample))
    x, style = torch.randn(2, 8, 5, 5, generator=g), torch.randn(2, 16, generator=g)
    r = 10 if upsample else 5
    noise = torch.randn(2, 1, r, r, generator=g)
    with torch.no_grad():
        fast = layer(x, style, noise)
        parts = layer.activate(layer.noise(layer.conv(x, style), noise))
        ref = ref_styled(f64_state(layer), "", x.double(), style.double(), noise.double(),
                         up=upsample)
    torch.testing.assert_close(fast, parts, rtol=1e-5, atol=1e-5)
    assert rel_err(fast, ref) < 1e-5


def test_skip_upsample_equals_upfirdn():
    x = torch.randn(2, 3, 7, 7, generator=torch.Generator().manual_seed(3))
    up = Upsample(2)
    out = up(x)
    ref = upfirdn(x.double(), blur_kernel_2d(factor=2).double(), up=2, pad=(2, 1))
    assert out.shape == (2, 3, 14, 14)
    assert rel_err(out, ref) < 1e-6


def test_torgb_adds_the_upsampled_skip():
    g = torch.Generator().manual_seed(4)
    rgb = randomized(ToRGB(8, 16))
    x, style, skip = (torch.randn(2, 8, 6, 6, generator=g), torch.randn(2, 16, generator=g),
                      torch.randn(2, 3, 3, 3, generator=g))
    with torch.no_grad():
        out = rgb(x, style, skip)
        ref = ref_torgb(f64_state(rgb), "", x.double(), style.double(), skip.double())
    assert rel_err(out, ref) < 1e-5


# --------------------------------------------------------------------------------------
# The whole generator
# --------------------------------------------------------------------------------------
def test_generator_equals_reference_forward_w_plus(tiny):
    g = torch.Generator().manual_seed(5)
    w = torch.randn(3, tiny.n_latent, TINY["style_dim"], generator=g)
    noises = [getattr(tiny.noises, f"noise_{j}") for j in range(tiny.num_layers)]
    with torch.no_grad():
        out = tiny(w)  # noise_mode="const": the stored buffers
        ref = ref_generate(f64_state(tiny), w.double(), [n.double() for n in noises], 4)
    assert out.shape == (3, 3, 64, 64) and out.is_contiguous()
    assert rel_err(out, ref) < 1e-5


def test_generator_equals_reference_forward_z_and_explicit_noise(tiny):
    g = torch.Generator().manual_seed(6)
    z = torch.randn(2, TINY["style_dim"], generator=g)
    noise = [torch.randn(2, 1, 2 ** ((j + 5) // 2), 2 ** ((j + 5) // 2), generator=g)
             for j in range(tiny.num_layers)]
    with torch.no_grad():
        out = tiny(z, input_is_latent=False, noise=noise)
        sd = f64_state(tiny)
        w = ref_mapping(sd, z.double(), TINY["n_mlp"]).unsqueeze(1).expand(-1, tiny.n_latent, -1)
        ref = ref_generate(sd, w, [n.double() for n in noise], 4)
    assert rel_err(out, ref) < 1e-5


def test_batch_items_are_independent(tiny):
    """Folding the batch into channels must not mix samples."""
    w = torch.randn(3, tiny.n_latent, TINY["style_dim"], generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        batch = tiny(w)
        single = torch.cat([tiny(w[i:i + 1]) for i in range(3)])
    torch.testing.assert_close(batch, single, rtol=1e-5, atol=1e-5)


def test_w_codes_broadcast_to_every_row(tiny):
    w = torch.randn(2, TINY["style_dim"], generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        a = tiny(w)
        b = tiny(w.unsqueeze(1).expand(-1, tiny.n_latent, -1))
    torch.testing.assert_close(a, b)


def test_forward_and_backward_on_cpu():
    gen = randomized(StyleGAN2Generator(size=32, style_dim=16, n_mlp=2, channel_base=128,
                                        channel_max=16)).train()
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(9), requires_grad=True)
    img = gen(z, input_is_latent=False, noise_mode="random",
              generator=torch.Generator().manual_seed(10))
    assert img.shape == (2, 3, 32, 32)
    img.square().mean().backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    for name, p in gen.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_noise_modes_and_determinism(tiny):
    w = torch.randn(2, tiny.n_latent, TINY["style_dim"],
                    generator=torch.Generator().manual_seed(11))
    with torch.no_grad():
        const_a, const_b = tiny(w), tiny(w, noise_mode="const")
        rand_a = tiny(w, noise_mode="random", generator=torch.Generator().manual_seed(1))
        rand_b = tiny(w, noise_mode="random", generator=torch.Generator().manual_seed(1))
        rand_c = tiny(w, noise_mode="random", generator=torch.Generator().manual_seed(2))
        none = tiny(w, noise_mode="none")
        zeros = tiny(w, noise=[torch.zeros(1, 1, 2 ** ((j + 5) // 2), 2 ** ((j + 5) // 2))
                               for j in range(tiny.num_layers)])
    assert torch.equal(const_a, const_b)
    assert torch.equal(rand_a, rand_b)
    assert not torch.allclose(rand_a, rand_c)
    assert not torch.allclose(const_a, none)
    torch.testing.assert_close(none, zeros)
    with pytest.raises(ValueError, match="noise_mode"):
        tiny(w, noise_mode="fresh")


def test_sampling_does_not_touch_the_global_rng(tiny):
    state = torch.random.get_rng_state()
    StyleGAN2Generator(size=8, style_dim=8, n_mlp=1, channel_base=16, channel_max=8)
    with torch.no_grad():
        tiny.mean_latent(64)
        tiny(tiny.sample_w(1), noise_mode="random")
    assert torch.equal(state, torch.random.get_rng_state())


def test_default_initialisation_is_deterministic():
    a = StyleGAN2Generator(size=16, style_dim=8, n_mlp=2, channel_base=32, channel_max=8)
    b = StyleGAN2Generator(size=16, style_dim=8, n_mlp=2, channel_base=32, channel_max=8)
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb), ka


def test_truncation(tiny):
    g = torch.Generator().manual_seed(12)
    w_avg = tiny.mean_latent(512, generator=torch.Generator().manual_seed(0))
    assert w_avg.shape == (1, TINY["style_dim"])
    torch.testing.assert_close(w_avg, tiny.mean_latent(512, torch.Generator().manual_seed(0)))
    w = tiny.sample_w(2, generator=g)
    with torch.no_grad():
        assert torch.equal(tiny(w, truncation=1.0, truncation_latent=w_avg), tiny(w))
        psi0 = tiny(w, truncation=0.0, truncation_latent=w_avg)
        mean_img = tiny(w_avg.expand(2, -1))
        half = tiny(w, truncation=0.5, truncation_latent=w_avg)
        half_ref = tiny(w_avg + 0.5 * (w - w_avg))
    torch.testing.assert_close(psi0, mean_img)
    torch.testing.assert_close(half, half_ref, rtol=1e-5, atol=1e-5)
    # (L, D) averages (as in e4e files) work for W and W+ codes alike
    assert torch.equal(truncate(w, 0.0, w_avg.expand(tiny.n_latent, -1)), w_avg.expand(2, -1))
    with pytest.raises(ValueError, match="truncation_latent"):
        tiny(w, truncation=0.7)


def test_preview_stops_at_the_skip_image_of_that_stage(tiny):
    """output_size=32 returns what to_rgbs[2] (the 32 px ToRGB) accumulates in a full run."""
    w = torch.randn(2, tiny.n_latent, TINY["style_dim"],
                    generator=torch.Generator().manual_seed(13))
    captured = {}
    hook = tiny.to_rgbs[2].register_forward_hook(
        lambda m, args, out: captured.__setitem__("skip", out.detach().clone()))
    try:
        with torch.no_grad():
            full = tiny(w)
            stage = captured.pop("skip")
            preview = tiny(w, output_size=32)
    finally:
        hook.remove()
    assert full.shape[-1] == 64 and preview.shape == (2, 3, 32, 32)
    torch.testing.assert_close(preview, stage)
    with torch.no_grad():
        assert tiny(w, output_size=4).shape == (2, 3, 4, 4)
    with pytest.raises(ValueError, match="output_size"):
        tiny(w, output_size=48)


def test_input_validation(tiny):
    with pytest.raises(ValueError, match="rows"):
        tiny(torch.zeros(1, tiny.n_latent + 1, TINY["style_dim"]))
    with pytest.raises(ValueError, match="expected styles"):
        tiny(torch.zeros(1, 7))
    with pytest.raises(ValueError):
        StyleGAN2Generator(size=48)


def test_config_round_trip(tiny):
    cfg = tiny.get_config()
    assert all(isinstance(v, (int, float, str)) for v in cfg.values())
    again = StyleGAN2Generator(**cfg)
    assert [k for k in again.state_dict()] == [k for k in tiny.state_dict()]
