"""GAN-CPCE and GAN-CIRCLE (Lyu et al. 2018): net shapes on even and odd grids, parameter
counts worked out by hand, GAN-CIRCLE's loss terms, which nets a critic step and a generator
step move, and seeded fit / predict / save / load on tiny volumes in the `test` profile."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sr_lib.losses import total_variation
from sr_lib.methods import FitContext, Observation, TrainData, build, method_class
from sr_lib.methods.gan_circle import circle_terms
from sr_lib.nets import CPCE, CircleDiscriminator, CircleGenerator, CPCEDiscriminator
from sr_lib.nets.circle import decaying_widths
from sr_lib.train import seed_everything


def n_params(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


# ----------------------------------------------------------------------------- nets


@pytest.mark.parametrize("padding", ["valid", "same"])
@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 1, 17, 23), (3, 1, 9, 10)])
def test_cpce_keeps_the_grid(padding, shape):
    assert CPCE(features=4, padding=padding)(torch.rand(shape)).shape == shape


def test_cpce_refuses_bad_arguments():
    with pytest.raises(ValueError, match="padding"):
        CPCE(padding="reflect")
    with pytest.raises(ValueError, match="at least 9x9"):
        CPCE(features=4)(torch.rand(1, 1, 8, 12))


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 1, 17, 23)])
def test_circle_generator_keeps_the_grid_and_grows_it_by_scale(shape):
    assert CircleGenerator(features=8, min_features=4)(torch.rand(shape)).shape == shape
    grown = CircleGenerator(features=8, min_features=4, num_blocks=3, scale=2)(torch.rand(shape))
    assert grown.shape == (*shape[:2], 2 * shape[2], 2 * shape[3])


@pytest.mark.parametrize("net", [CPCEDiscriminator(features=4, pool_size=2), CircleDiscriminator(features=2, pool_size=1)])
@pytest.mark.parametrize("shape", [(3, 1, 16, 16), (2, 1, 17, 29), (1, 1, 64, 40)])
def test_critics_give_one_score_per_item_at_any_size(net, shape):
    assert net(torch.rand(shape)).shape == (shape[0], 1)


def test_widths_decay_as_in_the_paper():
    assert decaying_widths() == [64, 54, 48, 43, 39, 35, 31, 28, 25, 22, 18, 16]  # You et al. 2019
    assert decaying_widths(3, 8, 4) == [8, 5, 4]  # 4 * (1 - 0.5 ** (2/3)) + 4 = 5.48
    with pytest.raises(ValueError):
        decaying_widths(12, 8, 16)


def test_parameter_counts_by_hand():
    # CPCE, f = 4, no biases: conv 1 (9 * 1 * f), convs 2-4 and deconvs 1-3 (6 * 9 * f * f),
    # three 1x1 conveying convs (3 * 2f * f), last deconv (9 * f * 1)
    assert n_params(CPCE(features=4)) == 9 * 4 + 6 * 9 * 16 + 3 * 8 * 4 + 9 * 4 == 1032
    # CPCE critic, f = 2: convs 1->2->2->4->4->8->8 with biases; pooled 8 x 2 x 2 = 32 -> 32 -> 1
    convs = 9 * (1 * 2 + 2 * 2 + 2 * 4 + 4 * 4 + 4 * 8 + 8 * 8) + (2 + 2 + 4 + 4 + 8 + 8)
    assert n_params(CPCEDiscriminator(features=2, pool_size=2)) == convs + (32 * 32 + 32) + (32 + 1) == 2251
    # GAN-CIRCLE generator: blocks 1->8->5->4 (3x3 + bias), concatenated 17 maps; A1 17->4 (1x1),
    # B1 17->4 (1x1), B2 4->4 (3x3); output (4 + 4)->1 (3x3), all with biases
    blocks = (9 * 1 * 8 + 8) + (9 * 8 * 5 + 5) + (9 * 5 * 4 + 4)
    reconstruction = (17 * 4 + 4) + (17 * 4 + 4) + (9 * 4 * 4 + 4) + (9 * 8 + 1)
    net = CircleGenerator(features=8, min_features=4, num_blocks=3, reconstruction=(4, 4, 4))
    assert net.widths == [8, 5, 4]
    assert n_params(net) == blocks + reconstruction == 994
    # GAN-CIRCLE critic, f = 1: convs 1->1->1->2->2->4->4->8->8 with biases, affine instance
    # norm after all but the first (2 per channel), pooled 8 x 1 x 1 -> 16 -> 1
    convs = 9 * (1 + 1 + 2 + 4 + 8 + 16 + 32 + 64) + (1 + 1 + 2 + 2 + 4 + 4 + 8 + 8)
    norms = 2 * (1 + 2 + 2 + 4 + 4 + 8 + 8)
    assert n_params(CircleDiscriminator(features=1, pool_size=1)) == convs + norms + (8 * 16 + 16) + (16 + 1) == 1401


# ----------------------------------------------------------------------------- GAN-CIRCLE's losses


def test_cycle_and_identity_vanish_for_identities_and_inverse_shifts():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(2, 1, 12, 12, generator=g), torch.rand(2, 1, 12, 12, generator=g)
    terms, gx, fy = circle_terms(x, y, lambda t: t, lambda t: t, tau=0.25)
    assert terms["cycle"] == 0 and terms["identity"] == 0
    assert torch.equal(gx, x) and torch.equal(fy, y)
    torch.testing.assert_close(terms["supervised"], 2 * (x - y).abs().mean())
    torch.testing.assert_close(terms["jst"], 0.25 * total_variation(x) + 0.75 * total_variation(y - x))
    # G adds 0.1, F subtracts it: the cycles close exactly, the identities miss by 0.1 each
    terms, _, _ = circle_terms(x, y, lambda t: t + 0.1, lambda t: t - 0.1, tau=0.5)
    torch.testing.assert_close(terms["cycle"], torch.tensor(0.0), atol=1e-6, rtol=0)
    torch.testing.assert_close(terms["identity"], torch.tensor(0.2))


# ----------------------------------------------------------------------------- steps


def snapshot(method) -> dict[str, list[torch.Tensor]]:
    return {name: [p.detach().clone() for p in net.parameters()] for name, net in method.nets.items()}


def moved(before, method) -> set[str]:
    return {name for name, net in method.nets.items()
            if any(not torch.equal(a, b) for a, b in zip(before[name], net.parameters()))}


@pytest.mark.parametrize("name,options,critics", [
    ("gan-cpce", {"perceptual": 0.0, "l1": 1.0}, {"discriminator"}),  # no feature net needed here
    ("gan-circle", {}, {"critic_hr", "critic_lr"}),
])
def test_a_critic_step_moves_only_critics_and_a_generator_step_only_generators(name, options, critics):
    torch.manual_seed(0)
    method = build(name, factors=(1, 1, 1), profile="test", **options)
    method.train_mode(True)
    g = torch.Generator().manual_seed(1)
    hr = torch.rand(4, 1, 16, 16, generator=g)
    batch = {"lr": 0.8 * hr + 0.1, "hr": hr}
    before = snapshot(method)
    losses = method.critic_step(batch, 0)
    assert moved(before, method) == critics and all(np.isfinite(v) for v in losses.values())
    before = snapshot(method)
    losses = method.training_step(batch, 0)
    assert moved(before, method) == set(method.nets) - critics and np.isfinite(losses["g_loss"])
    assert all(p.requires_grad for net in method.nets.values() for p in net.parameters())  # critics unfrozen


def test_zero_init_starts_both_methods_at_the_input():
    lr = torch.rand(2, 1, 20, 20)
    for name in ("gan-cpce", "gan-circle"):
        method = build(name, factors=(1, 1, 1), profile="test", zero_init=True)
        torch.testing.assert_close(method.predict_batch(lr), lr)


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="padding"):
        build("gan-cpce", factors=(1, 1, 1), profile="test", padding="reflect")
    for bad in ({"tau": 1.5}, {"dropout": 1.0}, {"cycle": -1.0}, {"critic_steps": 0}):
        with pytest.raises(ValueError):
            build("gan-circle", factors=(1, 1, 1), profile="test", **bad)
    reason = method_class("gan-circle").support.reason_not(grid="same", factors=(1, 1, 1), pairing="unpaired", holes=False)
    assert reason and "paired" in reason


# ----------------------------------------------------------------------------- fit and predict


def tiny_data(factors) -> TrainData:
    rng = np.random.default_rng(0)

    def triple():
        hr = rng.random((24, 24, 6), dtype=np.float32)
        lr = hr if factors == (1, 1, 1) else hr.reshape(12, 2, 12, 2, 6).mean(axis=(1, 3))
        return 0.9 * lr + 0.05, hr, None

    return TrainData(train=[triple(), triple()], val=[triple()])


@pytest.mark.parametrize("name,factors", [("gan-cpce", (1, 1, 1)), ("gan-circle", (1, 1, 1)), ("gan-circle", (2, 2, 1))])
def test_fit_and_predict_are_seeded_and_reload(name, factors, tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    data = tiny_data(factors)
    observation = Observation(data.val[0][0])
    predictions = []
    for _ in range(2):
        seed_everything(3)  # initialisation is part of the run, as `run_experiment` seeds it
        method = build(name, factors=factors, profile="test", steps=6)
        info = method.fit(data, FitContext(seed=3, progress=False))
        assert info["steps_done"] == 6
        predictions.append(method.predict(observation))
    first = predictions[0]
    assert first.shape == (24, 24, 6) and first.dtype == np.float32
    assert np.isfinite(first).all() and first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(predictions[1], first)  # same seed, same weights
    if name == "gan-cpce":
        assert method.describe()["feature_net"].startswith("MRI feature net")
    method.save(tmp_path)
    reloaded = build(name, factors=factors, profile="test", steps=6)
    reloaded.load(tmp_path)
    np.testing.assert_array_equal(reloaded.predict(observation), first)


def test_gan_circle_has_the_papers_widths_at_full_and_smaller_nets_below():
    from sr_lib.profiles import get_profile

    options = [method_class("gan-circle").Options.resolve(get_profile(p), {}) for p in ("test", "quick", "full")]
    assert [o.features for o in options] == [4, 8, 64]
    assert [o.discriminator_features for o in options] == [8, 16, 64]
