"""The report of a study: its runs as a tidy table, the comparison tables with the paper's
numbers beside ours (`sr_lib.tables`), and difference maps (`sr_lib.figures`).

The tidy table has one row per (run, test subject, region); a failed or not-applicable run
contributes one row per region with NaN metrics, so it shows as "failed" / "n/a".

A report may vary every study's runs (`study_configs`): another pairing, and method options
(`sr-lib report --option`), each applied to the runs whose method has it. The varied runs
have their own identities, so they sit beside the default ones.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sr_lib.evaluation import REGIONS
from sr_lib.experiment import RunConfig
from sr_lib.metrics import foreground_mask
from sr_lib.figures import difference_figure, save_figure
from sr_lib.methods import METHODS, method_class
from sr_lib.runs import RunResult, example_case, load_run, run_folder
from sr_lib.studies import Study
from sr_lib.tables import TRAINING_COLUMNS, write_study_tables, write_summary

LABELS = ["study", "scenario", "contrast", "scale", "pairing", "method", "profile", "seed"]
COLUMNS = LABELS + ["subject", "region", "status", "error", "psnr", "ssim", "mse"]


def tidy_metrics(runs: Sequence[RunResult], *, study: str) -> pd.DataFrame:
    """One row per (run, test subject, region) for `study`'s runs."""
    frames = []
    for run in runs:
        c = run.config
        labels = {"study": study, "scenario": c.scenario, "contrast": c.contrast, "scale": c.scale,
                  "pairing": c.pairing, "method": c.method, "profile": c.profile, "seed": c.seed,
                  "status": run.status if run.status in ("done", "n/a") else "failed", "error": run.error or ""}
        if run.status == "done" and not run.metrics.empty:
            frames.append(run.metrics.assign(**labels, **training_facts(run)))
        else:
            frames.append(pd.DataFrame({"subject": [np.nan] * len(REGIONS), "region": list(REGIONS)}).assign(**labels))
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    tidy = pd.concat(frames, ignore_index=True)
    return tidy.reindex(columns=COLUMNS + [c for c in tidy.columns if c not in COLUMNS])


def training_facts(run: RunResult) -> dict[str, float]:
    """Where a learned run's training stopped (`tables.TRAINING_COLUMNS`); NaN for a method
    that learns nothing. `val_gain_tail`: validation PSNR at the last validation minus the
    one nearest 80% of the steps done."""
    facts = dict.fromkeys(TRAINING_COLUMNS, np.nan)
    steps = run.info.get("steps_done")
    if steps is None or run.log.empty or "val_psnr" not in run.log.columns:
        return facts
    val = run.log.dropna(subset=["val_psnr"])
    facts.update(steps_done=float(steps), steps_cap=float(run.info.get("method", {}).get("steps", steps)),
                 best_step=float(run.info.get("best_step") or steps), stopped_early=float(bool(run.info.get("stopped_early"))))
    if len(val):
        facts["val_psnr_best"] = float(val["val_psnr"].max())
        earlier = val.iloc[(val["step"] - 0.8 * float(steps)).abs().argmin()]
        facts["val_gain_tail"] = float(val["val_psnr"].iloc[-1] - earlier["val_psnr"])
    return facts


def write_study_report(study: Study, runs: Sequence[RunResult], reports_root: str | os.PathLike) -> list[Path]:
    """The study's tables (Markdown, CSV, LaTeX) under `reports_root/tables/`."""
    tidy = tidy_metrics(runs, study=study.name)
    return write_study_tables(tidy, study.paper_table(), Path(reports_root) / "tables", study=study.name)


def write_all_summaries(tidy: pd.DataFrame, reports_root: str | os.PathLike) -> list[Path]:
    return write_summary(tidy, Path(reports_root) / "tables")


def study_figures(study: Study, runs: Sequence[RunResult], out_dir: str | os.PathLike, *, subject_index: int = 0,
                  seed: int = 0) -> list[Path]:
    """One difference-map figure per (scenario, contrast, scale, pairing, profile) of the
    study, from its finished runs of training seed `seed`."""
    done = [r for r in runs if r.status == "done" and r.config.seed == seed]
    keys = sorted({(r.config.scenario, r.config.contrast, r.config.scale, r.config.pairing, r.config.profile) for r in done})
    written = []
    for key in keys:
        group = [r for r in done if (r.config.scenario, r.config.contrast, r.config.scale, r.config.pairing,
                                     r.config.profile) == key]
        examples = {r.config.method: example_case(r, subject_index) for r in group}
        first = next(iter(examples.values()))
        fig = difference_figure(first["hr"], first["lr"], {m: e["prediction"] for m, e in examples.items()},
                                mask=foreground_mask(first["hr"]), title=f"{study.name}: {key[0]} {key[1]} x{key[2]} ({key[3]}, {key[4]}), "
                                                 f"test subject {first['subject']}, seed {seed}")
        written.append(save_figure(fig, Path(out_dir) / "{}_{}_{}_x{}_{}_{}.png".format(study.name, *key)))
        plt.close(fig)
    return written


class OptionError(ValueError):
    """A method option that no selected method has, or a `method.option` for a method the
    selection does not run: a usage error (`sr-lib` exits 2)."""


def split_options(options: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """`{"steps": 50, "srgan.adv_weight": 0.1}` -> `({"steps": 50}, {"srgan": {"adv_weight": 0.1}})`:
    a name `method.option` targets that method when `method` is a registered one."""
    shared: dict[str, Any] = {}
    per_method: dict[str, dict[str, Any]] = {}
    for name, value in (options or {}).items():
        method, dot, option = name.rpartition(".")
        if dot and method in METHODS:
            per_method.setdefault(method, {})[option] = value
        else:
            shared[name] = value
    return shared, per_method


def option_names(method: str) -> set[str]:
    """The options `method` takes (its `Options` dataclass fields)."""
    return {f.name for f in dataclasses.fields(method_class(method).Options)}


def check_options(methods: Iterable[str], options: Mapping[str, Any] | None) -> None:
    """Raise `OptionError` naming every option of `options` (see `split_options`) that none of
    `methods` has, and every `method.option` whose method is not among `methods` or lacks it."""
    methods = sorted(set(methods))
    shared, per_method = split_options(options)
    which = f"{methods[0]} has no such option" if len(methods) == 1 else f"none of {', '.join(methods)} has it"
    problems = [f"{name} ({which})" for name in shared if not any(name in option_names(m) for m in methods)]
    for method, values in per_method.items():
        if method not in methods:
            problems.append(f"{method}.{next(iter(values))} ({method} is not among the methods run)")
            continue
        problems += [f"{method}.{name} ({method} has no option {name!r}; see `sr-lib methods {method}`)"
                     for name in values if name not in option_names(method)]
    if problems:
        raise OptionError(f"unknown method option{'s' if len(problems) > 1 else ''}: {'; '.join(problems)}")


def vary_config(config: RunConfig, *, pairing: str | None = None, options: Mapping[str, Any] | None = None) -> RunConfig:
    """`config` with another `pairing` and with the `options` its method has (see
    `split_options`; `method.option` wins over a plain `option`). Unchanged without them."""
    shared, per_method = split_options(options)
    names = option_names(config.method)
    chosen = {**{k: v for k, v in shared.items() if k in names}, **per_method.get(config.method, {})}
    if not chosen and pairing in (None, config.pairing):
        return config
    return dataclasses.replace(config, pairing=pairing or config.pairing, options={**config.options, **chosen})


def study_configs(study: Study, *, profile: str, dataset: str = "phantom", root: str | None = None, scale: int = 2,
                  seeds: int | None = None, pairing: str | None = None,
                  options: Mapping[str, Any] | None = None) -> list[RunConfig]:
    """The study's runs (`Study.configs`), each varied by `pairing` and `options` (`vary_config`)."""
    return [vary_config(c, pairing=pairing, options=options)
            for c in study.configs(profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds)]


def study_runs(study: Study, runs_root: str | os.PathLike, *, profile: str, dataset: str = "phantom",
               root: str | None = None, scale: int = 2, seeds: int | None = None, pairing: str | None = None,
               options: Mapping[str, Any] | None = None) -> list[RunResult]:
    """The study's runs found under `runs_root` (missing ones, not yet run, are left out),
    varied by `pairing` and `options` as the report that made them was (`study_configs`)."""
    runs = []
    for config in study_configs(study, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds,
                                pairing=pairing, options=options):
        folder = run_folder(config, runs_root)
        if (folder / "config.json").exists():
            runs.append(load_run(folder))
    return runs
