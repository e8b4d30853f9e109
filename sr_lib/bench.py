"""`sr-lib bench`: speed of every method on this machine, on the profile's sizes.

Per method: training step time and throughput (patches/s, HR voxels/s); the input
pipeline's share of a step (the step on freshly sampled patches against the step on one
batch kept in memory); FLOPs per training step (counted by `torch.utils.flop_counter`) and
the FLOP/s achieved, with its fraction of the device's bf16 peak on the GPUs we know; peak
GPU memory; whole-volume inference time; and `apply` throughput on a clinical 512 x 512 slab
(seconds per slice, through the same streaming path as `sr-lib apply`). `write_bench`
writes the table as CSV and Markdown under `reports/bench/` with the machine, torch version
and commit. `python -m sr_lib.bench apply` measures `apply`'s peak memory on a whole
synthetic volume in a fresh process. Numbers go to a table, never into tests."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm.auto import tqdm

from sr_lib.data import PairedPatchSampler
from sr_lib.data.phantom import phantom_grid
from sr_lib.experiment import RunConfig
from sr_lib.methods import METHODS, NetMethod
from sr_lib.profiles import get_profile
from sr_lib.train import Runtime, Switches, seed_everything


def _timed(fn, repeats: int, device: torch.device) -> float:
    """Median seconds of `fn()` over `repeats` calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


# Dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by a name fragment of
# `torch.cuda.get_device_name`. Unknown devices get no fraction rather than a guess.
BF16_PEAK_FLOPS = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "RTX 4090": 165e12}


def bf16_peak(device: torch.device) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None (a CPU, or a GPU not in the table)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAK_FLOPS.items() if key in name), None)


def count_flops(fn) -> int:
    """Floating-point operations of one call of `fn` (forward and backward), as
    `torch.utils.flop_counter` counts them: matrix products and convolutions, 2 per
    multiply-add; element-wise work is not counted."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@dataclasses.dataclass
class _StepBench:
    """One method built for the bench on random volumes of the profile's grid (speed does not
    depend on the data), with the runtime's switches applied as training applies them: the
    patch sampler on the device with `preload`, else in host memory with each batch copied."""

    method: NetMethod
    runtime: Runtime
    sampler: PairedPatchSampler
    batch_size: int
    kept: dict[str, torch.Tensor]
    generator: torch.Generator

    @staticmethod
    def build(experiment, runtime: Runtime, lr_volume: np.ndarray, hr_shape: tuple[int, ...]) -> "_StepBench":
        seed_everything(0)
        method = experiment.build_method()
        method.to(runtime)
        if runtime.device.type == "cuda":
            torch.backends.cudnn.benchmark = runtime.effective()["cudnn_benchmark"]
        prof = experiment.profile
        home = runtime.device if runtime.effective()["preload"] else torch.device("cpu")
        hr = torch.from_numpy(np.random.default_rng(1).random(hr_shape, dtype=np.float32)).to(home)
        sampler = PairedPatchSampler([torch.from_numpy(lr_volume).to(home)], [hr], factors=method.task.factors,
                                     spatial_dims=method.task.spatial_dims, axis=method.task.axis, threshold=0.0,
                                     patch_size=prof.patch_size if method.task.spatial_dims == 2 else prof.patch_size_3d)
        method.prepare(sampler, seed=0)
        method.train_mode(True)
        generator = torch.Generator().manual_seed(0)
        bench = _StepBench(method, runtime, sampler, int(method.options.batch_size), {}, generator)
        bench.kept = bench.draw()
        return bench

    def draw(self) -> dict[str, torch.Tensor]:
        batch = self.sampler.sample(self.batch_size, self.generator)
        return {k: (v.to(self.runtime.device) if torch.is_tensor(v) else v) for k, v in batch.items()}

    def step(self) -> None:
        """One training step (critic steps included) on freshly sampled patches."""
        for _ in range(self.method.critic_steps):
            self.method.critic_step(self.draw(), self.method.total_steps)
        self.method.training_step(self.draw(), self.method.total_steps)

    def step_on_kept_batch(self) -> None:
        """The same step on one batch kept in memory: what the step costs without the input pipeline."""
        for _ in range(self.method.critic_steps):
            self.method.critic_step(self.kept, self.method.total_steps)
        self.method.training_step(self.kept, self.method.total_steps)


def _bench_inputs(profile: str, scenario: str, scale: int) -> tuple[np.ndarray, tuple[int, ...]]:
    """A random LR volume of the scenario's grid and the HR shape (the profile's phantom grid)."""
    prof = get_profile(profile)
    factors = RunConfig(method="input", scenario=scenario, scale=scale, profile=prof.name).resolve().factors
    shape, _ = phantom_grid(prof)
    lr_shape = tuple(n // f for n, f in zip(shape, factors))
    return np.random.default_rng(0).random(lr_shape, dtype=np.float32), tuple(shape)


def _experiment_or_reason(name: str, scenario: str, scale: int, profile: str):
    """The resolved experiment, or None and the one-line reason the method cannot run here."""
    experiment = RunConfig(method=name, scenario=scenario, scale=scale, profile=profile).resolve()
    if experiment.unsupported:
        return None, f"not applicable: {experiment.unsupported}"
    return experiment, ""


def benchmark(
    methods: Sequence[str] | None = None,
    *,
    profile: str = "quick",
    scenario: str = "SR-B",
    scale: int = 2,
    device: str = "auto",
    steps: int = 5,
    apply_slices: int = 2,
    switches: Switches | None = None,
) -> pd.DataFrame:
    """One row per method, on random data of the profile's grid (speed does not depend on it):
    ms per training step on freshly sampled patches (profile batch and patch) and on one batch
    kept in memory, patches/s and HR voxels/s, the input pipeline's share of the step
    (1 − kept / sampled), GFLOP per step and TFLOP/s achieved (with the bf16 peak fraction on
    known GPUs), peak GPU memory, seconds to super-resolve one phantom-sized volume, and
    seconds per 512 x 512 slice through `apply_method` on a slab of `apply_slices` (0: skip).
    `switches` (default: `$SR_LIB_SWITCHES` over the defaults) are applied as training applies them."""
    prof = get_profile(profile)
    runtime = Runtime.auto(device, switches=switches)
    dev = runtime.device
    lr_volume, hr_shape = _bench_inputs(prof.name, scenario, scale)
    rows = []
    for name in tqdm(list(methods or METHODS), desc="bench", unit="method", disable=None):
        seed_everything(0)
        experiment, reason = _experiment_or_reason(name, scenario, scale, prof.name)
        row = {"method": name, "scenario": scenario, "device": str(dev), "volume": "x".join(map(str, lr_volume.shape)),
               "note": reason}
        if experiment is None:
            rows.append(row)
            continue
        if experiment.method_class.learned and not issubclass(experiment.method_class, NetMethod):
            # e.g. rfsr: fitted on data outside the training loop, so there is no step to time and
            # nothing to predict with until it is; its run folder records its fit time
            rows.append({**row, "note": "fitted outside the training loop: see its runs' train_seconds"})
            continue
        if not issubclass(experiment.method_class, NetMethod):
            method = experiment.build_method()
        else:
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            bench = _StepBench.build(experiment, runtime, lr_volume, hr_shape)
            method = bench.method
            seconds = _timed(bench.step, steps, dev)
            kept_seconds = _timed(bench.step_on_kept_batch, steps, dev)
            try:
                flops = count_flops(bench.step_on_kept_batch)
            except RuntimeError:  # the counter cannot follow a gradient penalty's autograd.grad
                flops = count_flops(lambda: bench.method.training_step(bench.kept, bench.method.total_steps))
                row["note"] = "FLOPs and TFLOP/s of the generator step alone (the critics' gradient penalty is not countable)"
            hr_voxels = int(bench.kept["hr"][0].numel())
            row.update({
                "dims": f"{method.task.spatial_dims}D",
                "train_ms_per_step": 1000 * seconds,
                "patches_per_s": bench.batch_size / seconds,
                "voxels_per_s": bench.batch_size * hr_voxels / seconds,
                "kept_batch_ms_per_step": 1000 * kept_seconds,
                "input_share": max(0.0, 1.0 - kept_seconds / seconds),
                "gflop_per_step": flops / 1e9,
                "tflop_per_s": flops / kept_seconds / 1e12,
            })
            peak = bf16_peak(dev)
            if peak:
                row["bf16_peak_fraction"] = flops / kept_seconds / peak
            if dev.type == "cuda":
                row["peak_gpu_mem_gb"] = torch.cuda.max_memory_allocated(dev) / 1e9
        row["infer_s_per_volume"] = _timed(lambda: method.predict_volume(lr_volume), max(steps // 2, 1), dev)
        if apply_slices and (method.task.spatial_dims == 2 or not method.learned):
            # a 3D net on a 2-slice 512 x 512 slab says little of its per-slice cost: left out
            row["apply_s_per_512_slice"] = apply_seconds_per_slice(method, apply_slices, dev)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["timed_steps"] = steps
    table.attrs["switches"] = runtime.effective()
    return table


def benchmark_switches(
    methods: Sequence[str] | None = None,
    *,
    profile: str = "quick",
    scenario: str = "SR-B",
    scale: int = 2,
    device: str = "auto",
    steps: int = 5,
    rounds: int = 3,
    switches: Sequence[str] | None = None,
) -> pd.DataFrame:
    """What each speed switch buys: per method and per switch that acts on this device, the
    training step (freshly sampled patches) with every switch at its default and with that one
    switch flipped. The two are timed in alternation, `rounds` times, and the fastest of each
    is kept, so a busy machine's slow moments do not land on one side. `speedup` > 1: the
    default is faster than the flipped setting, i.e. the default helps. `switches`: the ones
    to flip (default: all; `compile` costs tens of seconds of compilation per method)."""
    prof = get_profile(profile)
    base = Runtime.auto(device, switches=Switches())
    dev = base.device
    lr_volume, hr_shape = _bench_inputs(prof.name, scenario, scale)
    names = [n for n in (methods or METHODS) if issubclass(METHODS[n], NetMethod)]
    rows = []
    for name in tqdm(names, desc="bench switches", unit="method", disable=None):
        experiment, reason = _experiment_or_reason(name, scenario, scale, prof.name)
        if experiment is None:
            rows.append({"method": name, "scenario": scenario, "device": str(dev), "note": reason})
            continue
        for switch in switches or Switches.names():
            flipped = Switches.parse([f"{switch}={'off' if getattr(base.switches, switch) else 'on'}"])
            other = Runtime.auto(device, switches=flipped)
            if other.effective() == base.effective():
                continue  # does nothing on this device (e.g. bf16 autocast on a CPU)
            if switch == ("channels_last_3d" if experiment.task.spatial_dims == 2 else "channels_last"):
                continue  # the other dimensionality's layout
            row = {"method": name, "scenario": scenario, "device": str(dev), "dims": f"{experiment.task.spatial_dims}D",
                   "switch": switch, "default": "on" if getattr(base.switches, switch) else "off", "note": ""}
            try:
                benches = {"default": _StepBench.build(experiment, base, lr_volume, hr_shape),
                           "flipped": _StepBench.build(experiment, other, lr_volume, hr_shape)}
                times: dict[str, list[float]] = {"default": [], "flipped": []}
                for _ in range(rounds):
                    for key, bench in benches.items():
                        times[key].append(_timed(bench.step, steps, dev))
            except Exception as err:  # e.g. torch.compile refusing a net: a row that says so, not a lost bench
                rows.append({**row, "note": f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"})
                continue
            default, flipped_s = min(times["default"]), min(times["flipped"])
            rows.append({**row, "default_ms_per_step": 1000 * default, "flipped_ms_per_step": 1000 * flipped_s,
                         "speedup": flipped_s / default})
    table = pd.DataFrame(rows)
    table.attrs["timed_steps"] = f"{steps} (fastest of {rounds} alternating rounds)"
    return table


BENCH_NOTES = {
    "bench": "train: one optimiser step on the profile's batch of patches; `kept_batch`: the same step on one batch "
             "kept in memory; `input_share` = 1 − kept / sampled; FLOPs from `torch.utils.flop_counter` "
             "(matrix products and convolutions, forward and backward)",
    "switches": "one training step on freshly sampled patches with every switch at its default, and with one switch "
                "flipped; `speedup` = flipped / default time (> 1: the default helps); switches that do nothing on "
                "this device are left out",
}


def write_bench(table: pd.DataFrame, out_dir: str | Path, *, profile: str, device: str, kind: str = "bench") -> list[Path]:
    """`<kind>-<profile>-<device>.csv` and `.md` under `out_dir` (kind: `bench` or `switches`);
    the Markdown heads the table with the machine, torch version, commit, date and the
    switches in force, so a slowdown can be traced."""
    from sr_lib.atomic import atomic_path
    from sr_lib.pipeline import git_commit, machine_description

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"{kind}-{profile}-{device.replace(':', '')}"
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = (f"# sr-lib bench: profile `{profile}`, device `{device}`\n\n"
            f"- machine: {machine_description()}; load average {os.getloadavg()[0]:.1f} when written"
            + (" (above the core count: other work shared the CPU and the times are inflated)"
               if os.getloadavg()[0] > (os.cpu_count() or 1) else "") + "\n"
            f"- commit `{git_commit()}`, {made}\n"
            f"- times are medians of {table.attrs.get('timed_steps', '?')} calls after a warm-up; {BENCH_NOTES[kind]}\n"
            + (f"- switches in force: {', '.join(f'{k}={v}' for k, v in table.attrs['switches'].items())}\n"
               if "switches" in table.attrs else "") + "\n"
            + table.to_markdown(index=False, floatfmt=".3g") + "\n")
    with atomic_path(md_path) as tmp:
        Path(tmp).write_text(text)
    return [csv_path, md_path]


def synthetic_scan(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """A head-like float32 volume in scanner units (a bright ellipsoid with texture, dark outside)."""
    rng = np.random.default_rng(seed)
    out = np.empty(shape, dtype=np.float32)
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0], dtype=np.float32), np.linspace(-1, 1, shape[1], dtype=np.float32), indexing="ij")
    for k in range(shape[2]):  # slice by slice: no full-size temporaries
        z = -1 + 2 * k / max(shape[2] - 1, 1)
        r2 = x**2 + y**2 + z**2
        out[..., k] = np.where(r2 < 0.8, 800 * (1 - 0.5 * r2), 0) + rng.uniform(0, 20, shape[:2]).astype(np.float32)
    return out


def apply_seconds_per_slice(method, slices: int, device: torch.device) -> float:
    """Seconds per 512 x 512 input slice of `apply_method` (streaming, units in and out)."""
    from sr_lib.apply import apply_method
    from sr_lib.io import Volume

    volume = Volume(synthetic_scan((512, 512, slices)), np.diag([0.5, 0.5, 3.0, 1.0]), path=Path("bench.nii"))
    return _timed(lambda: apply_method(method, volume), 1, device) / slices


def measure_apply(method: str = "srcnn", *, shape: tuple[int, int, int] = (512, 512, 300), profile: str = "test",
                  scenario: str = "SR-B", scale: int = 2) -> dict[str, float | str]:
    """Peak memory and time of `apply` (load, stream, save) on a synthetic float32 NIfTI of
    `shape`, measured in a fresh process so that the peak RSS belongs to `apply` alone.

    The method is built untrained (speed and memory do not depend on the weights)."""
    command = [sys.executable, "-m", "sr_lib.bench", "apply-child", method, "x".join(map(str, shape)), profile, scenario, str(scale)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"apply benchmark failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _apply_child(method_name: str, shape_text: str, profile: str, scenario: str, scale: int) -> dict[str, float | str]:
    """In a fresh process: write the scan, then time load + apply + save and read the peak RSS."""
    import nibabel as nib

    from sr_lib.apply import apply_method
    from sr_lib.io import load_volume, save_volume

    shape = tuple(int(n) for n in shape_text.split("x"))
    method = RunConfig(method=method_name, scenario=scenario, scale=scale, profile=profile).resolve().build_method()
    if isinstance(method, NetMethod):
        method.to(Runtime())  # as `load_trained_method` does for `apply` (CPU, channels_last in 2D)
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "scan.nii"
        nib.save(nib.Nifti1Image(synthetic_scan(shape), np.diag([0.5, 0.5, 3.0, 1.0])), source)
        baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        start = time.perf_counter()
        result = apply_method(method, load_volume(source))
        predicted = time.perf_counter() - start
        save_volume(result, Path(folder) / "out.nii.gz")
        total = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    io_bytes = (np.prod(shape) + result.data.size) * 4
    return {"method": method_name, "profile": profile, "volume": shape_text, "threads": torch.get_num_threads(),
            "predict_s": predicted, "apply_s_with_save": total, "s_per_slice": predicted / shape[2],
            "peak_rss_gb": peak / 1e9, "rss_before_gb": baseline / 1e9, "input_plus_output_gb": io_bytes / 1e9,
            "peak_over_input_plus_output": peak / io_bytes}


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m sr_lib.bench apply [--method srcnn] [--shape 512x512x300]`: the apply memory row."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["apply-child"]:
        print(json.dumps(_apply_child(*argv[1:5], int(argv[5]))))
        return 0
    parser = argparse.ArgumentParser(prog="python -m sr_lib.bench", description="apply memory and time")
    parser.add_argument("what", choices=["apply"])
    parser.add_argument("--method", default="srcnn")
    parser.add_argument("--shape", default="512x512x300")
    parser.add_argument("--profile", default="test")
    args = parser.parse_args(argv)
    row = measure_apply(args.method, shape=tuple(int(n) for n in args.shape.split("x")), profile=args.profile)
    print(pd.DataFrame([row]).to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
