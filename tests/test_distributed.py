"""One run over two processes (gloo on the CPU): the weights equal a one-process run's on the
same global batch, for a plain net and for GANs with critic steps and frozen critics; the
ranks stay identical (BatchNorm buffers too); an interrupted two-process run resumes to the
same weights; the CLI under torchrun leaves the run folder a one-process run leaves; one-line
errors without torchrun and for a batch the ranks cannot share.

Two processes are started once per module (`torch.multiprocessing.spawn`, one torch thread
each) and run every case; the tests compare what they saved with one-process runs here. One
end-to-end test runs the CLI under torchrun (`python -m torch.distributed.run`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sr_lib import distributed
from sr_lib.cli import main
from sr_lib.methods import build
from sr_lib.train import Runtime, TrainSettings, train

# Two processes and one differ only in float rounding: the batch's gradient is summed over
# the rows in another order, and gloo sums the two halves. After a few Adam steps at lr 1e-3
# that stays below 1e-6 here; 1e-5 leaves room, and a run that trained on half the batch is
# off by more than 1e-3 (checked below), so the test can tell.
ATOL = 1e-5
WORLD = 2
SETTINGS = TrainSettings(steps=4, batch_size=4, val_every=2, checkpoint_every=2, seed=3)
CASES = {  # name: (options, the nets compared with one process; None: all)
    "srcnn": ({}, None),
    # a critic taking 2 steps on fresh batches per generator step and frozen in the generator's
    # loss, and a perceptual loss on the MRI feature net rank 0 trains first (LSGAN: WGAN-GP's
    # random interpolation weights are drawn per shard, equivalent to one process but not equal)
    "gan-cpce": ({"adversarial": "lsgan", "critic_steps": 2}, None),
    # two generators learning from one loss, two critics (a step each per step, frozen in that loss).
    # Only G and F are held to one process: at the test profile's 16-px patches the critics'
    # instance norms act on 2x2 and 1x1 maps (variance near 0, divided by sqrt(1e-5)), and the
    # conv biases before them have a true gradient of 0 that Adam turns into +-lr steps of
    # rounding noise, so their weights drift apart by 1e-3 between any two summation orders.
    # The critics are held equal across the ranks, bit for bit.
    "gan-circle": ({"critic_steps": 1, "gp_weight": 0.0}, ("generator", "inverse")),
}
# a BatchNorm discriminator: the ranks equal; one process not (BatchNorm's statistics are per shard)
BATCHNORM_CASE = ("srgan", {"ema_decay": 0.9, "warmup": 0.0})


class Patches:
    """(LR, HR) pairs: HR cut from smooth random images, LR its 2x average; each row its own
    image and place, so the two ranks' shards hold different patches."""

    def __init__(self, n: int = 6, size: int = 32, patch: int = 16, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        hr = F.avg_pool2d(torch.rand(n, 1, size + 6, size + 6, generator=g), 7, stride=1)
        self.hr = (hr - hr.amin()) / (hr.amax() - hr.amin())
        self.size, self.patch = size, patch

    def sample(self, batch_size: int, generator: torch.Generator) -> dict[str, torch.Tensor | None]:
        idx = torch.randint(len(self.hr), (batch_size,), generator=generator).tolist()
        corners = torch.randint(0, self.size - self.patch + 1, (batch_size, 2), generator=generator).tolist()
        hr = torch.stack([self.hr[i, :, y : y + self.patch, x : x + self.patch] for i, (y, x) in zip(idx, corners)])
        return {"lr": F.avg_pool2d(hr, 2), "hr": hr, "mask": None}


def make(name: str, **options):
    torch.manual_seed(0)
    return build(name, factors=(2, 2, 1), profile="test", **{"lr": 1e-3, **options})


def state(method) -> dict[str, torch.Tensor]:
    """Every net's parameters and buffers, and the EMA's."""
    nets = dict(method.nets, **({"ema": method.ema.net} if method.ema else {}))
    return {f"{n}.{k}": v.detach().cpu().clone() for n, net in nets.items() for k, v in net.state_dict().items()}


def fit(name: str, options: dict, settings: TrainSettings = SETTINGS, runtime: Runtime | None = None, **kw):
    sampler = Patches()
    val = sampler.sample(8, torch.Generator().manual_seed(99))
    method = make(name, **options)
    result = train(method, sampler, settings, runtime=runtime or Runtime(), val_batch=val, progress=False, **kw)
    return method, result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun_env(rank: int, port: int) -> dict[str, str]:
    return {"RANK": str(rank), "WORLD_SIZE": str(WORLD), "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port)}


def _worker(rank: int, port: int, out: str) -> None:
    """One rank: every case, an interrupted run and its resume, a batch it cannot share."""
    torch.set_num_threads(1)
    os.environ.update(torchrun_env(rank, port))
    runtime = distributed.init("cpu")
    saved = {}
    try:
        for name, options in [*((n, o) for n, (o, _) in CASES.items()), BATCHNORM_CASE]:
            method, result = fit(name, options, runtime=runtime)
            saved[name] = {"state": state(method), "log": result.log.to_dict("list")}
        method, seen = make("srcnn"), []
        training_step = method.training_step

        def recording(batch: dict, step: int) -> dict:
            seen.append(batch["hr"].sum(dim=(1, 2, 3)))
            return training_step(batch, step)

        method.training_step = recording
        train(method, Patches(), dataclasses.replace(SETTINGS, steps=2), runtime=runtime, progress=False)
        saved["rows"] = torch.stack(seen)  # (steps, rows this rank trained on): each row's sum
        run = Path(out) / "resume"
        part = fit("srcnn", {}, runtime=runtime, run_dir=run, stop_after=2)[1]
        if runtime.is_main:  # kept for a one-process resume of this two-process checkpoint
            shutil.copytree(run, Path(out) / "resume-at-2")
        distributed.barrier()
        method, result = fit("srcnn", {}, runtime=runtime, run_dir=run)  # a fresh method, as a new process builds
        saved["resume"] = {"state": state(method), "steps": (part.steps_done, result.resumed_from, result.steps_done)}
        private = Path(out) / f"private-{rank}"  # a run folder each rank sees alone: only rank 0's has a checkpoint
        if runtime.is_main:
            shutil.copytree(Path(out) / "resume-at-2", private)
        try:
            fit("srcnn", {}, runtime=runtime, run_dir=private)
        except RuntimeError as err:
            saved["unshared"] = str(err)
        try:
            fit("srcnn", {}, dataclasses.replace(SETTINGS, batch_size=3), runtime=runtime)
        except ValueError as err:
            saved["indivisible"] = str(err)
        torch.save(saved, Path(out) / f"rank{rank}.pt")
    finally:
        distributed.shutdown()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here too, as in each rank: on 2 busy cores a second intra-op thread
    made a 4-step GAN-CIRCLE run 45 s instead of 0.7 s."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[list[dict], Path]:
    """What each of two ranks saved, and the folder they worked in."""
    out = tmp_path_factory.mktemp("ranks")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SR_LIB_CACHE", str(tmp_path_factory.mktemp("cache")))  # the children inherit it
        torch.multiprocessing.spawn(_worker, args=(free_port(), str(out)), nprocs=WORLD)
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], out


def assert_states(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=atol, msg=key)


def max_difference(a: dict, b: dict) -> float:
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.parametrize("name", list(CASES))
def test_two_processes_reach_the_weights_of_one_on_the_same_global_batch(ranks, name):
    saved, _ = ranks
    options, nets = CASES[name]
    two = saved[0][name]["state"]
    assert_states(two, saved[1][name]["state"], atol=0)  # the ranks identical, bit for bit
    one, one_result = fit(name, options)
    compared = {k: v for k, v in state(one).items() if nets is None or k.split(".")[0] in nets}
    assert_states({k: two[k] for k in compared}, compared, atol=ATOL)
    if nets is None:  # the logged losses and validation scores are the whole batch's, as one process logs them
        log = saved[0][name]["log"]
        for column, values in one_result.log.to_dict("list").items():
            torch.testing.assert_close(torch.tensor(log[column], dtype=torch.float64),
                                       torch.tensor(values, dtype=torch.float64), rtol=0, atol=ATOL, equal_nan=True,
                                       msg=column)


def test_the_tolerance_tells_a_shard_from_the_whole_batch(ranks):
    """One process on half the batch (one rank's shard alone, no averaging) ends far outside
    the tolerance, so the equality above is not a tolerance too loose to fail."""
    one, _ = fit("srcnn", {})
    half, _ = fit("srcnn", {}, dataclasses.replace(SETTINGS, batch_size=SETTINGS.batch_size // WORLD))
    assert max_difference(state(half), state(one)) > 100 * ATOL
    assert max_difference(ranks[0][0]["srcnn"]["state"], state(half)) > 100 * ATOL


def test_each_rank_trains_on_its_rows_of_the_one_process_batch(ranks):
    saved, _ = ranks
    generator = torch.Generator().manual_seed(SETTINGS.seed)
    whole = torch.stack([Patches().sample(SETTINGS.batch_size, generator)["hr"].sum(dim=(1, 2, 3)) for _ in range(2)])
    share = SETTINGS.batch_size // WORLD
    for rank, rank_saved in enumerate(saved):
        torch.testing.assert_close(rank_saved["rows"], whole[:, rank * share : (rank + 1) * share], rtol=0, atol=0)


def test_batchnorm_buffers_and_the_ema_are_rank_zeros_everywhere(ranks):
    saved, _ = ranks
    name = BATCHNORM_CASE[0]
    a, b = saved[0][name]["state"], saved[1][name]["state"]
    assert any("running_mean" in key for key in a)  # the case has BatchNorm to keep in step
    assert_states(a, b, atol=0)


def test_an_interrupted_two_process_run_resumes_to_the_same_weights(ranks):
    saved, out = ranks
    assert saved[0]["resume"]["steps"] == (2, 2, SETTINGS.steps)
    assert_states(saved[0]["resume"]["state"], saved[1]["resume"]["state"], atol=0)
    assert_states(saved[0]["resume"]["state"], saved[0]["srcnn"]["state"], atol=0)  # as the uninterrupted run
    # the checkpoint holds the whole run's state: one process resumes it to the one-process weights
    method, result = fit("srcnn", {}, run_dir=out / "resume-at-2")
    assert result.resumed_from == 2
    assert_states(state(method), state(fit("srcnn", {})[0]), atol=ATOL)


def test_a_batch_the_ranks_cannot_share_is_a_one_line_error(ranks):
    saved, _ = ranks
    for rank in saved:
        message = rank["indivisible"]
        assert "batch_size 3" in message and "2 processes" in message and "\n" not in message


def test_a_run_folder_the_ranks_do_not_share_is_a_one_line_error_on_every_rank(ranks):
    saved, _ = ranks
    for rank in saved:
        message = rank["unshared"]
        assert "steps [2, 0]" in message and "storage every rank sees" in message and "\n" not in message


def test_a_runtime_that_claims_ranks_without_a_process_group_is_refused():
    with pytest.raises(ValueError, match="process group") as err:
        fit("srcnn", {}, runtime=Runtime(rank=1, world_size=2))
    assert "\n" not in str(err.value)


def test_distributed_without_torchrun_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    for name in distributed.LAUNCH_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    code = main(["train", "--distributed", "--method", "srcnn", "--profile", "test", "--out", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in err and "torchrun" in err
    assert not (tmp_path / "runs").exists()  # it failed before touching anything


def test_the_cli_under_torchrun_leaves_the_run_folder_of_one_process(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SR_LIB_CACHE", str(tmp_path / "cache"))
    args = ["train", "--method", "srcnn", "--profile", "test", "--device", "cpu", "--option", "steps=4"]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    one_out = capsys.readouterr().out
    env = {k: v for k, v in os.environ.items() if k not in distributed.LAUNCH_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={WORLD}", "--master_addr=127.0.0.1",
         f"--master_port={free_port()}", "-m", "sr_lib", *args, "--distributed", "--out", str(tmp_path / "two")],
        env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # rank 0 alone reports the result: the folder line once, then the brain scores
    assert done.stdout.count("brain: PSNR") == 1
    one_run, two_run = (next((tmp_path / part).glob("*/srcnn-*")) for part in ("one", "two"))
    assert one_run.name == two_run.name  # the run's identity does not depend on the number of processes
    layout = {p.relative_to(one_run).as_posix() for p in one_run.rglob("*")}
    assert layout == {p.relative_to(two_run).as_posix() for p in two_run.rglob("*")}
    assert "checkpoint.pt" not in layout and "predictions" in layout
    assert json.loads((two_run / "status.json").read_text())["world_size"] == WORLD
    weights = [torch.load(run / "model" / "weights.pt", weights_only=True)["weights"] for run in (one_run, two_run)]
    for net in weights[0]:
        assert_states(weights[0][net], weights[1][net], atol=ATOL)
    assert one_out.splitlines()[1] == done.stdout.splitlines()[1]  # the same scores, to the digits printed
