"""DRCN (Kim et al. 2016): the paper-sized net's parameters against a hand count, one shared
recursive convolution, the identity start of the recursion, output shapes (2D and 3D, small
and same grid), the two loss terms and the alpha schedule, seeded training that lowers the
loss and beats the bicubic start on a held-out toy volume, an end-to-end `test`-profile run
and a save/load round trip with identical predictions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sr_lib import degrade as D
from sr_lib.methods import METHODS, FitContext, ModelError, Observation, TrainData, build
from sr_lib.methods.base import upsample_input
from sr_lib.methods.drcn import DRCNMethod, DRCNOptions
from sr_lib.nets.drcn import DRCN, parameter_count
from sr_lib.runs import RunConfig, load_trained_method, run_experiment

SHAPE = (26, 30, 5)  # odd sizes, slices along z
STEPS = 40  # training steps of the toy fit


def n_params(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def smooth_volume(seed: int, shape=SHAPE) -> np.ndarray:
    """Blurred noise in [0, 1] with a dark background below its 30th percentile (edges to learn)."""
    v = D.gaussian_blur(np.random.default_rng(seed).random(shape, dtype=np.float32), (1.5, 1.5), axes=(0, 1))
    v = (v - v.min()) / (v.max() - v.min())
    return np.where(v > np.quantile(v, 0.3), v, 0.0).astype(np.float32)


def triples(seeds, factors=(2, 2, 1)):
    out = []
    for seed in seeds:
        hr = smooth_volume(seed)
        lr = D.gaussian_blur(hr, (1.0, 1.0), axes=(0, 1)) if factors == (1, 1, 1) else D.downsample(hr, factors)
        out.append((np.asarray(lr, np.float32), hr, None))
    return out


def mse(a, b) -> float:
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


def toy_batch(seed: int = 0, factors=(2, 2)) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    hr = torch.nn.functional.avg_pool2d(torch.rand(2, 1, 28, 28, generator=g), 5, stride=1, padding=2)[..., 2:-2, 2:-2]
    lr = torch.nn.functional.avg_pool2d(hr, factors) if factors != (1, 1) else hr
    return {"lr": lr, "hr": hr}


# ----------------------------------------------------------------------------- the net


def test_paper_sized_net_has_the_hand_counted_parameters():
    # 3x3 kernels, 256 maps, one channel, D = 16:
    #   embedding 1->256 (2,304 + 256) and 256->256 (589,824 + 256); recursive 256->256
    #   (589,824 + 256); reconstruction 256->256 (589,824 + 256) and 256->1 (2,304 + 1); 16 w_d.
    hand = (2_304 + 256) + 3 * (589_824 + 256) + (2_304 + 1) + 16
    net = DRCN(features=256, recursions=16)
    assert n_params(net) == hand == 1_775_121 == parameter_count(features=256, recursions=16)
    # the 1,774K later papers list for DRCN: the convolution weights without biases
    weights = sum(m.weight.numel() for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert weights == 1_774_080
    # the method builds exactly that net on the paper-sized profile
    full = build("drcn", factors=(2, 2, 1), profile="full")
    assert (full.options.features, full.options.recursions, full.options.weight_decay, full.options.alpha) == (256, 16, 1e-4, 1.0)
    assert n_params(full.nets["generator"]) == 1_775_121


def test_recursion_shares_one_convolution():
    nets = {d: DRCN(features=8, recursions=d) for d in (1, 3, 9)}
    assert n_params(nets[9]) - n_params(nets[3]) == 6 and n_params(nets[3]) - n_params(nets[1]) == 2  # ensemble weights only
    assert all(sum(isinstance(m, torch.nn.Conv2d) for m in net.modules()) == 5 for net in nets.values())
    assert parameter_count(features=8, recursions=9, spatial_dims=3) == n_params(DRCN(features=8, recursions=9, spatial_dims=3))
    # each recursion goes through that one convolution: a forward hook sees it D times
    calls = []
    net = nets[9]
    net.recursive.register_forward_hook(lambda *_: calls.append(1))
    final, each = net(torch.rand(2, 1, 11, 13))
    assert len(calls) == 9 and each.shape == (9, 2, 1, 11, 13) and final.shape == (2, 1, 11, 13)


def test_identity_start_and_weighted_average_of_the_intermediate_predictions():
    torch.manual_seed(0)
    net = DRCN(features=8, recursions=4)
    x = torch.rand(2, 1, 12, 12)
    final, each = net(x)
    # recursive conv = identity on the non-negative embedding: every recursion predicts the same at the start
    for d in range(1, 4):
        torch.testing.assert_close(each[d], each[0])
    torch.testing.assert_close(final, each.mean(0))
    with torch.no_grad():
        net.recursive.weight.normal_(0, 0.1)
        net.ensemble.copy_(torch.tensor([0.5, -1.0, 2.0, 0.25]))
    final, each = net(x)
    assert not torch.allclose(each[1], each[0])
    torch.testing.assert_close(final, 0.5 * each[0] - each[1] + 2.0 * each[2] + 0.25 * each[3])
    # the skip connection: with a zero last layer every prediction is the input
    with torch.no_grad():
        net.reconstruction[-1].weight.zero_()
        net.reconstruction[-1].bias.zero_()
    torch.testing.assert_close(net(x)[1], x.expand(4, *x.shape))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="recursions >= 1"):
        DRCN(recursions=0)
    with pytest.raises(ValueError, match="in_channels"):
        DRCN(in_channels=1, out_channels=3)
    with pytest.raises(ValueError, match="spatial_dims"):
        DRCN(features=4, recursions=2, spatial_dims=1)
    for bad, match in [({"recursions": 0}, "positive"), ({"alpha": 1.5}, "alpha"), ({"alpha_zero_at": 0.0}, "fraction"),
                       ({"weight_decay": -1.0}, "weight_decay")]:
        with pytest.raises(ValueError, match=match):
            DRCNOptions(**bad)


# ----------------------------------------------------------------------------- the method


def test_registered_with_shrunk_sizes_below_the_paper_sized_profile():
    assert METHODS["drcn"] is DRCNMethod
    test = build("drcn", factors=(2, 2, 1), profile="test")
    quick = build("drcn", factors=(2, 2, 1), profile="quick")
    assert (test.options.features, test.options.recursions) == (8, 3)
    assert (quick.options.features, quick.options.recursions) == (32, 8)
    assert build("drcn", factors=(1, 1, 1), profile="test", recursions=5).options.recursions == 5
    group = test.optimizers["generator"].param_groups[0]
    assert group["weight_decay"] == 1e-4 and group["lr"] == test.options.lr
    assert len(group["params"]) == len(list(test.nets["generator"].parameters()))


@pytest.mark.parametrize("factors, lr_shape, hr_shape", [
    ((2, 2, 1), (13, 15, 3), (26, 30, 3)),  # small grid, 2x in-plane
    ((1, 1, 1), (13, 15, 3), (13, 15, 3)),  # same grid (k-space truncation)
    ((1, 2, 2), (3, 7, 5), (3, 14, 10)),  # slices along x
    ((2, 2, 2), (5, 6, 7), (10, 12, 14)),  # every axis changes: 3D
])
def test_prediction_has_the_hr_shape(factors, lr_shape, hr_shape):
    method = build("drcn", factors=factors, profile="test")
    assert method.task.spatial_dims == (3 if factors == (2, 2, 2) else 2)
    lr = np.random.default_rng(0).random(lr_shape, dtype=np.float32)
    prediction = method.predict(Observation(lr))
    assert prediction.shape == hr_shape and prediction.dtype == np.float32
    assert prediction.min() >= 0.0 and prediction.max() <= 1.0


def test_alpha_falls_linearly_to_zero_and_weighs_the_two_losses():
    method = build("drcn", factors=(2, 2, 1), profile="test", steps=100, alpha_zero_at=0.5)
    assert [method.alpha_at(s) for s in (0, 25, 50, 75, 99)] == pytest.approx([1.0, 0.5, 0.0, 0.0, 0.0])
    assert build("drcn", factors=(2, 2, 1), profile="test", steps=100, alpha=0.4,
                 alpha_zero_at=1.0).alpha_at(50) == pytest.approx(0.2)
    torch.manual_seed(0)
    batch = toy_batch()
    with torch.no_grad():
        net = method.nets["generator"]
        net.recursive.weight.normal_(0, 0.1)  # intermediate predictions that differ
        final, each = net(upsample_input(batch["lr"], (2, 2)))
        values = method.losses(batch["lr"], batch["hr"], 25)
    recursive = sum(float(((each[d] - batch["hr"]) ** 2).mean()) for d in range(3)) / 3  # l1: the mean of the D MSEs
    output = float(((final - batch["hr"]) ** 2).mean())
    assert float(values["recursive"]) == pytest.approx(recursive, rel=1e-5)
    assert float(values["output"]) == pytest.approx(output, rel=1e-5)
    assert float(values["loss"]) == pytest.approx(0.5 * recursive + 0.5 * output, rel=1e-5)
    assert recursive != pytest.approx(output, rel=1e-3)


@pytest.mark.parametrize("factors", [(2, 2), (1, 1)])
def test_training_steps_lower_the_loss_on_a_fixed_batch(factors):
    torch.manual_seed(0)
    method = build("drcn", factors=factors + (1,), profile="test", steps=20)
    method.train_mode(True)
    batch = toy_batch(1, factors)
    first = method.training_step(batch, 0)
    assert set(first) == {"loss", "recursive", "output", "alpha"} and first["alpha"] == 1.0
    for step in range(1, 20):
        last = method.training_step(batch, step)
    assert last["alpha"] == 0.0 and last["loss"] == last["output"]
    assert last["output"] < 0.5 * first["output"]


def toy_fit(steps: int, seed: int = 0) -> DRCNMethod:
    torch.manual_seed(seed)  # initial weights: the run seeds this before building the method
    method = build("drcn", factors=(2, 2, 1), profile="test", steps=steps, patience=0)
    method.fit(TrainData(triples([1, 2, 3]), triples([4])), FitContext(seed=seed, progress=False))
    return method


@pytest.fixture(scope="module")
def fitted() -> DRCNMethod:
    return toy_fit(STEPS)


def test_fit_beats_the_bicubic_start_on_a_held_out_volume(fitted):
    (lr, hr, _), = triples([9])
    prediction = fitted.predict(Observation(lr))
    slices = torch.from_numpy(lr).permute(2, 0, 1)[:, None]  # the bicubic start, slice-wise along z
    bicubic = upsample_input(slices, (2, 2))[:, 0].permute(1, 2, 0).clamp(0, 1).numpy()
    assert bicubic.shape == hr.shape
    assert mse(prediction, hr) < 0.95 * mse(bicubic, hr)


def test_same_seed_same_model_and_another_seed_another():
    (lr, _, _), = triples([9])
    first, again, other = (toy_fit(3, seed).predict(Observation(lr)) for seed in (0, 0, 1))
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_save_load_round_trip_gives_identical_predictions(fitted, tmp_path):
    fitted.save(tmp_path)
    loaded = build("drcn", factors=(2, 2, 1), profile="test", steps=STEPS, patience=0)
    loaded.load(tmp_path)
    (lr, _, _), = triples([9])
    np.testing.assert_array_equal(loaded.predict(Observation(lr)), fitted.predict(Observation(lr)))
    with pytest.raises(ModelError, match="cannot load weights"):  # another recursion depth: other ensemble weights
        build("drcn", factors=(2, 2, 1), profile="test", recursions=4).load(tmp_path)


def test_end_to_end_run_in_the_test_profile(tmp_path, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    config = RunConfig(method="drcn", scenario="SR-B", contrast="T2", scale=2, profile="test")
    result = run_experiment(config, tmp_path / "runs", progress=False)
    assert result.status == "done" and result.error is None
    assert list(result.log["step"]) == list(range(1, 13)) and result.log["loss"].notna().all()
    assert result.log["alpha"].iloc[0] == 1.0 and result.log["alpha"].iloc[-1] == 0.0
    assert (result.scores()["psnr"] > 10).all()
    method, _ = load_trained_method(result.folder)
    assert isinstance(method, DRCNMethod) and method.options.recursions == 3
