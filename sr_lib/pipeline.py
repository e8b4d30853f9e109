"""`sr-lib report`: run the notebooks in order with papermill, then write `reports/index.md`.

00_data and 01_degradation show the data; 10_train runs once per (scenario, contrast,
method) into `reports/runs/<profile>/`; 80 gathers the tables; 90 draws the difference maps.
A notebook that fails is recorded (its run is marked failed) and the report goes on.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import papermill
import torch
from tqdm.auto import tqdm

from sr_lib.atomic import write_json, write_text
from sr_lib.degrade import scenario_scales
from sr_lib.methods import METHODS
from sr_lib.paths import PROJECT_ROOT, notebooks_dir, reports_dir
from sr_lib.runs import STATUS_NAME, RunConfig

KERNEL = "python3"
DEFAULT_SCENARIOS = ("kspace-2x", "SR-B")
DEFAULT_CONTRASTS = ("T2",)


@dataclasses.dataclass
class NotebookOutcome:
    notebook: str
    output: Path
    ok: bool
    seconds: float
    error: str = ""


def run_notebook(name: str, output: Path, parameters: dict, *, cwd: Path | None = None) -> NotebookOutcome:
    """Execute notebooks/<name>.ipynb with papermill (explicit kernel) into `output`."""
    started = time.time()
    output.parent.mkdir(parents=True, exist_ok=True)
    try:
        papermill.execute_notebook(
            str(notebooks_dir() / f"{name}.ipynb"), str(output), parameters=parameters, kernel_name=KERNEL,
            cwd=str(cwd or notebooks_dir()), progress_bar=False, log_output=False,
        )
        return NotebookOutcome(name, output, True, time.time() - started)
    except Exception as err:  # PapermillExecutionError, dead kernel, ...
        if getattr(err, "ename", "") in ("TrainingInterrupted", "KeyboardInterrupt"):
            raise KeyboardInterrupt(f"{name} interrupted; its checkpoint is saved, rerun to resume") from err
        text = str(err).strip()
        message = getattr(err, "evalue", None) or (text.splitlines()[-1] if text else type(err).__name__)
        return NotebookOutcome(name, output, False, time.time() - started, f"{getattr(err, 'ename', type(err).__name__)}: {message}")


def run_report(
    *,
    profile: str = "quick",
    methods: Sequence[str] | None = None,
    scenarios: Sequence[str] = DEFAULT_SCENARIOS,
    contrasts: Sequence[str] = DEFAULT_CONTRASTS,
    dataset: str = "phantom",
    root: str | None = None,
    scale: int = 2,
    seed: int = 0,
    force: bool = False,
    out: str | os.PathLike | None = None,
) -> Path:
    """Regenerate the whole report; returns the path of `index.md`."""
    out = Path(out) if out is not None else reports_dir()
    methods = list(methods or METHODS)
    executed = out / "runs" / "notebooks"
    runs_root = out / "runs" / profile
    common = {"profile": profile, "dataset": dataset, "root": root or "", "seed": seed}
    jobs = [("00_data", executed / "00_data.ipynb", {**common}),
            ("01_degradation", executed / "01_degradation.ipynb", {**common, "scale": scale})]
    for scenario in scenarios:
        scales = scenario_scales(scenario)
        own_scale = scale if scale in scales else scales[0]  # fixed presets (k-space) run at their own scale
        if own_scale != scale:
            tqdm.write(f"note: {scenario} has the fixed scale {own_scale}; it runs at x{own_scale}, not x{scale}")
        for contrast in contrasts:
            for method in methods:
                params = {**common, "method": method, "scenario": scenario, "contrast": contrast, "scale": own_scale,
                          "pairing": "paired", "runs_root": str(runs_root), "force": force}
                jobs.append(("10_train", executed / "10_train" / f"{scenario}_{contrast}_{method}.ipynb", params))
    report_params = {"profile": profile, "runs_root": str(runs_root), "reports_root": str(out)}
    jobs += [("80_comparison_tables", executed / "80_comparison_tables.ipynb", report_params),
             ("90_difference_maps", executed / "90_difference_maps.ipynb", report_params)]
    outcomes = []
    for name, output, params in tqdm(jobs, desc=f"report ({profile})", unit="notebook"):
        if name == "10_train":
            tqdm.write(f"  {params['scenario']} {params['contrast']} {params['method']}")
        outcome = run_notebook(name, output, params)
        if not outcome.ok and name == "10_train":
            _record_failed_run(runs_root, params, outcome.error)
            # tables are gathered by 80 afterwards, so the failure shows up there
        outcomes.append(outcome)
    return write_index(out, outcomes, profile=profile, dataset=dataset)


def _record_failed_run(runs_root: Path, params: dict, error: str) -> None:
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    config = RunConfig(**{**{k: v for k, v in params.items() if k in fields}, "root": params["root"] or None})
    folder = runs_root / config.folder
    write_json(folder / "config.json", config.to_dict())
    write_json(folder / STATUS_NAME, {"status": "failed", "error": error, "config": config.to_dict()})


def machine_description() -> str:
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node() or 'unknown host'}: {platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, {device}, torch {torch.__version__}"


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def write_index(out: Path, outcomes: Sequence[NotebookOutcome], *, profile: str, dataset: str) -> Path:
    """`reports/index.md`: what made the report, then links to every table, figure and notebook."""
    def link(path: Path) -> str:
        rel = path.relative_to(out).as_posix()
        return f"[{rel}]({rel})"

    lines = [
        "# sr_lib report", "",
        f"- profile: `{profile}`, dataset: `{dataset}`",
        f"- made {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} from commit `{git_commit()}`",
        f"- machine: {machine_description()}",
        f"- total notebook time: {sum(o.seconds for o in outcomes) / 60:.1f} min", "",
        "## Tables", "",
    ]
    lines += [f"- {link(p)}" for p in sorted((out / "tables").glob("*.md"))]
    lines += ["- " + link(out / "tables" / "summary.csv") + " (tidy, for scripts)", "", "## Figures", ""]
    lines += [f"- {link(p)}" for p in sorted((out / "figures").glob("*.png"))]
    lines += ["", "## Executed notebooks", "", "| notebook | status | minutes |", "| --- | --- | --- |"]
    for o in outcomes:
        status = "ok" if o.ok else f"**failed**: {o.error}"
        lines.append(f"| {link(o.output)} | {status} | {o.seconds / 60:.1f} |")
    failed = [o for o in outcomes if not o.ok]
    lines += ["", f"{len(failed)} of {len(outcomes)} notebooks failed." if failed else "Every notebook ran.", ""]
    summary = out / "tables" / "summary.csv"
    if summary.exists():
        runs = pd.read_csv(summary)
        bad = runs[runs["status"] != "done"]
        lines += ["## Failed runs", ""]
        lines += [f"- {r.method} on {r.scenario} {r.contrast} x{r.scale}: {r.status}" for r in bad.itertuples()] or ["none"]
        lines.append("")
    return write_text(out / "index.md", "\n".join(lines))
