import pytest
import torch

from lreorg_hub.method.cdfnet import CDFNet, ConditionBlock, DisentangleBlock, soft_clamp

from conftest import TINY_CDFNET, randomize


def reset_all_linears(net):
    """PyTorch's default (random, non-zero) init everywhere, the zero-initialised layers too."""
    for m in net.modules():
        if isinstance(m, torch.nn.Linear):
            m.reset_parameters()


def test_soft_clamp_bounds_and_is_near_identity_at_zero():
    x = torch.linspace(-100, 100, 1001)
    y = soft_clamp(x, 2.0)
    assert y.abs().max() <= 2.0 and torch.all(torch.diff(y) >= 0)
    assert torch.allclose(soft_clamp(torch.tensor([1e-3]), 2.0), torch.tensor([1e-3]), atol=1e-9)


def test_full_size_random_network_is_exactly_invertible(gen):
    torch.manual_seed(0)  # reset_parameters draws from the global RNG (test code only)
    net = CDFNet(num_rows=18)
    reset_all_linears(net)
    assert all(m.weight.abs().sum() > 0 for m in net.modules() if isinstance(m, torch.nn.Linear))
    s = torch.randn(4, 18, 512, generator=gen)
    k = torch.randn(4, 512, generator=gen)
    with torch.no_grad():
        f, r = net(s, k)
        delta, s_hat = net.inverse(f, r, k)
    assert f.abs().max() > 1e-2 and (r - s).abs().max() > 1e-2  # the map is far from identity
    assert (s_hat - s).abs().max() < 1e-4
    assert delta.abs().max() < 1e-4


def test_blocks_invert_each_other(gen):
    cb, db = ConditionBlock(8, 5, 16, clamp=2.0), DisentangleBlock(8, 4, 2, clamp=2.0)
    randomize(cb, gen, std=0.3)
    randomize(db, gen, std=0.3)
    h1, h2, k = (torch.randn(3, 8, generator=gen) for _ in range(3))
    k = k[:, :5]
    back1, back2 = cb.inverse(*cb(h1, h2, k), k)
    assert torch.allclose(back1, h1, atol=1e-5) and torch.allclose(back2, h2, atol=1e-5)
    back1, back2 = db.inverse(*db(h1, h2))
    assert torch.allclose(back1, h1, atol=1e-5) and torch.allclose(back2, h2, atol=1e-5)


def test_new_network_is_the_identity(gen):
    net = CDFNet(**TINY_CDFNET)
    s = torch.randn(3, 4, 16, generator=gen)
    k = torch.randn(12, generator=gen)
    f, r = net(s, k)
    assert torch.equal(f, torch.zeros_like(s)) and torch.equal(r, s)
    f_new = torch.randn_like(s)
    delta, s_hat = net.inverse(f_new, r, k)
    assert torch.equal(s_hat, s) and torch.equal(delta, f_new)


def test_w_codes_broadcast_to_all_rows(gen):
    net = CDFNet(**TINY_CDFNET)
    randomize(net, gen)
    w = torch.randn(2, 16, generator=gen)
    k = torch.randn(2, 12, generator=gen)
    f, r = net(w, k)
    f_plus, r_plus = net(w.unsqueeze(1).expand(-1, 4, -1), k)
    assert f.shape == (2, 4, 16)
    assert torch.allclose(f, f_plus) and torch.allclose(r, r_plus)
    # the row embedding makes rows differ even for identical input rows
    assert (f[:, 0] - f[:, 1]).abs().max() > 1e-4


def test_condition_changes_the_split(gen):
    net = CDFNet(**TINY_CDFNET)
    randomize(net, gen)
    s = torch.randn(2, 4, 16, generator=gen)
    f1, _ = net(s, torch.randn(12, generator=gen))
    f2, _ = net(s, torch.randn(12, generator=gen))
    assert (f1 - f2).abs().max() > 1e-3


def test_gradients_reach_every_parameter(gen):
    net = CDFNet(**TINY_CDFNET)
    randomize(net, gen)
    s = torch.randn(3, 4, 16, generator=gen)
    k = torch.randn(3, 12, generator=gen)
    f, r = net(s, k)
    delta, s_hat = net.inverse(f.flip(0), r, k)
    (f.square().sum() + r.square().sum() + delta.abs().sum() + s_hat.square().sum()).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_fresh_network_trains_from_its_zero_layers(gen):
    net = CDFNet(**TINY_CDFNET)
    s = torch.randn(3, 4, 16, generator=gen)
    f, r = net(s, torch.randn(12, generator=gen))
    (f.sum() + r.square().sum()).backward()
    zero_layers = [n for n, _ in net.named_parameters() if ".fc_out.weight" in n]
    assert zero_layers
    grads = dict(net.named_parameters())
    assert all(grads[n].grad.abs().sum() > 0 for n in zero_layers)


@pytest.mark.parametrize("bad", [torch.zeros(2, 5, 16), torch.zeros(2, 15), torch.zeros(16)])
def test_bad_code_shape_is_a_clear_error(bad):
    net = CDFNet(**TINY_CDFNET)
    with pytest.raises(ValueError, match=r"codes must have shape \(N, 16\) or \(N, 4, 16\)"):
        net(bad, torch.zeros(12))


def test_bad_condition_shape_is_a_clear_error():
    net = CDFNet(**TINY_CDFNET)
    with pytest.raises(ValueError, match=r"keyword condition must have shape \(12,\)"):
        net(torch.zeros(2, 4, 16), torch.zeros(7))


def test_config_rebuilds_the_network_and_the_weights_load_strictly(gen):
    """CDFNet is saved inside the LReOrg bundle (tests/test_model.py); on its own its config
    rebuilds the same shapes and its state dict loads strictly."""
    net = CDFNet(**TINY_CDFNET)
    randomize(net, gen)
    back = CDFNet(**net.config)
    back.load_state_dict(net.state_dict())
    s, k = torch.randn(2, 4, 16, generator=gen), torch.randn(12, generator=gen)
    assert all(torch.equal(a, b) for a, b in zip(net(s, k), back(s, k)))
    with pytest.raises(RuntimeError, match="size mismatch"):
        CDFNet(**{**net.config, "hidden_dim": 32}).load_state_dict(net.state_dict())


def test_construction_draws_from_os_entropy_and_leaves_the_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b = CDFNet(**TINY_CDFNET), CDFNet(**TINY_CDFNET)
    assert torch.equal(state, torch.random.get_rng_state())
    # No generator given: a fresh OS-entropy one, so two new networks differ...
    assert not torch.equal(a.row_embedding, b.row_embedding)
    # ...and a passed generator makes the initialisation reproducible.
    a.reset_parameters(torch.Generator().manual_seed(3))
    b.reset_parameters(torch.Generator().manual_seed(3))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert torch.equal(state, torch.random.get_rng_state())
    g = torch.Generator().manual_seed(4)
    s, k = torch.randn(2, 4, 16, generator=g), torch.randn(12, generator=g)
    with torch.no_grad():
        f, r = a(s, k)                              # still the identity map when new
    assert torch.equal(f, torch.zeros_like(f)) and torch.equal(r, s)


# -- half precision ---------------------------------------------------------------------------
# Relative errors (max |Δ| / max |s|) of a randomized default-size CDFNet (4 blocks, 512-wide
# rows), measured over seeds 21, 1, 2: bfloat16 round trip 0.029–0.079 (float32: 1e-6), key
# feature vs float32 0.008–0.009; float16 round trip 0.0055–0.0072, key 0.0010–0.0013.
HALF_CDFNET_TOL = {torch.bfloat16: (0.15, 0.03), torch.float16: (0.02, 0.004)}


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_cdfnet_in_half_precision(dtype, record_property):
    import copy

    g = torch.Generator().manual_seed(21)
    net = CDFNet(num_rows=4)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    half = copy.deepcopy(net).to(dtype)
    s = torch.randn(6, 4, 512, generator=g)
    k = torch.randn(512, generator=g)
    with torch.no_grad():
        f32, r32 = net(s, k)
        f, r = half(s.to(dtype), k)
        _, back = half.inverse(f, r, k)
    assert f.dtype == r.dtype == back.dtype == dtype
    scale = s.abs().max()
    round_trip = float((back.float() - s).abs().max() / scale)
    key = float((f.float() - f32).abs().max() / f32.abs().max())
    record_property(f"cdfnet_round_trip_rel_{dtype}", round_trip)
    record_property(f"cdfnet_key_feature_rel_{dtype}", key)
    trip_tol, key_tol = HALF_CDFNET_TOL[dtype]
    assert 0 < round_trip < trip_tol and 0 < key < key_tol, (round_trip, key)
