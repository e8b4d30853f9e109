"""`sr-lib bench`: speed of every method on this machine — training steps per second and
whole-volume inference time — on the profile's sizes. Numbers go to a table, never into
tests."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from sr_lib.data import PairedPatchSampler
from sr_lib.data.phantom import phantom_grid
from sr_lib.methods import METHODS, LearnedMethod, build
from sr_lib.profiles import get_profile
from sr_lib.runs import grid_factors
from sr_lib.train import pick_device, seed_everything


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
) -> pd.DataFrame:
    """One row per method: ms per training step (profile batch and patch) and seconds to
    super-resolve one phantom-sized volume, on random data of the profile's grid."""
    prof = get_profile(profile)
    dev = pick_device(device)
    factors = grid_factors(scenario, scale)
    shape, _ = phantom_grid(prof)
    lr_shape = tuple(n // f for n, f in zip(shape, factors))
    rng = np.random.default_rng(0)
    lr_volume = rng.random(lr_shape, dtype=np.float32)
    rows = []
    for name in tqdm(list(methods or METHODS), desc="bench", unit="method"):
        seed_everything(0)
        try:
            method = build(name, factors=factors, profile=prof)
        except ValueError as err:
            rows.append({"method": name, "device": str(dev), "note": str(err)})
            continue
        row = {"method": name, "device": str(dev), "volume": "x".join(map(str, lr_shape)), "note": ""}
        if isinstance(method, LearnedMethod):
            method.to(dev, amp=True)
            hr = torch.from_numpy(rng.random(shape, dtype=np.float32)).to(dev)
            lr = torch.from_numpy(lr_volume).to(dev)
            sampler = PairedPatchSampler([lr], [hr], factors=method.task.factors, spatial_dims=method.task.spatial_dims,
                                         axis=method.task.axis, threshold=0.0,
                                         patch_size=prof.patch_size if method.task.spatial_dims == 2 else prof.patch_size_3d)
            method.prepare(sampler, seed=0)
            generator = torch.Generator().manual_seed(0)
            method.train_mode(True)

            def step() -> None:
                method.training_step(sampler.sample(prof.batch_size, generator), prof.steps, prof.steps)

            row["train_ms_per_step"] = 1000 * _timed(step, steps, dev)
        row["infer_s_per_volume"] = _timed(lambda: method.predict_volume(lr_volume), max(steps // 2, 1), dev)
        rows.append(row)
    return pd.DataFrame(rows)
