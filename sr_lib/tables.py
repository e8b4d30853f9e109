"""Tables over seeds and test subjects, with the paper's number beside ours.

Everything starts from one *tidy* frame, one row per (run, test subject, region):

=========== ====================================================================
column      meaning
=========== ====================================================================
study       the experiment the row belongs to (one paper's table)
scenario    degradation preset (``SR-B``, ``kspace-2x`` ...)
contrast    ``T1``, ``T2``, ``PD``
scale       upscaling factor
pairing     ``paired``, ``misaligned``, ``unpaired``
method      registered method name
profile     ``test``, ``quick``, ``full``
seed        training seed of the run
subject     test subject id; NaN on a failed or n/a run's single row
region      ``brain`` (foreground mask, the headline) or ``volume`` (whole array); NaN on a
            failed or n/a run's row means "every region"
status      ``done``, ``failed`` or ``n/a`` (the method does not support the scenario)
error       the one-line error of a failed run, else empty
psnr, ssim, mse            3D scores of the region (`sr_lib.metrics.evaluate_regions`)
psnr_slices, ssim_slices   optional: the 2D papers' per-slice convention
=========== ====================================================================

The *papers* frame holds the published numbers: ``study, scenario, contrast, method,
metric ("psnr" | "ssim"), value, source`` and an optional free-text ``note`` (the paper's own
setting may differ from ours: another dataset split, scale, slice convention ...).

Statistics (`summary_table`): for a (setting, method, region) the headline is the mean over
seeds of the per-seed mean over test subjects. Two spreads go with it: the *subject* std
(std, ddof=1, over subjects of each subject's mean over seeds: how much the brains differ)
and the *seed* std (std, ddof=1, over seeds of the per-seed means: how much training noise
moves the headline; NaN with one seed). `paired_bootstrap` gives each method's difference to
the best with a two-level bootstrap interval over subjects and seeds.
"""

from __future__ import annotations

import os
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from sr_lib.atomic import atomic_path, write_text

#: What identifies one setting of a study (every label but method, seed, subject, region).
SETTING = ["study", "scenario", "contrast", "scale", "pairing", "profile"]
#: One row of `summary_table`.
GROUP = ["study", "scenario", "contrast", "scale", "pairing", "method", "profile", "region"]
TIDY_COLUMNS = GROUP[:-1] + ["seed", "subject", "region", "status", "error", "psnr", "ssim", "mse"]
SLICE_COLUMNS = ["psnr_slices", "ssim_slices"]
PAPER_COLUMNS = ["study", "scenario", "contrast", "method", "metric", "value", "source"]
STATUSES = ("done", "failed", "n/a")
REGIONS = ("brain", "volume", "hole", "hole_band", "brain_rest")  # the last three where a scenario has holes
SUMMARY_COLUMNS = GROUP + [
    "status", "n_subjects", "n_seeds", "psnr_mean", "psnr_std", "ssim_mean", "ssim_std",
    "psnr_seed_std", "ssim_seed_std",
]
REGION_TITLES = {"brain": "brain (foreground mask)", "volume": "whole volume", "hole": "inside the holes",
                 "hole_band": "a 2 mm band around the holes", "brain_rest": "the brain away from the holes"}

__all__ = [
    "comparison_table",
    "check_papers",
    "check_tidy",
    "paired_bootstrap",
    "summary_table",
    "write_study_tables",
    "write_summary",
]


# ----------------------------------------------------------------------------- checks


def check_tidy(tidy: pd.DataFrame) -> pd.DataFrame:
    """Validate a tidy frame and return it with region-less failed/n/a rows spread over regions.

    ValueError names missing columns, unknown statuses or regions, and done rows without a
    subject or region.
    """
    if not isinstance(tidy, pd.DataFrame):
        raise ValueError(f"tidy must be a pandas DataFrame, got {type(tidy).__name__}")
    missing = [c for c in TIDY_COLUMNS if c not in tidy.columns]
    if missing:
        raise ValueError(f"tidy frame lacks columns {missing}; it has {list(tidy.columns)}")
    bad = sorted(set(tidy["status"].dropna()) - set(STATUSES)) + (["NaN"] if tidy["status"].isna().any() else [])
    if bad:
        raise ValueError(f"unknown status {bad}; a run's status is one of {list(STATUSES)}")
    bad = sorted(set(tidy["region"].dropna()) - set(REGIONS))
    if bad:
        raise ValueError(f"unknown region {bad}; regions are {list(REGIONS)}")
    done = tidy["status"] == "done"
    if (done & (tidy["subject"].isna() | tidy["region"].isna())).any():
        raise ValueError("a 'done' row has no subject or no region: each done row is one (run, subject, region)")
    spread = tidy["region"].isna()
    if not spread.any():
        return tidy
    regions = [r for r in REGIONS if r in set(tidy["region"].dropna())] or list(REGIONS)
    copies = [tidy[spread].assign(region=r) for r in regions]
    return pd.concat([tidy[~spread], *copies], ignore_index=True)


def check_papers(papers: pd.DataFrame | None) -> pd.DataFrame:
    """Validate the papers frame (None gives an empty one); adds an empty ``note`` if absent."""
    if papers is None:
        return pd.DataFrame(columns=PAPER_COLUMNS + ["note"])
    missing = [c for c in PAPER_COLUMNS if c not in papers.columns]
    if missing:
        raise ValueError(f"papers frame lacks columns {missing}; it has {list(papers.columns)}")
    bad = sorted(set(papers["metric"]) - {"psnr", "ssim"})
    if bad:
        raise ValueError(f"papers: unknown metric {bad}; use 'psnr' or 'ssim'")
    papers = papers.copy()
    if "note" not in papers.columns:
        papers["note"] = ""
    papers["note"] = papers["note"].fillna("")
    return papers


def _groups(frame: pd.DataFrame, keys: Sequence[str]):
    """groupby in order of first appearance, NaN keys kept, keys always a tuple."""
    for key, group in frame.groupby(list(keys), sort=False, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), group


def _status(statuses: pd.Series) -> str:
    s = set(statuses)
    if s == {"done"}:
        return "done"
    if s == {"n/a"}:
        return "n/a"
    return "failed"


def _std(values: pd.Series | np.ndarray) -> float:
    v = np.asarray(values, dtype=np.float64)
    return float(np.std(v, ddof=1)) if v.size > 1 else np.nan


# ----------------------------------------------------------------------------- summary


def _done(group: pd.DataFrame, metric: str) -> pd.DataFrame:
    return group[(group["status"] == "done") & group[metric].notna()]


def _stats(group: pd.DataFrame, metric: str) -> dict[str, float]:
    """mean (over seeds of per-seed subject means), subject std, seed std, n subjects, n seeds."""
    done = _done(group, metric)
    if done.empty:
        return {"mean": np.nan, "std": np.nan, "seed_std": np.nan, "n_subjects": 0, "n_seeds": 0}
    per_seed = done.groupby("seed", dropna=False)[metric].mean()
    per_subject = done.groupby("subject")[metric].mean()
    return {"mean": float(per_seed.mean()), "std": _std(per_subject), "seed_std": _std(per_seed),
            "n_subjects": int(per_subject.size), "n_seeds": int(per_seed.size)}


def summary_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """One row per (study, scenario, contrast, scale, pairing, method, profile, region).

    Columns `SUMMARY_COLUMNS`, then ``psnr_slices_mean, ssim_slices_mean`` when the tidy
    frame has the per-slice scores, then ``n_failed`` (failed runs). ``<m>_mean`` is the mean
    over seeds of the per-seed mean over test subjects; ``<m>_std`` the subject-to-subject
    std (ddof=1 over subjects of their mean over seeds; NaN for one subject); ``<m>_seed_std``
    the seed-to-seed std (ddof=1 over the per-seed means; NaN for one seed). Only done runs
    enter the numbers. status: 'done' if every run is done, 'n/a' if the method does not
    support the setting, else 'failed' (numbers then come from the runs that finished).
    """
    tidy = check_tidy(tidy)
    extra = [c for c in SLICE_COLUMNS if c in tidy.columns]
    rows = []
    for key, group in _groups(tidy, GROUP):
        stats = {m: _stats(group, m) for m in ("psnr", "ssim", *extra)}
        failed = group[group["status"] == "failed"]
        rows.append({
            **dict(zip(GROUP, key)),
            "status": _status(group["status"]),
            "n_subjects": stats["psnr"]["n_subjects"],
            "n_seeds": stats["psnr"]["n_seeds"],
            **{f"{m}_{s}": stats[m][s] for m in ("psnr", "ssim") for s in ("mean", "std")},
            **{f"{m}_seed_std": stats[m]["seed_std"] for m in ("psnr", "ssim")},
            **{f"{m}_mean": stats[m]["mean"] for m in extra},
            "n_failed": int(failed["seed"].nunique(dropna=False)) if len(failed) else 0,
        })
    columns = SUMMARY_COLUMNS + [f"{m}_mean" for m in extra] + ["n_failed"]
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- paired bootstrap


def _higher_is_better(metric: str) -> bool:
    return "mse" not in metric


def _key_seed(seed: int, key: Sequence) -> np.random.Generator:
    """A generator for one (group, method), independent of which other groups the frame holds."""
    return np.random.default_rng([int(seed), zlib.crc32(repr(tuple(map(str, key))).encode())])


def _draw_counts(rng: np.random.Generator, n_boot: int, n: int) -> np.ndarray:
    """(n_boot, n): how often each of n items is drawn in each replicate of n draws with replacement."""
    draws = rng.integers(0, n, (n_boot, n)) + n * np.arange(n_boot)[:, None]
    return np.bincount(draws.ravel(), minlength=n_boot * n).reshape(n_boot, n).astype(np.float64)


def _crossed_bootstrap(diff: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap means of a (subjects, seeds) matrix of paired differences (NaN = missing pair).

    Each replicate draws S subjects and K seeds with replacement, independently, and averages
    the differences of the drawn cells (a cell drawn twice counts twice). Written with draw
    counts: mean_b = sum_ij cs_bi D_ij ck_bj / sum_ij cs_bi P_ij ck_bj, P = pair present.
    """
    s, k = diff.shape
    present = ~np.isnan(diff)
    d0 = np.where(present, diff, 0.0)
    cs, ck = _draw_counts(rng, n_boot, s), _draw_counts(rng, n_boot, k)
    num = np.einsum("bi,ij,bj->b", cs, d0, ck)
    den = np.einsum("bi,ij,bj->b", cs, present.astype(np.float64), ck)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def paired_bootstrap(
    tidy: pd.DataFrame,
    metric: str,
    *,
    region: str = "brain",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Each method against the best of its setting: paired difference and bootstrap interval.

    For every setting (`SETTING`) in `region`, the best method is the one with the best mean
    (as `summary_table`: mean over seeds of per-seed subject means; highest, or lowest for an
    MSE). For every other method, the pairs are the (subject, seed) cells both methods have;
    ``diff_mean`` is the mean over them of (method - best). The interval is a two-level
    (crossed) percentile bootstrap: each of `n_boot` replicates resamples the subjects with
    replacement and, independently, the seeds with replacement, and averages the differences
    of the resampled cells; ``ci_low, ci_high`` are its (1 - ci)/2 and (1 + ci)/2 quantiles.
    With one seed it is the ordinary subject bootstrap. Subject and seed resampling together
    carry both sources of noise in the table (which brains, which training run). Deterministic
    given `seed` (each setting/method draws from its own generator seeded by `seed` and its
    labels). Returns one row per non-best method with a done run: `SETTING`, ``region,
    metric, method, best, diff_mean, ci_low, ci_high, n_pairs, n_subjects, n_seeds``;
    ``n_pairs`` 0 and NaN numbers when the two share no cell.
    """
    tidy = check_tidy(tidy)
    if metric not in tidy.columns:
        raise ValueError(f"unknown metric {metric!r}; the tidy frame has {list(tidy.columns)}")
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; regions are {list(REGIONS)}")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive integer, got {n_boot!r}")
    if not 0 < ci < 1:
        raise ValueError(f"ci must be in (0, 1), got {ci!r}")
    columns = SETTING + ["region", "metric", "method", "best", "diff_mean", "ci_low", "ci_high",
                         "n_pairs", "n_subjects", "n_seeds"]
    data = tidy[(tidy["region"] == region) & (tidy["status"] == "done") & tidy[metric].notna()]
    data = data.assign(seed=data["seed"].astype(object).where(data["seed"].notna(), "none"))
    sign = 1.0 if _higher_is_better(metric) else -1.0
    rows = []
    for key, group in _groups(data, SETTING):
        means = {m: _stats(g, metric)["mean"] for (m,), g in _groups(group, ["method"])}
        best = max(means, key=lambda m: sign * means[m])  # first of equals in order of appearance
        cells = group.pivot_table(index="subject", columns=["method", "seed"], values=metric, aggfunc="mean",
                                  dropna=False)
        for method in means:
            if method == best:
                continue
            diff = (cells[method] - cells[best]).dropna(how="all").dropna(axis=1, how="all")
            values = diff.to_numpy(dtype=np.float64)
            n_pairs = int(np.isfinite(values).sum())
            row = {**dict(zip(SETTING, key)), "region": region, "metric": metric, "method": method, "best": best,
                   "n_pairs": n_pairs, "n_subjects": diff.shape[0], "n_seeds": diff.shape[1]}
            if n_pairs == 0:
                rows.append({**row, "diff_mean": np.nan, "ci_low": np.nan, "ci_high": np.nan})
                continue
            boot = _crossed_bootstrap(values, int(n_boot), _key_seed(seed, (*key, region, metric, method, best)))
            low, high = np.nanquantile(boot, [(1 - ci) / 2, (1 + ci) / 2])
            rows.append({**row, "diff_mean": float(np.nanmean(values)), "ci_low": float(low), "ci_high": float(high)})
    return pd.DataFrame(rows, columns=columns)


# ----------------------------------------------------------------------------- comparison table

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "−": "-", "·": r"$\cdot$"}


def _latex(text: str) -> str:
    """Escape `text` for LaTeX, then write the few symbols the tables use as math."""
    text = re.sub(r"[\\&%$#_{}~^]", lambda m: _LATEX_SPECIAL[m.group()], str(text))
    for symbol, tex in _LATEX_SYMBOLS.items():
        text = text.replace(symbol, tex)
    return text


def _bold(text: str, style: str) -> str:
    return {"markdown": f"**{text}**", "latex": f"\\textbf{{{text}}}"}.get(style, text)


def _mean_spread(stats: dict, digits: int) -> str:
    """'31.20 ± 0.85', with the seed spread when there are several seeds: '31.20 ± 0.85 (seed ± 0.12)'."""
    text = f"{stats['mean']:.{digits}f}"
    if np.isfinite(stats["std"]):
        text += f" ± {stats['std']:.{digits}f}"
    if stats["n_seeds"] > 1 and np.isfinite(stats["seed_std"]):
        text += f" (seed ± {stats['seed_std']:.{digits}f})"
    return text


def _diff_cell(row: pd.Series | None, is_best: bool, digits: int = 2) -> str:
    if is_best:
        return "best"
    if row is None or not np.isfinite(row["diff_mean"]):
        return ""
    return f"{row['diff_mean']:+.{digits}f} [{row['ci_low']:+.{digits}f}, {row['ci_high']:+.{digits}f}]"


def _setting_label(key: dict, varying: Sequence[str]) -> str:
    parts = [str(key["scenario"])]
    parts += [f"x{key['scale']}" if c == "scale" else str(key[c]) for c in varying]
    return " ".join(parts) + f" · {key['contrast']}"


def _paper_values(papers: pd.DataFrame, scenario, contrast, method, metric) -> str:
    hit = papers[(papers["scenario"] == scenario) & (papers["contrast"] == contrast)
                 & (papers["method"] == method) & (papers["metric"] == metric)]
    return " / ".join(f"{v:.4g}" for v in hit["value"] if pd.notna(v))


CONVENTIONS = {"volume": "3D PSNR/SSIM of each test volume", "slices": "2D PSNR/SSIM per slice, averaged over slices"}


def _with_convention(tidy: pd.DataFrame, convention: str) -> pd.DataFrame:
    """`tidy` whose ``psnr, ssim`` columns hold the scores of `convention`."""
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {convention!r}")
    if convention == "volume":
        return tidy
    missing = [c for c in SLICE_COLUMNS if c not in tidy.columns]
    if missing:
        raise ValueError(f"convention 'slices' needs the tidy columns {missing}")
    return tidy.assign(psnr=tidy["psnr_slices"], ssim=tidy["ssim_slices"])


def _one_study(tidy: pd.DataFrame) -> str:
    studies = list(dict.fromkeys(tidy["study"]))
    if len(studies) != 1:
        raise ValueError(f"comparison_table takes one study, got {studies}; select one with tidy[tidy.study == ...]")
    return studies[0]


def comparison_table(
    tidy: pd.DataFrame,
    papers: pd.DataFrame | None = None,
    *,
    region: str = "brain",
    bold: str = "markdown",
    convention: str = "volume",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The paper-style table of ONE study: methods as rows, for each setting ours and the paper's.

    Rows: the methods in order of first appearance, then methods only the paper reports.
    Columns: a (setting, quantity) MultiIndex. The setting is ``"<scenario> · <contrast>"``
    (scale, pairing and profile are added when they vary within the study). Quantities, in
    this order: ``PSNR (dB)``, ``paper PSNR``, ``SSIM``, ``paper SSIM``, ``Δ PSNR vs best``:

    - ``PSNR (dB)``, ``SSIM``: ``mean ± subject std``, and when the method ran with several
      seeds ``mean ± subject std (seed ± seed std)``; see `summary_table` for the definitions.
      The best mean of each column is bold. "n/a": the method does not support the setting;
      "failed": no run finished; a trailing "†": some runs failed and the numbers come from
      the others; "not run": only the paper has the method.
    - ``Δ PSNR vs best [95% CI]``: `paired_bootstrap` of PSNR, method - best, in dB.
    - ``paper PSNR``, ``paper SSIM`` (when `papers` is given): the published numbers for the
      same study, scenario, contrast and method ("" where the paper has none; several
      sources are joined with " / ").

    `convention`: 'volume' (3D PSNR/SSIM of each volume, the ``psnr, ssim`` columns) or
    'slices' (the 2D papers' per-slice means, ``psnr_slices, ssim_slices``): pick the one the
    paper used before reading our number against theirs. `bold`: 'markdown', 'latex' or
    'none'. 'latex' returns cells, index and headers escaped for LaTeX (write with
    ``to_latex(escape=False)``).
    """
    if bold not in ("markdown", "latex", "none"):
        raise ValueError(f"bold must be 'markdown', 'latex' or 'none', got {bold!r}")
    return _style(*_comparison_cells(tidy, papers, region=region, convention=convention, n_boot=n_boot, seed=seed),
                  bold)


def _comparison_cells(tidy, papers, *, region, convention, n_boot, seed):
    """`comparison_table`'s plain cells: (methods, {(setting, quantity): cells}, bold positions)."""
    tidy = check_tidy(tidy)
    study = _one_study(tidy)
    papers = check_papers(papers)
    papers = papers[papers["study"] == study]
    data = _with_convention(tidy[tidy["region"] == region], convention)
    if data.empty:
        raise ValueError(f"study {study!r} has no rows for region {region!r}")
    methods = list(dict.fromkeys(data["method"]))
    methods += [m for m in dict.fromkeys(papers["method"]) if m not in methods]
    varying = [c for c in ("scale", "pairing", "profile") if data[c].nunique(dropna=False) > 1]
    diffs = paired_bootstrap(data, "psnr", region=region, n_boot=n_boot, seed=seed)
    columns: dict[tuple[str, str], list[str]] = {}
    bolded: set[tuple[str, str, str]] = set()  # (setting, quantity, method) cells holding a best mean
    for key, group in _groups(data, SETTING):
        key = dict(zip(SETTING, key))
        label = _setting_label(key, varying)
        by_method = {m: g for (m,), g in _groups(group, ["method"])}
        status = {m: _status(g["status"]) for m, g in by_method.items()}
        for metric, name, digits in (("psnr", "PSNR (dB)", 2), ("ssim", "SSIM", 4)):
            stats = {m: _stats(g, metric) for m, g in by_method.items()}
            finite = [m for m in stats if np.isfinite(stats[m]["mean"])]
            best = max(finite, key=lambda m: stats[m]["mean"], default=None)
            if best is not None:
                bolded.add((label, name, best))
            cells = []
            for method in methods:
                if method not in by_method:
                    cells.append("not run")
                elif status[method] == "n/a":
                    cells.append("n/a")
                elif not np.isfinite(stats[method]["mean"]):
                    cells.append("failed")
                else:
                    cells.append(_mean_spread(stats[method], digits) + (" †" if status[method] == "failed" else ""))
            columns[(label, name)] = cells
            if len(papers):  # the paper's number right beside ours
                columns[(label, f"paper {name.split()[0]}")] = [
                    _paper_values(papers, key["scenario"], key["contrast"], m, metric) for m in methods]
            if metric == "psnr":
                best_psnr = best
        mine = diffs[np.logical_and.reduce([diffs[c].astype(str) == str(key[c]) for c in SETTING])]
        rows = {r["method"]: r for _, r in mine.iterrows()}
        columns[(label, "Δ PSNR vs best [95% CI]")] = [_diff_cell(rows.get(m), m == best_psnr) for m in methods]
    return methods, columns, bolded


def _style(methods: list[str], columns: dict, bolded: set, bold: str) -> pd.DataFrame:
    """The table of plain cells, marked up for `bold` ('latex' also escapes everything)."""
    escape = _latex if bold == "latex" else str
    table = pd.DataFrame(
        {(escape(a), escape(b)): [_bold(escape(c), bold) if (a, b, m) in bolded else escape(c)
                                  for m, c in zip(methods, cells)]
         for (a, b), cells in columns.items()},
        index=pd.Index([escape(m) for m in methods], name="method"),
    )
    table.columns = pd.MultiIndex.from_tuples(list(table.columns), names=["setting", ""])
    return table


# ----------------------------------------------------------------------------- training


#: Optional per-run columns of a tidy frame (see `report.training_facts`), for `training_table`.
TRAINING_COLUMNS = ["steps_done", "steps_cap", "best_step", "stopped_early", "val_psnr_best", "val_gain_tail"]


def training_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Where each learned method's training stopped, per setting: one row per (setting, method).

    Columns: ``seeds``, ``steps (cap)`` (mean steps done over seeds, and the cap),
    ``stopped early`` (seeds that early stopping ended before the cap), ``best step`` (mean
    step of the best validation PSNR, whose weights were kept), ``val PSNR`` (mean best
    validation PSNR, dB) and ``Δval last 20%`` (mean gain in validation PSNR over the last
    fifth of the steps done, dB): near 0 means a plateau, clearly positive means training
    was still improving when the cap ended it. Empty when no run has these columns."""
    tidy = check_tidy(tidy)
    if "steps_done" not in tidy.columns:
        return pd.DataFrame()
    runs = tidy[(tidy["status"] == "done") & tidy["steps_done"].notna()].drop_duplicates(SETTING + ["method", "seed"])
    rows = []
    for key, group in _groups(runs, SETTING + ["method"]):
        key = dict(zip(SETTING + ["method"], key))
        rows.append({
            "setting": _setting_label(key, []), "method": key["method"], "seeds": len(group),
            "steps (cap)": f"{group['steps_done'].mean():.0f} ({group['steps_cap'].max():.0f})",
            "stopped early": f"{int(group['stopped_early'].astype(bool).sum())} of {len(group)}",
            "best step": f"{group['best_step'].mean():.0f}",
            "val PSNR": f"{group['val_psnr_best'].mean():.2f}",
            "Δval last 20%": f"{group['val_gain_tail'].mean():+.2f}",
        })
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- writing


def _notes(tidy: pd.DataFrame, papers: pd.DataFrame, n_boot: int, convention: str = "volume") -> str:
    """The notes under a study's tables: what the numbers mean, the sample, failures, sources."""
    done = tidy[(tidy["status"] == "done") & (tidy["region"] == "brain")]
    lines = [
        ("- Metrics: PSNR (dB) and SSIM of each test volume as one 3D image" if convention == "volume" else
         "- Metrics: the 2D papers' per-slice convention: 2D PSNR (dB) and SSIM of each slice along the "
         "slice axis, averaged "
         "over the slices with anatomy (brain: slices where the mask covers at least 1%, scored within the "
         "mask; whole volume: non-empty slices), then per subject as below") +
        "; data range 1.0 on volumes normalised to [0, 1]; SSIM as Wang et al. 2004 (Gaussian window, "
        "sigma 1.5), equal to scikit-image's `structural_similarity(gaussian_weights=True, sigma=1.5, "
        "use_sample_covariance=False)`. Brain: over the foreground mask; whole volume: over every voxel.",
        "- mean ± std: mean over seeds of the per-seed mean over test subjects ± the subject-to-subject "
        "standard deviation (ddof 1, over each subject's mean over seeds). (seed ± s): the seed-to-seed "
        "standard deviation of the per-seed means, shown when a method ran with several seeds.",
        f"- Δ PSNR vs best [95% CI]: mean paired difference (method − best, dB) over the (subject, seed) "
        f"pairs both methods have, with a 95% percentile interval from {n_boot} two-level bootstrap "
        "replicates that resample subjects and seeds with replacement, independently. An interval "
        "that excludes 0 means the gap is larger than the subject and seed noise.",
    ]
    if "steps_done" in tidy.columns and tidy["steps_done"].notna().any():
        lines.append("- Training: each seed trains until validation PSNR (on the validation subject, never a test "
                     "one) has not gained 0.01 dB for `patience` validations, or to the step cap, and keeps the "
                     "weights of its best validation. Δval last 20%: the validation PSNR gained over the last fifth "
                     "of the steps done; clearly above 0 means the cap, not a plateau, ended training.")
    if "psnr_slices" in tidy.columns and convention == "volume":
        lines.append("- The 2D papers' per-slice convention (2D PSNR/SSIM per slice, averaged over slices "
                     "with anatomy) is in `summary.csv` (`psnr_slices_mean`, `ssim_slices_mean`) and "
                     "`per_subject.csv`.")
    if len(done):
        counts = done.groupby("method", sort=False).agg(subjects=("subject", "nunique"),
                                                        seeds=("seed", lambda s: s.nunique(dropna=False)))
        pairs = {(int(r.subjects), int(r.seeds)) for r in counts.itertuples()}
        if len(pairs) == 1:
            (n_sub, n_seed), = pairs
            lines.append(f"- Sample: n = {n_sub} test subjects × {n_seed} seed(s) per method.")
        else:
            lines.append("- Sample: " + "; ".join(f"{m}: {int(r.subjects)} subjects × {int(r.seeds)} seed(s)"
                                                  for m, r in counts.iterrows()) + ".")
    runs = tidy.drop_duplicates(["scenario", "contrast", "scale", "pairing", "method", "profile", "seed", "status"])
    for r in runs[runs["status"] == "failed"].itertuples():
        error = str(r.error).strip() if isinstance(r.error, str) and r.error.strip() else "no error recorded"
        where = f"{r.scenario} {r.contrast} x{r.scale} {r.pairing}"
        lines.append(f"- failed: {r.method}, {where}, seed {_seed_text(r.seed)}: {error}")
    for r in runs[runs["status"] == "n/a"].drop_duplicates(["scenario", "contrast", "method"]).itertuples():
        lines.append(f"- n/a: {r.method} does not support {r.scenario} ({r.pairing}).")
    for (source, note), _ in papers.groupby(["source", "note"], sort=False, dropna=False):
        lines.append(f"- paper numbers: {source}" + (f" — {note}" if isinstance(note, str) and note else ""))
    return "## Notes\n\n" + "\n".join(lines) + "\n"


def _flat(table: pd.DataFrame, sep: str) -> pd.DataFrame:
    """One header row, ``"<setting><sep><quantity>"`` (Markdown cannot nest headers)."""
    flat = table.copy()
    flat.columns = [f"{a}{sep}{b}" for a, b in table.columns]
    return flat


def _seed_text(seed) -> str:
    if isinstance(seed, (float, np.floating)) and np.isfinite(seed) and float(seed).is_integer():
        return str(int(seed))
    return str(seed)


def _regions(tidy: pd.DataFrame) -> list[str]:
    present = set(tidy["region"].dropna())
    return [r for r in REGIONS if r in present]


def write_study_tables(
    tidy: pd.DataFrame,
    papers: pd.DataFrame | None,
    out_dir: str | os.PathLike,
    *,
    study: str,
    convention: str = "volume",
    n_boot: int = 2000,
    seed: int = 0,
) -> list[Path]:
    """Write ``<study>.md``, ``<study>.csv`` and ``<study>.tex`` under `out_dir`; return the paths.

    The Markdown has a title, the brain-region table, the whole-volume table (headers
    ``"<setting>: <quantity>"``) and the notes (what ± and the interval mean, subjects and
    seeds, each failed run with its error, the metric convention, the papers' sources). The
    CSV holds both tables without markup, one row per (region, method), columns
    ``"<setting> | <quantity>"``. `convention` as in `comparison_table` (the notes say which). The LaTeX file has one
    ``table`` per region.
    """
    tidy = check_tidy(tidy)
    sub = tidy[tidy["study"] == study]
    if sub.empty:
        raise ValueError(f"no rows for study {study!r}; studies: {list(dict.fromkeys(tidy['study']))}")
    papers = check_papers(papers)
    papers = papers[papers["study"] == study]
    out_dir = Path(out_dir)
    regions = _regions(sub)
    kw = dict(n_boot=n_boot, seed=seed, convention=convention)
    title = f"# {study}: ours beside the paper" if len(papers) else f"# {study}"
    md = [title, ""]
    plain = {}
    tex = []
    for region in regions:
        cells = _comparison_cells(sub, papers, region=region, **kw)  # the bootstrap runs once per region
        md += [f"## {REGION_TITLES[region].capitalize()}", "",
               _flat(_style(*cells, "markdown"), ": ").to_markdown(), ""]
        plain[region] = _flat(_style(*cells, "none"), " | ")
        table = _style(*cells, "latex")
        caption = _latex(f"{study}, {REGION_TITLES[region]}, {CONVENTIONS[convention]}: "
                         "mean ± subject std over test subjects")
        tex.append(table.to_latex(multicolumn=True, multicolumn_format="c", escape=False, caption=caption,
                                  label=f"tab:{re.sub(r'[^A-Za-z0-9]+', '-', study)}-{region}"))
    training = training_table(sub)
    if not training.empty:
        md += ["## Training", "", "Where each learned method stopped (the definitions are in the notes).", "",
               training.to_markdown(index=False, disable_numparse=True), ""]
    md.append(_notes(sub, papers, n_boot, convention))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(study))
    paths = [out_dir / f"{stem}.md", out_dir / f"{stem}.csv", out_dir / f"{stem}.tex"]
    write_text(paths[0], "\n".join(md))
    with atomic_path(paths[1]) as tmp:
        pd.concat(plain, names=["region"]).to_csv(tmp)
    write_text(paths[2], "\n".join(tex))
    return paths


def write_summary(tidy: pd.DataFrame, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``summary.csv`` (`summary_table` of every study) and ``per_subject.csv`` (the tidy
    frame without its error column) under `out_dir`; return the two paths."""
    tidy = check_tidy(tidy)
    out_dir = Path(out_dir)
    paths = [out_dir / "summary.csv", out_dir / "per_subject.csv"]
    with atomic_path(paths[0]) as tmp:
        summary_table(tidy).to_csv(tmp, index=False, float_format="%.6g")
    with atomic_path(paths[1]) as tmp:
        tidy.drop(columns=["error"]).to_csv(tmp, index=False, float_format="%.6g")
    return paths
