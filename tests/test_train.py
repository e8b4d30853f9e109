"""The training engine: loss goes down, resume equals an uninterrupted run, schedules scale
each net's own rate, `frozen` restores after an exception, a critic takes k fresh batches,
EMA, early stopping, checkpoint safety."""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest
import torch
import torch.nn.functional as F

from sr_lib.methods import build
from sr_lib.train import (
    EMA, CheckpointError, TrainingInterrupted, TrainSettings, frozen, load_checkpoint, save_checkpoint,
    optimise, schedule_factor, set_learning_rates, train,
)


class ToySampler:
    """Aligned (LR, HR) patches: HR is smooth random texture, LR its 2x area average."""

    def __init__(self, n: int = 6, size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        hr = F.avg_pool2d(torch.rand(n, 1, size + 6, size + 6, generator=g), 7, stride=1)
        self.hr = (hr - hr.amin()) / (hr.amax() - hr.amin())
        self.lr = F.avg_pool2d(self.hr, 2)

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
        idx = torch.randint(len(self.hr), (batch_size,), generator=generator)
        y, x = torch.randint(0, 8, (2,), generator=generator).tolist()
        return {"lr": self.lr[idx, :, y : y + 8, x : x + 8], "hr": self.hr[idx, :, 2 * y : 2 * y + 16, 2 * x : 2 * x + 16], "mask": None}


SETTINGS = TrainSettings(steps=10, batch_size=4, val_every=5, checkpoint_every=5, seed=3)


def make(method: str, **options):
    torch.manual_seed(0)
    return build(method, factors=(2, 2, 1), profile="test", **{"lr": 1e-3, **options})


def params(method) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, net in method.nets.items() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name", ["srcnn", "srresnet"])
def test_training_lowers_the_loss(name):
    sampler = ToySampler()
    method = make(name, residual=False)  # from scratch, so the drop is large and unmistakable
    settings = dataclasses.replace(SETTINGS, steps=60, val_every=30)
    val = sampler.sample(8, torch.Generator().manual_seed(99))
    log = train(method, sampler, settings, val_batch=val, progress=False).log
    loss = log.filter(regex="^(loss|pixel)$").iloc[:, 0]
    assert loss.head(5).mean() > 1.5 * loss.tail(5).mean()
    assert log["val_psnr"].dropna().iloc[-1] > log["val_psnr"].dropna().iloc[0]


@pytest.mark.parametrize("name", ["srcnn", "srgan"])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, name, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    settings = dataclasses.replace(SETTINGS, steps=8, checkpoint_every=3)
    whole = make(name, ema_decay=0.9)
    full_log = train(whole, ToySampler(), settings, run_dir=tmp_path / "a", progress=False).log

    part = train(make(name, ema_decay=0.9), ToySampler(), settings, run_dir=tmp_path / "b", progress=False, stop_after=4)
    assert part.steps_done == 4
    resumed = make(name, ema_decay=0.9)  # a fresh process would rebuild the method from scratch
    result = train(resumed, ToySampler(), settings, run_dir=tmp_path / "b", progress=False)
    assert result.resumed_from == 4 and result.steps_done == 8
    for key, value in params(whole).items():
        torch.testing.assert_close(params(resumed)[key], value, rtol=0, atol=0, msg=key)
    for a, b in zip(whole.ema.net.state_dict().values(), resumed.ema.net.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(torch.tensor(result.log.filter(regex="loss|pixel").fillna(0).to_numpy()),
                               torch.tensor(full_log.filter(regex="loss|pixel").fillna(0).to_numpy()))


def test_srgan_alternates_after_warmup():
    method = make("srgan", warmup=0.5, steps=6)
    log = train(method, ToySampler(), dataclasses.replace(SETTINGS, steps=6), progress=False).log
    assert log.loc[:2, "d_loss"].isna().all() and log.loc[3:, "d_loss"].notna().all()
    assert method.feature_net.startswith("MRI feature net")
    assert all(p.requires_grad for p in method.nets["discriminator"].parameters())  # unfrozen again


def test_frozen_restores_requires_grad_even_after_an_exception():
    net = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 1))
    net[1].bias.requires_grad_(False)  # a parameter that was frozen before stays frozen after
    with pytest.raises(RuntimeError, match="boom"):
        with frozen(net):
            assert not any(p.requires_grad for p in net.parameters())
            raise RuntimeError("boom")
    assert [p.requires_grad for p in net.parameters()] == [True, True, True, False]


class CountingCritic:
    """A minimal NetMethod stand-in recording which batches the critic and generator saw."""

    name = "counting"
    critic_steps = 3
    schedules: dict = {}

    def __init__(self):
        self.net = torch.nn.Linear(1, 1)
        self.optimizers = {"generator": torch.optim.SGD(self.net.parameters(), lr=0.1)}
        self.seen: list[tuple[str, int, float]] = []

    def to(self, runtime):
        return self

    def prepare(self, sampler, *, seed):
        pass

    def train_mode(self, training):
        pass

    def update_ema(self):
        pass

    def critic_step(self, batch, step):
        self.seen.append(("critic", step, float(batch["hr"].sum())))
        return {"critic": 0.0}

    def training_step(self, batch, step):
        self.seen.append(("generator", step, float(batch["hr"].sum())))
        return {"generator": 0.0}


def test_a_critic_takes_k_steps_on_fresh_batches_per_generator_step():
    method = CountingCritic()
    train(method, ToySampler(), dataclasses.replace(SETTINGS, steps=2), progress=False)
    kinds = [k for k, _, _ in method.seen]
    assert kinds == ["critic"] * 3 + ["generator"] + ["critic"] * 3 + ["generator"]
    sums = [s for _, _, s in method.seen]
    assert len(set(sums)) == len(sums)  # every call drew its own batch


def test_each_net_has_its_own_learning_rate_and_schedule():
    method = make("srgan", lr=1e-3)
    method.optimizers["discriminator"].param_groups[0]["lr"] = 4e-4  # as a method's learning_rates() would set it
    method.schedules["discriminator"] = "constant"
    settings = dataclasses.replace(SETTINGS, steps=100, schedule="cosine")
    assert set_learning_rates(method, settings, 0) == pytest.approx({"generator": 1e-3, "discriminator": 4e-4})
    rates = set_learning_rates(method, settings, 99)
    assert rates["generator"] == pytest.approx(1e-7) and rates["discriminator"] == pytest.approx(4e-4)


@pytest.mark.parametrize(
    "schedule,checks",
    [
        ("constant", {0: 1.0, 99: 1.0}),
        ("linear", {0: 1.0, 49: 1.0, 99: 2e-6 / 1e-4}),
        ("cosine", {0: 1.0, 99: 1e-4}),
        ("step", {0: 1.0, 30: 0.5, 99: 0.125}),
    ],
)
def test_schedules(schedule, checks):
    for step, expected in checks.items():
        assert schedule_factor(schedule, step, 100, base_lr=1e-4) == pytest.approx(expected, rel=1e-6)


def test_ema_moves_towards_the_weights():
    net = torch.nn.Linear(1, 1, bias=False)
    ema = EMA(net, 0.5)
    with torch.no_grad():
        start = float(net.weight)
        net.weight.fill_(start + 2.0)
    ema.update(net)
    assert float(ema.net.weight) == pytest.approx(start + 1.0)
    with pytest.raises(ValueError, match="decay"):
        EMA(net, 1.5)


def test_early_stopping_stops_and_keeps_the_best_weights(tmp_path):
    sampler = ToySampler()
    val = sampler.sample(8, torch.Generator().manual_seed(99))
    method = make("srcnn", lr=0.5)  # a rate that diverges: validation stops improving at once
    settings = dataclasses.replace(SETTINGS, steps=200, val_every=2, patience=2)
    result = train(method, sampler, settings, val_batch=val, progress=False, run_dir=tmp_path)
    assert result.stopped_early and result.steps_done < 200
    assert result.best_step is not None and result.best_step < result.steps_done
    best = result.log.dropna(subset=["val_psnr"])["val_psnr"].max()
    from sr_lib.train import validate
    assert validate(method, val)["val_psnr"] == pytest.approx(best, abs=1e-4)  # the best weights came back


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainSettings(steps=1, batch_size=1, schedule="warm")
    with pytest.raises(ValueError, match="positive"):
        TrainSettings(steps=0, batch_size=1)
    with pytest.raises(ValueError, match="patience"):
        TrainSettings(steps=1, batch_size=1, patience=-1)


def test_checkpoint_is_weights_only_and_checked(tmp_path):
    method = make("srcnn")
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"method": "srcnn", "step": 3, "method_state": method.training_state()})
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and state["method"] == "srcnn"
    with pytest.raises(CheckpointError, match="for method 'srcnn', not 'srgan'"):
        load_checkpoint(path, method_name="srgan")
    state["format"] = 99
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="format 99"):
        load_checkpoint(path)
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")


class SignallingSampler(ToySampler):
    """Sends this process SIGTERM while drawing batch number `at` (1-based), as `kill` would."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def sample(self, batch_size, generator):
        self.calls += 1
        if self.calls == self.at:
            os.kill(os.getpid(), signal.SIGTERM)
        return super().sample(batch_size, generator)


def test_sigterm_saves_a_checkpoint_and_the_rerun_ends_equal(tmp_path):
    settings = dataclasses.replace(SETTINGS, steps=8, checkpoint_every=100)
    whole = make("srcnn")
    train(whole, ToySampler(), settings, run_dir=tmp_path / "a", progress=False)

    with pytest.raises(TrainingInterrupted, match="interrupted at step 3"):
        train(make("srcnn"), SignallingSampler(at=3), settings, run_dir=tmp_path / "b", progress=False)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["step"] == 3
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the loop put the old handler back

    resumed = make("srcnn")
    assert train(resumed, ToySampler(), settings, run_dir=tmp_path / "b", progress=False).resumed_from == 3
    for key, value in params(whole).items():
        torch.testing.assert_close(params(resumed)[key], value, rtol=0, atol=0, msg=key)


def test_one_loss_steps_several_optimisers_and_clips_their_gradients_together():
    a, b = torch.nn.Parameter(torch.tensor([3.0])), torch.nn.Parameter(torch.tensor([4.0]))
    opt_a, opt_b = torch.optim.SGD([a], lr=1.0), torch.optim.SGD([b], lr=1.0)
    value = optimise((a * a + b * b) / 2, [opt_a, opt_b], clip_grad_norm=1.0)
    assert value == pytest.approx(12.5)
    # the gradient (3, 4) has norm 5: clipped jointly to norm 1 it is (0.6, 0.8)
    assert a.item() == pytest.approx(2.4) and b.item() == pytest.approx(3.2)
