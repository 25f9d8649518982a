"""Device rules that a CUDA run depends on, checked on the CPU.

1. Random numbers are only created on the generator's own device and then moved (CUDA kernels
   refuse a CPU generator): the draw helpers are checked with a target device other than the
   generator's (``meta``), and every draw the library makes while fitting, drawing and
   anonymizing is intercepted and checked against the rule.
2. The encoder, CDFNet and generator forwards never copy between host and device and never
   synchronise: run on the ``meta`` device, where every tensor an op receives must be on
   ``meta`` too (a host tensor would be an implicit copy) and no op may read a value back.
"""

from __future__ import annotations

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from lreorg_hub.method.anonymizers import IdentityAnonymizer, LaplaceIdentityAnonymizer, kmeans
from lreorg_hub.method.cdfnet import CDFNet
from lreorg_hub.method.rng import categorical, normal, randint, randperm, uniform

from conftest import TINY_CDFNET


# -- 1. draws -------------------------------------------------------------------------------
def test_draw_helpers_create_on_the_generator_device_and_move():
    for draw in (lambda g, d: uniform((3, 4), g, device=d),
                 lambda g, d: normal((3, 4), g, device=d, dtype=torch.float64),
                 lambda g, d: randint(7, (5,), g, device=d),
                 lambda g, d: randperm(6, g, device=d)):
        moved = draw(torch.Generator().manual_seed(3), "meta")
        here = draw(torch.Generator().manual_seed(3), None)
        assert moved.device.type == "meta" and here.device.type == "cpu"
        assert moved.shape == here.shape and moved.dtype == here.dtype
    # the numbers are the generator's own, wherever they are placed
    g1, g2 = torch.Generator().manual_seed(9), torch.Generator().manual_seed(9)
    assert torch.equal(uniform((8,), g1), torch.rand(8, generator=g2))


def _chi_square_p(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = probs * counts.sum()
    stat = float(((counts - expected) ** 2 / expected).sum())
    dof = probs.numel() - 1
    return float(torch.special.gammaincc(torch.tensor(dof / 2.0, dtype=torch.float64),
                                         torch.tensor(stat / 2.0, dtype=torch.float64)))


def test_categorical_draws_follow_the_probabilities():
    probs = torch.tensor([0.0, 0.1, 0.0, 0.25, 0.4, 0.25, 0.0], dtype=torch.float64)
    g = torch.Generator().manual_seed(11)
    draws = categorical(probs.expand(20_000, -1), g)
    assert draws.shape == (20_000,) and draws.dtype == torch.long
    counts = torch.bincount(draws, minlength=probs.numel()).double()
    assert counts[probs == 0].sum() == 0           # a zero-probability entry is never drawn
    live = probs > 0
    assert _chi_square_p(counts[live], probs[live]) > 1e-3
    # unnormalised weights give the same distribution as their normalisation
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(categorical(probs * 7.0, g1), categorical(probs, g2))
    # the last positive entry is the fallback even when u·Σp rounds up to Σp
    assert int(categorical(torch.tensor([0.3, 0.7, 0.0]), torch.Generator())) in (0, 1)


class GeneratorRule(TorchFunctionMode):
    """Records every call that is given a generator; a call breaks the rule unless it is a
    creation op whose output is on the generator's device."""

    CREATION = {"rand", "randn", "randint", "randperm"}

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []
        self.broken: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        g = kwargs.get("generator")
        if isinstance(g, torch.Generator):
            name = getattr(func, "__name__", str(func))
            self.calls.append(name)
            if name not in self.CREATION or not isinstance(out, torch.Tensor) \
                    or out.device != g.device:
                self.broken.append(f"{name} with a {g.device} generator")
        return out


def test_every_library_draw_follows_the_generator_rule(tiny_bundle, tiny_backbone,
                                                       tiny_style_mix, photo_bundle):
    import copy

    from lreorg_hub.bundle import StyleMixAnonymizer
    from lreorg_hub.training.fitting import fit_identity_anonymizer, sample_mapping_codes

    g = torch.Generator().manual_seed(0)
    x = torch.randn(96, TINY_CDFNET["latent_dim"], generator=g)
    rule = GeneratorRule()
    with rule:
        kmeans(x, 5, generator=torch.Generator().manual_seed(1))
        gia = IdentityAnonymizer(num_groups=4, num_members=32, feature_shape=(16,))
        gia.fit(x, generator=torch.Generator().manual_seed(2))
        gia.draw(x[:8], 1.0, (1, 4), "window", torch.Generator().manual_seed(3))
        gia.draw(x[:8], 1.0, (1, 4), "strict")
        LaplaceIdentityAnonymizer(1.0)(x[:4], 1.0)
        for draw in ({"mechanism": "window"}, {"mechanism": "strict"},
                     {"identity": "laplace"}, {"identity": "k-anonymity"}):
            tiny_bundle.reorganize(torch.randn(2, 4, 16, generator=g), **draw, samples=2,
                                   seed=4)
        CDFNet(**TINY_CDFNET).reset_parameters(output_std=1e-3)
        generator = tiny_backbone.generator
        codes = sample_mapping_codes(generator, 64)
        fit_identity_anonymizer(copy.deepcopy(photo_bundle), codes,
                                generator=torch.Generator().manual_seed(6))
        generator(codes[:2], noise_mode="random")
        sm = StyleMixAnonymizer(4, 32, generator.style_dim, generator.n_latent)
        sm.fit(generator, num_samples=64)
        w = generator.to_w_plus(codes[:3])
        tiny_style_mix(w, generator=torch.Generator().manual_seed(5))
    assert len(rule.calls) > 20, rule.calls     # the interception itself works
    assert not rule.broken, rule.broken


def test_fitting_and_drawing_are_device_independent_for_a_seed(tiny_bundle):
    """The same seed gives the same draw whatever device the features are on: the one CPU
    generator drives every draw (checked here for the CPU; CUDA uses the same code path)."""
    f = torch.randn(6, 4, 16, generator=torch.Generator().manual_seed(8))
    a = tiny_bundle.identity_anonymizer.draw(f, 1.0, (2, 5), "window",
                                             torch.Generator().manual_seed(1))
    b = tiny_bundle.identity_anonymizer.draw(f.double(), 1.0, (2, 5), "window",
                                             torch.Generator().manual_seed(1))
    assert torch.equal(a.member, b.member) and torch.equal(a.group, b.group)


# -- 2. no host round trips inside the network forwards -----------------------------------------
class StaysOnDevice(TorchDispatchMode):
    """Flags ops that receive a tensor off ``meta`` or read a value back to the host."""

    READ_BACK = {"_local_scalar_dense", "item", "is_nonzero", "equal", "nonzero", "unique",
                 "_unique2", "masked_select"}

    def __init__(self):
        super().__init__()
        self.ops = 0
        self.problems: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        self.ops += 1
        name = func.overloadpacket.__name__
        if name in self.READ_BACK:
            self.problems.append(f"{name} reads a value back (a synchronisation)")
        for a in torch.utils._pytree.tree_leaves((args, kwargs)):
            if isinstance(a, torch.Tensor) and a.device.type != "meta":
                self.problems.append(f"{name} got a tensor on {a.device} (a host copy)")
        return func(*args, **kwargs)


@pytest.mark.parametrize("modconv", ["grouped", "shared"])
def test_generator_forward_stays_on_the_device(tiny_backbone, modconv):
    import copy

    gen = copy.deepcopy(tiny_backbone.generator).to("meta")
    w = torch.empty(3, gen.n_latent, gen.style_dim, device="meta")
    mode = StaysOnDevice()
    with torch.no_grad(), mode:
        out = gen(w, modconv=modconv)
        gen(w, modconv=modconv, output_size=gen.size // 2)
    assert out.shape == (3, 3, gen.size, gen.size)
    assert mode.ops > 50 and not mode.problems, mode.problems[:5]


def test_encoder_forward_stays_on_the_device(tiny_backbone):
    import copy

    enc = copy.deepcopy(tiny_backbone.encoder).to("meta")
    avg = tiny_backbone.latent_avg.to("meta")
    crops = torch.empty(2, 3, 96, 96, dtype=torch.uint8, device="meta")
    mode = StaysOnDevice()
    with torch.no_grad(), mode:
        codes = enc(enc.prepare(crops), latent_avg=avg)
    assert codes.shape == (2, enc.n_styles, enc.style_dim)
    assert mode.ops > 50 and not mode.problems, mode.problems[:5]


def test_cdfnet_forward_and_inverse_stay_on_the_device():
    net = CDFNet(**TINY_CDFNET).to("meta")
    s = torch.empty(5, TINY_CDFNET["num_rows"], TINY_CDFNET["latent_dim"], device="meta")
    k = torch.empty(TINY_CDFNET["cond_dim"], device="meta")
    mode = StaysOnDevice()
    with torch.no_grad(), mode:
        f, r = net(s, k)
        net.inverse(f, r, k)
    assert mode.ops > 20 and not mode.problems, mode.problems[:5]


def test_the_read_back_check_can_fail():
    """The mode above does flag a host copy and a read-back."""
    mode = StaysOnDevice()
    with mode:
        x = torch.empty(3, device="meta")
        _ = x + torch.tensor(2.0)        # a host scalar tensor: an implicit copy on CUDA
    assert any("a host copy" in p for p in mode.problems)
    mode = StaysOnDevice()
    with mode:
        torch.ones(2).sum().item()
    assert any("reads a value back" in p for p in mode.problems)
