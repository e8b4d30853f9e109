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
import json
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
from sr_lib.train import Runtime, pick_device, seed_everything


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


def benchmark(
    methods: Sequence[str] | None = None,
    *,
    profile: str = "quick",
    scenario: str = "SR-B",
    scale: int = 2,
    device: str = "auto",
    steps: int = 5,
    apply_slices: int = 2,
) -> pd.DataFrame:
    """One row per method, on random data of the profile's grid (speed does not depend on it):
    ms per training step on freshly sampled patches (profile batch and patch) and on one batch
    kept in memory, patches/s and HR voxels/s, the input pipeline's share of the step
    (1 − kept / sampled), GFLOP per step and TFLOP/s achieved (with the bf16 peak fraction on
    known GPUs), peak GPU memory, seconds to super-resolve one phantom-sized volume, and
    seconds per 512 x 512 slice through `apply_method` on a slab of `apply_slices` (0: skip)."""
    prof = get_profile(profile)
    dev = pick_device(device)
    factors = RunConfig(method="input", scenario=scenario, scale=scale, profile=prof.name).resolve().factors
    shape, _ = phantom_grid(prof)
    lr_shape = tuple(n // f for n, f in zip(shape, factors))
    rng = np.random.default_rng(0)
    lr_volume = rng.random(lr_shape, dtype=np.float32)
    rows = []
    for name in tqdm(list(methods or METHODS), desc="bench", unit="method", disable=None):
        seed_everything(0)
        experiment = RunConfig(method=name, scenario=scenario, scale=scale, profile=prof.name).resolve()
        try:
            if experiment.unsupported:
                raise ValueError(f"not applicable: {experiment.unsupported}")
            method = experiment.build_method()
        except ValueError as err:
            rows.append({"method": name, "device": str(dev), "note": str(err)})
            continue
        row = {"method": name, "device": str(dev), "volume": "x".join(map(str, lr_shape)), "note": ""}
        if method.learned and not isinstance(method, NetMethod):
            # e.g. rfsr: fitted on data outside the training loop, so there is no step to time and
            # nothing to predict with until it is; its run folder records its fit time
            rows.append({**row, "note": "fitted outside the training loop: see its runs' train_seconds"})
            continue
        if isinstance(method, NetMethod):
            method.to(Runtime(dev, dev.type == "cuda"))
            hr = torch.from_numpy(rng.random(shape, dtype=np.float32)).to(dev)
            lr = torch.from_numpy(lr_volume).to(dev)
            sampler = PairedPatchSampler([lr], [hr], factors=method.task.factors, spatial_dims=method.task.spatial_dims,
                                         axis=method.task.axis, threshold=0.0,
                                         patch_size=prof.patch_size if method.task.spatial_dims == 2 else prof.patch_size_3d)
            method.prepare(sampler, seed=0)
            generator = torch.Generator().manual_seed(0)
            method.train_mode(True)
            kept = sampler.sample(prof.batch_size, generator)

            def step() -> None:
                method.training_step(sampler.sample(prof.batch_size, generator), prof.steps)

            def step_on_kept_batch() -> None:
                method.training_step(kept, prof.steps)

            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            seconds = _timed(step, steps, dev)
            kept_seconds = _timed(step_on_kept_batch, steps, dev)
            flops = count_flops(step_on_kept_batch)
            hr_voxels = int(kept["hr"][0].numel())
            row.update({
                "train_ms_per_step": 1000 * seconds,
                "patches_per_s": prof.batch_size / seconds,
                "voxels_per_s": prof.batch_size * hr_voxels / seconds,
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
        if apply_slices:
            row["apply_s_per_512_slice"] = apply_seconds_per_slice(method, apply_slices, dev)
        rows.append(row)
    table = pd.DataFrame(rows)
    table.attrs["timed_steps"] = steps
    return table


def write_bench(table: pd.DataFrame, out_dir: str | Path, *, profile: str, device: str) -> list[Path]:
    """`bench-<profile>-<device>.csv` and `.md` under `out_dir`; the Markdown heads the table
    with the machine, torch version, commit and date, so a slowdown can be traced."""
    from sr_lib.atomic import atomic_path
    from sr_lib.pipeline import git_commit, machine_description

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{profile}-{device.replace(':', '')}"
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False)
    made = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    text = (f"# sr-lib bench: profile `{profile}`, device `{device}`\n\n"
            f"- machine: {machine_description()}\n- commit `{git_commit()}`, {made}\n"
            f"- times are medians of {table.attrs.get('timed_steps', '?')} calls after a warm-up; "
            "train: one optimiser step on the profile's batch of patches; `kept_batch`: the same step on one batch "
            "kept in memory; `input_share` = 1 − kept / sampled; FLOPs from `torch.utils.flop_counter` "
            "(matrix products and convolutions, forward and backward)\n\n"
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
