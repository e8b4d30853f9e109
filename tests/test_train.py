"""The training loop: loss goes down, resume equals an uninterrupted run, schedules,
checkpoint safety (weights_only, format, method)."""

from __future__ import annotations

import dataclasses
import os
import signal

import pytest
import torch
import torch.nn.functional as F

from sr_lib.methods import build
from sr_lib.train import (
    CheckpointError, TrainingInterrupted, TrainSettings, load_checkpoint, lr_at, save_checkpoint, train,
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


SETTINGS = TrainSettings(steps=10, batch_size=4, lr=1e-3, val_every=5, checkpoint_every=5, seed=3)


def make(method: str, **options):
    torch.manual_seed(0)
    return build(method, factors=(2, 2, 1), profile="test", **options)


def params(method) -> dict[str, torch.Tensor]:
    return {f"{n}.{k}": v.clone() for n, net in method.nets.items() for k, v in net.state_dict().items()}


@pytest.mark.parametrize("name", ["srcnn", "srresnet"])
def test_training_lowers_the_loss(name):
    sampler = ToySampler()
    method = make(name, residual=False)  # from scratch, so the drop is large and unmistakable
    settings = dataclasses.replace(SETTINGS, steps=60, val_every=30)
    val = sampler.sample(8, torch.Generator().manual_seed(99))
    log = train(method, sampler, settings, val_batch=val, progress=False).log
    assert log["loss"].head(5).mean() > 1.5 * log["loss"].tail(5).mean()
    assert log["val_psnr"].dropna().iloc[-1] > log["val_psnr"].dropna().iloc[0]


@pytest.mark.parametrize("name", ["srcnn", "srgan"])
def test_resume_after_interruption_equals_uninterrupted(tmp_path, name, monkeypatch):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    settings = dataclasses.replace(SETTINGS, steps=8, checkpoint_every=3)
    whole = make(name)
    full_log = train(whole, ToySampler(), settings, run_dir=tmp_path / "a", progress=False).log

    first = make(name)
    part = train(first, ToySampler(), settings, run_dir=tmp_path / "b", progress=False, stop_after=4)
    assert part.steps_done == 4
    resumed = make(name)  # a fresh process would rebuild the method from scratch
    result = train(resumed, ToySampler(), settings, run_dir=tmp_path / "b", progress=False)
    assert result.resumed_from == 4 and result.steps_done == 8
    for key, value in params(whole).items():
        torch.testing.assert_close(params(resumed)[key], value, rtol=0, atol=0, msg=key)
    torch.testing.assert_close(torch.tensor(result.log.filter(like="loss").fillna(0).to_numpy()),
                               torch.tensor(full_log.filter(like="loss").fillna(0).to_numpy()))


def test_srgan_alternates_after_warmup():
    method = build("srgan", factors=(2, 2, 1), profile="test", warmup=0.5)
    log = train(method, ToySampler(), dataclasses.replace(SETTINGS, steps=6), progress=False).log
    assert log.loc[:2, "d_loss"].isna().all() and log.loc[3:, "d_loss"].notna().all()
    assert method.feature_net.startswith("MRI feature net")


@pytest.mark.parametrize(
    "schedule,checks",
    [
        ("constant", {0: 1e-4, 99: 1e-4}),
        ("linear", {0: 1e-4, 49: 1e-4, 99: 2e-6}),
        ("cosine", {0: 1e-4, 99: 1e-8}),
        ("step", {0: 1e-4, 30: 5e-5, 99: 1.25e-5}),
    ],
)
def test_schedules(schedule, checks):
    settings = TrainSettings(steps=100, batch_size=1, lr=1e-4, schedule=schedule)
    for step, expected in checks.items():
        assert lr_at(settings, step) == pytest.approx(expected, rel=1e-6)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="unknown schedule"):
        TrainSettings(steps=1, batch_size=1, lr=1e-4, schedule="warm")
    with pytest.raises(ValueError, match="positive"):
        TrainSettings(steps=0, batch_size=1, lr=1e-4)


def test_checkpoint_is_weights_only_and_checked(tmp_path):
    method = make("srcnn")
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, method, 3, torch.Generator(), {"config": {"method": "srcnn", "seed": 0}})
    state = torch.load(path, weights_only=True)
    assert state["step"] == 3 and state["method"] == "srcnn"
    with pytest.raises(CheckpointError, match="for method 'srcnn', not 'srgan'"):
        load_checkpoint(path, method_name="srgan")
    state["format"] = 99
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="newer"):
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
