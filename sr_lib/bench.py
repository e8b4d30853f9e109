"""`sr-lib bench`: speed of every method on this machine — training steps per second,
whole-volume inference time on the profile's sizes, and `apply` throughput on a clinical
512 x 512 slab (seconds per slice, through the same streaming path as `sr-lib apply`).
`python -m sr_lib.bench apply` measures `apply`'s peak memory on a whole synthetic volume in
a fresh process. Numbers go to a table, never into tests."""

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
    """One row per method: ms per training step (profile batch and patch), seconds to
    super-resolve one phantom-sized volume, on random data of the profile's grid, and
    seconds per 512 x 512 slice through `apply_method` on a slab of `apply_slices` (0: skip)."""
    prof = get_profile(profile)
    dev = pick_device(device)
    factors = RunConfig(method="input", scenario=scenario, scale=scale, profile=prof.name).resolve().factors
    shape, _ = phantom_grid(prof)
    lr_shape = tuple(n // f for n, f in zip(shape, factors))
    rng = np.random.default_rng(0)
    lr_volume = rng.random(lr_shape, dtype=np.float32)
    rows = []
    for name in tqdm(list(methods or METHODS), desc="bench", unit="method"):
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

            def step() -> None:
                method.training_step(sampler.sample(prof.batch_size, generator), prof.steps)

            row["train_ms_per_step"] = 1000 * _timed(step, steps, dev)
        row["infer_s_per_volume"] = _timed(lambda: method.predict_volume(lr_volume), max(steps // 2, 1), dev)
        if apply_slices:
            row["apply_s_per_512_slice"] = apply_seconds_per_slice(method, apply_slices, dev)
        rows.append(row)
    return pd.DataFrame(rows)


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
