"""The shared-convolution modulated-conv path and half precision through the backbones.

The shared path (styles on the activations, one convolution for the batch) must give the
grouped path's images within 1e-4; bfloat16 / float16 backbones must run end to end, and
their difference to float32 on the same codes is measured (and bounded) here.
"""

from __future__ import annotations

import copy

import pytest
import torch

from lreorg_hub.backbones.stylegan2 import (MODCONV_MODES, ModulatedConv2d, StyledConv,
                                            StyleGAN2Generator, ToRGB)
from test_stylegan2 import TINY, randomized


@pytest.fixture(scope="module")
def tiny():
    return randomized(StyleGAN2Generator(**TINY))


def codes(n, gen, seed=0):
    return torch.randn(n, gen.n_latent, gen.style_dim,
                       generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("upsample,demodulate,k", [(False, True, 3), (True, True, 3),
                                                    (False, False, 1)])
@pytest.mark.parametrize("n", [1, 3])
def test_shared_modulated_conv_equals_grouped(upsample, demodulate, k, n):
    g = torch.Generator().manual_seed(20 + n)
    conv = randomized(ModulatedConv2d(12, 10, k, 16, demodulate=demodulate,
                                      upsample=upsample))
    x, style = torch.randn(n, 12, 9, 9, generator=g), torch.randn(n, 16, generator=g)
    bias = torch.randn(10, generator=g)
    with torch.no_grad():
        grouped = conv(x, style, bias=bias)
        shared = conv(x, style, bias=bias, shared=True)
    assert shared.shape == grouped.shape
    torch.testing.assert_close(shared, grouped, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("upsample", [False, True])
def test_shared_styled_conv_and_torgb_equal_grouped(upsample):
    g = torch.Generator().manual_seed(30)
    layer = randomized(StyledConv(8, 6, 3, 16, upsample=upsample))
    rgb = randomized(ToRGB(6, 16))
    x, style = torch.randn(4, 8, 6, 6, generator=g), torch.randn(4, 16, generator=g)
    r = 12 if upsample else 6
    noise = torch.randn(4, 1, r, r, generator=g)
    skip = torch.randn(4, 3, r // 2, r // 2, generator=g)
    with torch.no_grad():
        for nz in (noise, None):
            a, b = layer(x, style, nz), layer(x, style, nz, shared=True)
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(rgb(a, style, skip, shared=True), rgb(a, style, skip),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n", [1, 2, 7])
def test_generator_paths_agree_within_1e4(tiny, n):
    """Every layer (4 upsampling blocks, ToRGB skips, noise) through both paths."""
    w = codes(n, tiny, seed=n)
    with torch.no_grad():
        grouped = tiny(w, modconv="grouped")
        shared = tiny(w, modconv="shared")
        preview = tiny(w, modconv="shared", output_size=16, noise_mode="none")
        preview_ref = tiny(w, modconv="grouped", output_size=16, noise_mode="none")
    assert shared.shape == grouped.shape == (n, 3, 64, 64) and shared.is_contiguous()
    assert (shared - grouped).abs().max().item() < 1e-4
    assert (preview - preview_ref).abs().max().item() < 1e-4


def test_modconv_switch_constructor_attribute_and_auto(tiny):
    assert MODCONV_MODES == ("auto", "grouped", "shared")
    gen = StyleGAN2Generator(**TINY, modconv="shared")
    assert gen.get_config()["modconv"] == "shared"
    assert StyleGAN2Generator(**gen.get_config()).modconv == "shared"
    gen.modconv = "grouped"
    assert gen.get_config()["modconv"] == "grouped" and not gen.uses_shared_modconv(8)
    with pytest.raises(ValueError, match="modconv must be one of auto, grouped, shared"):
        gen.modconv = "fused"
    with pytest.raises(ValueError, match="modconv must be one of"):
        StyleGAN2Generator(**TINY, modconv="fast")
    with pytest.raises(ValueError, match="modconv must be one of"):
        tiny(codes(1, tiny), modconv="nope")
    # auto: grouped on CPU (the fast case there), per-call override wins
    assert tiny.modconv == "auto" and not tiny.uses_shared_modconv(64)
    assert tiny.uses_shared_modconv(1, "shared")


def test_shared_path_runs_backward(tiny):
    """Training code can use the shared path too (it is what StyleGAN2-ADA trains with)."""
    gen = copy.deepcopy(tiny).train()
    w = codes(2, gen).requires_grad_(True)
    gen(w, modconv="shared").square().mean().backward()
    assert torch.isfinite(w.grad).all() and w.grad.abs().sum() > 0
    assert all(p.grad is not None for p in gen.parameters() if p.requires_grad
               and not any(p is q for q in gen.style.parameters()))


# --------------------------------------------------------------------------------------
# Half precision
# --------------------------------------------------------------------------------------
# Max |Δ| on [−1, 1]-range images of the randomized tiny generator (outputs up to ~6):
# bfloat16 keeps 8 mantissa bits, float16 11; measured ~0.06 and ~0.01.
HALF_IMAGE_TOL = {torch.bfloat16: 0.15, torch.float16: 0.03}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("modconv", ["grouped", "shared"])
def test_half_precision_generator_parity(tiny, dtype, modconv, record_property):
    half = copy.deepcopy(tiny).to(dtype)
    w = codes(3, tiny, seed=40)  # float32 codes: the generator casts them
    with torch.no_grad():
        ref = tiny(w, modconv="grouped")
        out = half(w, modconv=modconv)
    assert out.dtype == dtype and torch.isfinite(out).all()
    diff = (out.float() - ref).abs().max().item()
    record_property(f"max_image_diff_{dtype}_{modconv}", diff)
    assert 0 < diff < HALF_IMAGE_TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_encoder_parity(tiny_backbone, dtype):
    enc = tiny_backbone.encoder
    half = copy.deepcopy(enc).to(dtype)
    assert half.dtype == dtype
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(41))
    with torch.no_grad():
        ref = enc(enc.prepare(x), latent_avg=tiny_backbone.latent_avg)
        out = half(half.prepare(x), latent_avg=tiny_backbone.latent_avg)  # float32 input
    assert out.dtype == dtype
    rel = ((out.float() - ref).abs().max() / ref.abs().max()).item()
    assert 0 < rel < (0.02 if dtype == torch.bfloat16 else 0.005)
