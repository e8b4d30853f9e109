"""Browse a study's finished runs: volumes in the viewer, per-slice scores, subjects, curves.

Notebooks 80 and 90 call these. Each plotting function returns a matplotlib Figure, so the
report's static pictures and the interactive explorers (`RunExplorer`, `CurveExplorer`:
dropdowns for study, setting, subject, seed and methods) come from the same code.

A *setting* is what one table column of a study compares methods on: (scenario, contrast,
scale, pairing). The predicted volumes live in each run folder's ``predictions/``, which git
does not keep (see .gitignore); on a fresh clone the explorers say so and the tables, strip
plots and curves, which need only the committed metrics and logs, still work.
"""

from __future__ import annotations

import base64
import io
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from sr_lib.io import Volume, load_volume
from sr_lib.metrics import foreground_mask, psnr, ssim
from sr_lib.prepare import prepare_data
from sr_lib.report import study_runs, tidy_metrics
from sr_lib.storage import PREDICTIONS, RunResult
from sr_lib.studies import STUDIES, get_studies

Setting = tuple[str, str, int, str]

__all__ = ["CurveExplorer", "RunExplorer", "case_volumes", "per_slice_scores", "plot_per_slice",
           "plot_subject_strips", "plot_training_curves", "runs_of", "settings_of", "studies_runs"]


# ----------------------------------------------------------------------------- finding runs


def studies_runs(reports_root: str | os.PathLike, *, profile: str, studies: Sequence[str] | None = None,
                 dataset: str = "phantom", root: str | None = None, scale: int = 2, seeds: int | None = None,
                 pairing: str | None = None, options: Mapping[str, Any] | None = None) -> dict[str, list[RunResult]]:
    """study name -> its runs found under ``reports_root/runs/profile`` (finished or not),
    varied by `pairing` and method `options` as `sr-lib report --pairing/--option` varies them.

    A name not registered in this process (a study a test or a script added to `STUDIES` in
    another process) is left out with a warning: its tables and figures are files and still
    show, but its runs cannot be planned here.
    """
    runs_root = Path(reports_root) / "runs" / profile
    names = list(studies) if studies else list(STUDIES)
    unknown = [n for n in names if n not in STUDIES]
    if unknown:
        logging.getLogger(__name__).warning("not registered here, so not explored: %s", ", ".join(unknown))
    known = [n for n in names if n in STUDIES]
    chosen = get_studies(known) if known else []
    return {s.name: study_runs(s, runs_root, profile=profile, dataset=dataset, root=root, scale=scale, seeds=seeds,
                               pairing=pairing, options=options)
            for s in chosen}


def _setting(run: RunResult) -> Setting:
    c = run.config
    return (c.scenario, c.contrast, int(c.scale), c.pairing)


def setting_label(setting: Setting) -> str:
    scenario, contrast, scale, pairing = setting
    return f"{scenario} {contrast} x{scale} ({pairing})"


def settings_of(runs: Sequence[RunResult]) -> list[Setting]:
    """The settings the finished runs cover, sorted."""
    return sorted({_setting(r) for r in runs if r.status == "done"})


def _natural(name: str) -> list:
    """Sort key that puts 7t-m2 before 7t-m10."""
    import re

    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def runs_of(runs: Sequence[RunResult], setting: Setting, seed: int | None = None,
            methods: Sequence[str] | None = None) -> list[RunResult]:
    """The finished runs of one setting (and seed, and methods, when given)."""
    return [r for r in runs if r.status == "done" and _setting(r) == setting
            and (seed is None or r.config.seed == seed) and (methods is None or r.config.method in methods)]


# ----------------------------------------------------------------------------- volumes


def case_volumes(runs: Sequence[RunResult], setting: Setting, *, subject_index: int = 0, seed: int = 0,
                 methods: Sequence[str] | None = None) -> tuple[dict[str, Volume], np.ndarray | None, str]:
    """LR, each method's prediction and HR of one test subject, for `show_volumes`.

    Returns (name -> Volume with its affine, the hole mask on the HR grid or None, subject).
    HR and LR are rebuilt from the run's config (deterministic and cached); predictions are
    read from the run folders and mapped back to the HR's [0, 1] scaling. Raises
    FileNotFoundError naming the folder when a prediction is not on this machine.
    """
    group = runs_of(runs, setting, seed, methods)
    if not group:
        raise ValueError(f"no finished run of seed {seed} for {setting_label(setting)}")
    data = prepare_data(group[0].config)
    if not 0 <= subject_index < len(data.test):
        raise ValueError(f"subject_index must be in [0, {len(data.test) - 1}], got {subject_index}")
    case = data.test[subject_index]
    hr, offset, scale = case.hr, case.hr.intensity.offset, case.hr.intensity.scale
    volumes: dict[str, Volume] = {"LR": case.lr}
    for run in sorted(group, key=lambda r: _natural(r.config.method)):
        path = run.folder / PREDICTIONS / f"{hr.subject}.nii.gz"
        if not path.exists():
            raise FileNotFoundError(f"{path}: not on this machine (git keeps metrics, not volumes): "
                                    "`sr-lib report` makes it")
        pred = load_volume(path)
        volumes[run.config.method] = Volume(((pred.data - offset) / scale).astype(np.float32), hr.affine,
                                            subject=hr.subject)
    volumes["HR"] = hr
    mask = None if case.mask is None else np.asarray(case.mask.data).astype(bool)
    return volumes, mask, hr.subject


def per_slice_scores(volumes: Mapping[str, Volume | np.ndarray], *, reference: str = "HR",
                     axis: int = 2) -> pd.DataFrame:
    """One row per (volume, slice): 2D PSNR and SSIM against `reference` on that slice's head.

    The region of slice k is the reference slice's foreground (`metrics.foreground_mask`);
    slices with less than 5% foreground are left out, as are volumes on another grid than the
    reference (LR). Columns: name, slice, psnr, ssim.
    """
    arrays = {n: np.asarray(v.data if isinstance(v, Volume) else v, dtype=np.float32) for n, v in volumes.items()}
    if reference not in arrays:
        raise ValueError(f"{reference!r} is not one of the volumes: {', '.join(arrays)}")
    ref = np.moveaxis(arrays[reference], axis, 0)
    rows = []
    for k in range(ref.shape[0]):
        mask = foreground_mask(ref[k])
        if mask.mean() < 0.05 or min(ref.shape[1:]) < 11:
            continue
        for name, array in arrays.items():
            if name == reference or array.shape != arrays[reference].shape:
                continue
            plane = np.moveaxis(array, axis, 0)[k]
            try:
                rows.append({"name": name, "slice": k, "psnr": psnr(plane, ref[k], mask=mask),
                             "ssim": ssim(plane, ref[k], mask=mask)})
            except ValueError:  # no masked pixel away from the SSIM window's border
                continue
    return pd.DataFrame(rows, columns=["name", "slice", "psnr", "ssim"])


def _colour(i: int, n: int):
    """Distinct colours for up to 20 lines (tab10, then tab20)."""
    return f"C{i}" if n <= 10 else plt.get_cmap("tab20")(i % 20)


def _legend_outside(ax, fig: Figure) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=1 if len(ax.get_legend_handles_labels()[0]) <= 12 else 2,
                  loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()


def plot_per_slice(scores: pd.DataFrame, *, metric: str = "psnr", axis: int = 2, title: str = "") -> Figure:
    """PSNR or SSIM of every slice, one line per volume (from `per_slice_scores`)."""
    fig, ax = plt.subplots(figsize=(10, 3.4))
    groups = list(scores.groupby("name", sort=False))
    for i, (name, group) in enumerate(groups):
        ax.plot(group["slice"], group[metric], lw=1.2, color=_colour(i, len(groups)),
                label=f"{name} (mean {group[metric].mean():.3g})")
    ax.set_xlabel(f"slice along {'xyz'[axis]}")
    ax.set_ylabel("PSNR (dB), head of the slice" if metric == "psnr" else "SSIM, head of the slice")
    if title:
        ax.set_title(title, fontsize=10)
    _legend_outside(ax, fig)
    return fig


# ----------------------------------------------------------------------------- subjects and curves


def plot_subject_strips(tidy: pd.DataFrame, *, metric: str = "psnr", region: str = "brain", title: str = "") -> Figure:
    """Every (test subject, training seed) score of every method: a dot each, a bar at the mean.

    `tidy` is `report.tidy_metrics` of one setting. Dots of one subject share a colour across
    methods, so a reader sees whether methods agree on which subject is hard. Methods are
    ordered by mean, best on the right.
    """
    done = tidy[(tidy["status"] == "done") & (tidy["region"] == region)].dropna(subset=[metric])
    order = list(done.groupby("method")[metric].mean().sort_values().index)
    subjects = sorted(done["subject"].unique())
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(order) + 2), 3.4))
    rng = np.random.default_rng(0)  # jitter only; fixed so the picture is reproducible
    for x, method in enumerate(order):
        rows = done[done["method"] == method]
        for s, subject in enumerate(subjects):
            values = rows.loc[rows["subject"] == subject, metric]
            ax.scatter(x + rng.uniform(-0.18, 0.18, len(values)), values, s=14, color=f"C{s % 10}",
                       label=subject if x == 0 else None, alpha=0.85, edgecolors="none")
        ax.hlines(rows[metric].mean(), x - 0.3, x + 0.3, color="k", lw=1.5)
    ax.set_xticks(range(len(order)), order, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel(f"{'PSNR (dB)' if metric == 'psnr' else metric.upper()} on the {region}")
    ax.set_title(title or f"per test subject and seed ({region}); bar: mean", fontsize=10)
    if subjects:
        ax.legend(title="subject", fontsize=7, title_fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_training_curves(runs: Sequence[RunResult], *, column: str = "val_psnr", title: str = "") -> Figure:
    """One training-log column (default validation PSNR) of several runs against step, overlaid.

    A run's label is its method and seed; runs without that column (classical methods) are
    listed in the title as left out.
    """
    fig, ax = plt.subplots(figsize=(10, 3.6))
    missing = []
    methods = sorted({r.config.method for r in runs}, key=_natural)
    for run in runs:
        log = run.log
        if log is None or log.empty or column not in log.columns or log[column].dropna().empty:
            missing.append(run.config.method)
            continue
        series = log[["step", column]].dropna()
        color = _colour(methods.index(run.config.method), len(methods))
        ax.plot(series["step"], series[column], "-" if run.config.seed == 0 else "--", color=color, lw=1.2,
                marker="o", ms=2.5, label=f"{run.config.method} seed {run.config.seed}")
    ax.set_xlabel("step")
    ax.set_ylabel(column.replace("val_", "validation ").replace("psnr", "PSNR (dB)").replace("ssim", "SSIM"))
    left_out = f" (no {column}: {', '.join(sorted(set(missing)))})" if missing else ""
    ax.set_title((title + left_out).strip(), fontsize=10)
    _legend_outside(ax, fig)
    return fig


# ----------------------------------------------------------------------------- explorers


def _set_options(dropdown: widgets.Dropdown, options: list) -> None:
    """New options, with the first selected (ipywidgets leaves no selection otherwise)."""
    dropdown.options = options
    if options:
        first = options[0]
        dropdown.value = first[1] if isinstance(first, tuple) and len(first) == 2 and isinstance(first[0], str) else first


def _display_item(item: Figure | widgets.Widget) -> dict:
    """A display_data output for an Output widget: a figure as PNG, a widget as its view."""
    if isinstance(item, Figure):
        buf = io.BytesIO()
        item.savefig(buf, format="png", dpi=90)
        plt.close(item)
        data = {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": "<Figure>"}
    else:
        data = {"application/vnd.jupyter.widget-view+json": {"version_major": 2, "version_minor": 0,
                                                              "model_id": item.model_id},
                "text/plain": f"<{type(item).__name__}>"}
    return {"output_type": "display_data", "data": data, "metadata": {}}


def _show(output: widgets.Output, *items: Figure | widgets.Widget) -> None:
    """Replace what `output` shows by setting its outputs, not by capturing `display` inside
    it: capturing makes nbclient (papermill, nbval) track the Output widget, and executions
    then sometimes wait forever for a reply (seen in about 1 run in 7 of notebook 80)."""
    output.outputs = tuple(_display_item(item) for item in items)


class _Explorer(widgets.VBox):
    """What both explorers share: study, setting and methods pickers above an Output, and a
    short text where no widget manager runs (the report). Subclasses add `extra` pickers,
    fill them in `_fill_more` from the chosen setting's runs, and draw in `refresh`."""

    def __init__(self, runs_by_study: Mapping[str, Sequence[RunResult]], extra: Sequence[widgets.Widget]) -> None:
        self._runs = {name: list(runs) for name, runs in runs_by_study.items() if settings_of(runs)}
        if not self._runs:
            raise ValueError("no study has a finished run yet: `sr-lib report` (or `--study NAME`) makes them")
        self.study = widgets.Dropdown(options=list(self._runs), description="study")
        self.setting = widgets.Dropdown(description="setting")
        self.methods = widgets.SelectMultiple(description="methods", rows=6)
        self.output = widgets.Output()
        super().__init__([widgets.HBox([widgets.VBox([self.study, self.setting, *extra]), self.methods]), self.output])
        self._busy = False
        self.study.observe(lambda _: self._fill(), names="value")
        self.setting.observe(lambda _: self._fill(keep_setting=True), names="value")
        self.methods.observe(lambda _: self.refresh(), names="value")

    def _fill(self, keep_setting: bool = False) -> None:
        """Options of every picker for the chosen study (and setting), then one refresh."""
        if self._busy:
            return
        self._busy = True
        try:
            runs = self._runs[self.study.value]
            if not keep_setting or self.setting.value is None:
                _set_options(self.setting, [(setting_label(s), s) for s in settings_of(runs)])
            self._fill_more(runs_of(runs, self.setting.value))
        finally:
            self._busy = False
        self.refresh()

    def _fill_more(self, chosen: list[RunResult]) -> None:
        raise NotImplementedError

    def _offer_methods(self, methods: list[str], selected: Sequence[str]) -> None:
        if list(self.methods.options) != methods:
            self.methods.options = methods
            self.methods.value = tuple(selected)

    def refresh(self) -> None:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs):
        data = super()._repr_mimebundle_(**kwargs)
        if isinstance(data, dict):
            data["text/plain"] = f"<{type(self).__name__}: interactive; open this notebook in JupyterLab>"
        return data


class RunExplorer(_Explorer):
    """Dropdowns for study, setting, subject, seed and methods above a `VolumeViewer` and the
    per-slice PSNR of the chosen methods. Built from `studies_runs`' result."""

    def __init__(self, runs_by_study: Mapping[str, Sequence[RunResult]], *, axis: int = 2) -> None:
        self._axis = axis
        self.subject = widgets.Dropdown(description="subject")
        self.seed = widgets.Dropdown(description="seed")
        self.viewer = None
        super().__init__(runs_by_study, [self.subject, self.seed])
        self.seed.observe(lambda _: self._fill(keep_setting=True), names="value")
        self.subject.observe(lambda _: self.refresh(), names="value")
        self._fill()

    def _fill_more(self, chosen: list[RunResult]) -> None:
        seeds = sorted({r.config.seed for r in chosen})
        if self.seed.value not in seeds:
            _set_options(self.seed, seeds)
        methods = sorted({r.config.method for r in chosen if r.config.seed == self.seed.value}, key=_natural)
        self._offer_methods(methods, methods[:6])
        test_subjects = chosen[0].info.get("test_subjects", []) if chosen else []
        subjects = [(s, i) for i, s in enumerate(test_subjects)] or [("0", 0)]
        if list(self.subject.options) != subjects:
            _set_options(self.subject, subjects)

    def refresh(self) -> None:
        """Load the chosen volumes into a fresh viewer, with their per-slice scores below."""
        if self._busy or self.setting.value is None:
            return
        try:
            volumes, mask, subject = case_volumes(self._runs[self.study.value], self.setting.value,
                                                  subject_index=self.subject.value or 0, seed=self.seed.value,
                                                  methods=list(self.methods.value) or None)
        except (FileNotFoundError, ValueError) as err:
            _show(self.output, widgets.HTML(f"<b>cannot show this choice</b>: {err}"))
            return
        from sr_lib.viewer import show_volumes

        self.viewer = show_volumes(volumes, axis=self._axis, difference_to="HR", mask=mask, panel_size=200)
        scores = per_slice_scores(volumes, axis=self._axis)
        figure = plot_per_slice(scores, axis=self._axis,
                                title=f"{setting_label(self.setting.value)}, test subject {subject}, seed {self.seed.value}")
        _show(self.output, self.viewer, figure)


class CurveExplorer(_Explorer):
    """Training curves of several runs overlaid, and the per-subject strip plot, for a chosen
    study, setting, methods and log column."""

    def __init__(self, runs_by_study: Mapping[str, Sequence[RunResult]]) -> None:
        self.column = widgets.Dropdown(options=[("validation PSNR", "val_psnr"), ("validation SSIM", "val_ssim"),
                                                ("training loss", "loss")], description="curve")
        super().__init__(runs_by_study, [self.column])
        self.column.observe(lambda _: self.refresh(), names="value")
        self._fill()

    def _fill_more(self, chosen: list[RunResult]) -> None:
        methods = sorted({r.config.method for r in chosen}, key=_natural)
        self._offer_methods(methods, methods)

    def refresh(self) -> None:
        if self._busy or self.setting.value is None:
            return
        chosen = runs_of(self._runs[self.study.value], self.setting.value, methods=list(self.methods.value))
        label = setting_label(self.setting.value)
        curves = plot_training_curves(chosen, column=self.column.value, title=label)
        tidy = tidy_metrics(chosen, study=self.study.value) if chosen else pd.DataFrame()
        strips = plot_subject_strips(tidy, title=f"{label}: per test subject and seed (brain)") if len(tidy) else None
        _show(self.output, *[f for f in (curves, strips) if f is not None])
