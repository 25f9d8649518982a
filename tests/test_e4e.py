"""e4e encoder: equivalence with a literal reference written from checkpoint_layouts.md §3,
input checks, latent_avg handling, and an encoder → generator round trip (tiny configs).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from lreorg_hub.backbones import E4EEncoder, StyleGAN2Generator

# 64 px input: c1 16², c2 8², c3 4²; 10 heads (a 64 px generator has 10 W+ rows).
TINY_E4E = dict(n_styles=10, units=(1, 2, 2, 1), base_width=16, style_dim=128, input_size=64)
TINY_G = dict(size=64, style_dim=128, n_mlp=2, channel_base=256, channel_max=32)


def _bn(sd, p, x):
    return F.batch_norm(x, sd[p + "running_mean"], sd[p + "running_var"], sd[p + "weight"],
                        sd[p + "bias"], False, 0.0, 1e-5)


def _unit(sd, p, x, stride):
    if p + "shortcut_layer.0.weight" in sd:
        sc = _bn(sd, p + "shortcut_layer.1.",
                 F.conv2d(x, sd[p + "shortcut_layer.0.weight"], stride=stride))
    else:
        sc = F.max_pool2d(x, 1, stride)
    r = _bn(sd, p + "res_layer.0.", x)
    r = F.prelu(F.conv2d(r, sd[p + "res_layer.1.weight"], padding=1), sd[p + "res_layer.2.weight"])
    r = _bn(sd, p + "res_layer.4.", F.conv2d(r, sd[p + "res_layer.3.weight"], stride=stride,
                                             padding=1))
    g = F.relu(F.conv2d(r.mean((2, 3), keepdim=True), sd[p + "res_layer.5.fc1.weight"]))
    g = torch.sigmoid(F.conv2d(g, sd[p + "res_layer.5.fc2.weight"]))
    return r * g + sc


def _head(sd, p, x):
    j = 0
    while p + f"convs.{j}.weight" in sd:
        x = F.conv2d(x, sd[p + f"convs.{j}.weight"], sd[p + f"convs.{j}.bias"], stride=2,
                     padding=1)
        x = F.leaky_relu(x, 0.01)
        j += 2
    w = sd[p + "linear.weight"]
    return x.flatten(1) @ (w / math.sqrt(w.shape[1])).T + sd[p + "linear.bias"]


def ref_encode(sd, x, units, n_styles):
    """Literal Encoder4Editing forward (one head at a time, NCHW, float64)."""
    x = F.conv2d(x, sd["input_layer.0.weight"], padding=1)
    x = F.prelu(_bn(sd, "input_layer.1.", x), sd["input_layer.2.weight"])
    i, taps = 0, []
    for n in units:
        for u in range(n):
            x = _unit(sd, f"body.{i}.", x, 2 if u == 0 else 1)
            i += 1
        taps.append(x)
    c1, c2, c3 = taps[1:]

    def up_add(a, b):
        return F.interpolate(a, size=b.shape[-2:], mode="bilinear", align_corners=True) + b

    w0 = _head(sd, "styles.0.", c3)
    rows, feat = [w0], c3
    for i in range(1, n_styles):
        if i == 3:
            p2 = up_add(c3, F.conv2d(c2, sd["latlayer1.weight"], sd["latlayer1.bias"]))
            feat = p2
        elif i == 7:
            p1 = up_add(p2, F.conv2d(c1, sd["latlayer2.weight"], sd["latlayer2.bias"]))
            feat = p1
        rows.append(w0 + _head(sd, f"styles.{i}.", feat))
    return torch.stack(rows, 1)


def randomized_encoder(seed=0, **cfg):
    enc = E4EEncoder(**{**TINY_E4E, **cfg})
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in enc.state_dict(keep_vars=True).items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("running_mean") or t.dim() == 1:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
                if "res_layer.0." in name or "res_layer.4." in name or "layer.1." in name:
                    if name.endswith("weight"):
                        t.add_(1.0)
    return enc.eval()


def images(n, size=64, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_encoder_equals_reference_forward():
    enc = randomized_encoder()
    x = images(2)
    with torch.no_grad():
        out = enc(x)
        ref = ref_encode({k: v.double() for k, v in enc.state_dict().items()}, x.double(),
                         enc.units, enc.n_styles)
    assert out.shape == (2, 10, 128)
    err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
    assert err < 1e-5


def test_row_zero_is_w0_and_rows_are_w0_plus_deltas():
    enc = randomized_encoder()
    with torch.no_grad():
        c1, c2, c3 = enc.features(images(1))
        w0 = enc.styles[0](c3)
        out = enc(images(1))
    torch.testing.assert_close(out[:, 0], w0, rtol=1e-5, atol=1e-5)
    delta1 = enc.styles[1](c3)
    torch.testing.assert_close(out[:, 1], w0 + delta1, rtol=1e-5, atol=1e-5)


def test_latent_avg_is_added_in_every_accepted_shape():
    enc = randomized_encoder()
    x = images(2)
    avg = torch.randn(128, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        base = enc(x)
        for shaped in (avg, avg[None], avg.expand(10, -1)):
            torch.testing.assert_close(enc(x, latent_avg=shaped), base + avg)
        with pytest.raises(ValueError, match="latent_avg"):
            enc(x, latent_avg=avg.expand(4, -1))


def test_input_size_and_range_travel_with_the_model():
    enc = E4EEncoder(**TINY_E4E)
    assert enc.input_size == 64 and enc.input_range == (-1.0, 1.0)
    cfg = enc.get_config()
    assert cfg["input_size"] == 64 and cfg["input_range"] == [-1.0, 1.0]
    assert E4EEncoder(**cfg).get_config() == cfg
    with pytest.raises(ValueError, match="expects"):
        enc(images(1, size=80))  # the reference would silently return a wrong batch
    with pytest.raises(ValueError, match="expects"):
        enc(torch.zeros(1, 1, 64, 64))


def test_prepare_maps_pixels_to_the_input_range():
    enc = E4EEncoder(**TINY_E4E)
    u8 = torch.tensor([0, 255], dtype=torch.uint8).repeat(2, 3, 64, 32)
    x = enc.prepare(u8)
    assert x.shape == (2, 3, 64, 64) and x.min() == -1.0 and x.max() == 1.0
    resized = enc.prepare(torch.full((1, 3, 128, 100), 0.75))  # resized to input_size
    assert resized.shape == (1, 3, 64, 64)
    torch.testing.assert_close(resized, torch.full((1, 3, 64, 64), 0.5))


def test_train_mode_gradients_flow():
    enc = randomized_encoder().train()
    x = images(2).requires_grad_(True)
    enc(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    missing = [n for n, p in enc.named_parameters() if p.grad is None]
    assert not missing


def test_eval_mode_with_gradients_matches_no_grad():
    """The folded-BN eval path is differentiable too (e.g. for latent optimisation)."""
    enc = randomized_encoder()
    x = images(1).requires_grad_(True)
    out = enc(x)
    out.sum().backward()
    with torch.no_grad():
        torch.testing.assert_close(out.detach(), enc(x))
    assert torch.isfinite(x.grad).all()


def test_encoder_to_generator_round_trip():
    enc = randomized_encoder()
    gen = StyleGAN2Generator(**TINY_G).eval()
    latent_avg = gen.mean_latent(256, torch.Generator().manual_seed(0))
    with torch.no_grad():
        codes = enc(images(2), latent_avg=latent_avg)
        assert codes.shape == (2, gen.n_latent, 128)
        img = gen(codes)
    assert img.shape == (2, 3, 64, 64) and torch.isfinite(img).all()


def test_default_init_is_deterministic_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = E4EEncoder(**TINY_E4E), E4EEncoder(**TINY_E4E)
    assert torch.equal(state, torch.random.get_rng_state())
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k


def test_batchnorm_is_folded_once_and_refolded_when_weights_change(monkeypatch):
    from lreorg_hub.backbones import e4e

    enc = randomized_encoder().eval()
    x = images(2)
    calls = []
    real = e4e._fold_bn
    monkeypatch.setattr(e4e, "_fold_bn", lambda *a: calls.append(1) or real(*a))
    with torch.no_grad():
        first = enc(x)
        folds = len(calls)
        assert folds > 0
        again = enc(x)
        assert len(calls) == folds and torch.equal(first, again)  # folded once, reused
        # New weights (a load copies in place): the fold follows them.
        state = randomized_encoder(seed=1).state_dict()
        enc.load_state_dict(state)
        fresh = randomized_encoder(seed=1).eval()(x)
        assert torch.allclose(enc(x), fresh, atol=1e-5) and not torch.allclose(first, fresh)
