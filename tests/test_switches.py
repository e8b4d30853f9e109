"""The GPU path's speed switches: parsing, where each acts, what it does to nets and
optimisers, that none changes what training computes on the CPU, and the bench's ablation."""

from __future__ import annotations

import pytest
import torch

from sr_lib.bench import benchmark_switches, write_bench
from sr_lib.cli import main
from sr_lib.experiment import RunConfig
from sr_lib.train import SWITCHES_ENV, Runtime, Switches

CPU = torch.device("cpu")


def build(method: str = "srcnn", scenario: str = "SR-B", dims: int | None = None):
    torch.manual_seed(0)
    return RunConfig(method=method, scenario=scenario, scale=2, profile="test", dims=dims).resolve().build_method()


def test_settings_parse_from_a_list_or_the_environment_form():
    switches = Switches.parse(["amp=off", "compile=on"])
    assert (switches.amp, switches.compile, switches.channels_last) == (False, True, True)
    assert Switches.parse("amp=off, compile=on") == switches
    assert Switches.parse(switches.changed()) == switches  # the form $SR_LIB_SWITCHES holds round-trips
    assert Switches().changed() == ""
    assert Switches.parse(["fused-adam=0"]).fused_adam is False  # dashes and 0/1 read too


@pytest.mark.parametrize("text, problem", [("warp=on", "unknown name"), ("amp=maybe", "expected amp=on"),
                                           ("amp", "expected amp=on")])
def test_a_bad_setting_is_one_line_naming_it(text, problem):
    with pytest.raises(ValueError, match=problem) as err:
        Switches.parse([text])
    assert text in str(err.value) and "\n" not in str(err.value)


def test_runtime_follows_the_environment_and_gates_cuda_only_switches(monkeypatch):
    monkeypatch.setenv(SWITCHES_ENV, "channels_last=off,amp=on")
    runtime = Runtime.auto("cpu")
    assert runtime.switches.channels_last is False
    effective = runtime.effective()
    # bf16 autocast, preload and cuDNN act on CUDA only
    assert not runtime.amp and not effective["amp"] and effective["channels_last_3d"]
    assert not effective["preload"] and not effective["cudnn_benchmark"]
    assert effective["channels_last"] is False


def test_channels_last_follows_its_switches_for_2d_and_3d_nets():
    for on in (True, False):
        method = build().to(Runtime(CPU, switches=Switches(channels_last=on)))
        weight = next(p for p in method.nets["generator"].parameters() if p.ndim == 4 and p.shape[1] > 1)
        assert weight.is_contiguous(memory_format=torch.channels_last) == on
        method = build("srcnn", "kspace-2x2x2", dims=3).to(Runtime(CPU, switches=Switches(channels_last_3d=on)))
        weight = next(p for p in method.nets["generator"].parameters() if p.ndim == 5 and p.shape[1] > 1)
        assert weight.is_contiguous(memory_format=torch.channels_last_3d) == on


def test_fused_adam_follows_its_switch_and_matches_the_unfused_update():
    lr = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1))
    batch = {"lr": lr, "hr": lr.repeat_interleave(2, 2).repeat_interleave(2, 3), "mask": None}  # SR-B: 2x
    weights = {}
    for fused in (True, False):
        method = build().to(Runtime(CPU, switches=Switches(fused_adam=fused)))
        groups = [g for o in method.optimizers.values() for g in o.param_groups]
        assert all(g["fused"] is (True if fused else None) for g in groups)
        method.train_mode(True)
        for step in range(3):
            method.training_step(batch, step)
        weights[fused] = method.weights()["generator"]
    for name, value in weights[True].items():
        torch.testing.assert_close(value, weights[False][name], rtol=1e-5, atol=1e-6)
    # on a CPU, 3D nets keep the unfused update (slower fused there, see NetMethod.to)
    method = build("srcnn", "kspace-2x2x2", dims=3).to(Runtime(CPU, switches=Switches(fused_adam=True)))
    assert all(g["fused"] is None for o in method.optimizers.values() for g in o.param_groups)


def test_compile_compiles_every_net_in_place_and_keeps_checkpoint_keys():
    plain = build("srgan")
    keys = {name: list(net.state_dict()) for name, net in plain.nets.items()}
    method = build("srgan").to(Runtime(CPU, switches=Switches(compile=True)))
    for name, net in method.nets.items():
        assert net._compiled_call_impl is not None, name  # what nn.Module.compile sets
        assert list(net.state_dict()) == keys[name]  # a compiled run's checkpoint loads into a plain one
    method.to(Runtime(CPU, switches=Switches(compile=True)))  # moving again does not compile twice
    assert build().to(Runtime(CPU)).nets["generator"]._compiled_call_impl is None


def test_the_cli_takes_switches_and_refuses_a_bad_one(capsys, monkeypatch):
    with pytest.raises(SystemExit) as err:
        main(["methods", "srcnn", "--switch", "amp=on"])  # `methods` has no --switch
    assert err.value.code == 2
    with pytest.raises(SystemExit) as err:
        main(["bench", "--switch", "warp=on"])
    assert err.value.code == 2 and "unknown name" in capsys.readouterr().err


def test_the_switch_bench_times_each_switch_that_acts_here(tmp_path):
    table = benchmark_switches(["srcnn", "bicubic"], profile="test", device="cpu", steps=1, rounds=1,
                               switches=["amp", "channels_last", "preload", "fused_adam"])
    # on a CPU, bf16 autocast and preloading do nothing, so they get no row
    assert list(table["switch"]) == ["channels_last", "fused_adam"]
    assert (table.dropna(subset=["switch"])["default_ms_per_step"] > 0).all()
    assert "bicubic" not in set(table["method"])  # nothing to train, nothing to switch
    paths = write_bench(table, tmp_path, profile="test", device="cpu", kind="switches")
    assert [p.name for p in paths] == ["switches-test-cpu.csv", "switches-test-cpu.md"]
    assert "flipped" in paths[1].read_text()
