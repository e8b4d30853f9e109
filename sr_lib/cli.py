"""Command line: `sr-lib report | tables | train | apply | check | runs | bench | methods | studies | scenarios`.

argparse lives here only; every command calls a library function. Errors print one line
(`sr-lib: error: <file>: <problem>`) and exit 1, as do `check` and `apply` when a file
fails; usage errors exit 2 (argparse), an interrupt 130; `--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sr_lib import __version__
from sr_lib.profiles import PROFILES


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES), help="sizes of everything (default quick)")
    parser.add_argument("--dataset", default="phantom", choices=["phantom", "ixi", "folder"], help="data source (default phantom)")
    parser.add_argument("--root", default=None, help="data folder for --dataset ixi/folder")
    parser.add_argument("--scale", type=int, default=2, help="SR factor where the scenario takes one (2 or 4)")


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", nargs="+", default=None, dest="studies", help="studies (default: all; see `sr-lib studies`)")
    parser.add_argument("--seeds", type=int, default=None, help="training seeds per run (default: each study's own)")
    parser.add_argument("--out", default=None, help="reports folder (default reports/)")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    _add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="retrain even if an identical finished run exists")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sr-lib", description="MRI super-resolution / inpainting workbench")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action="version", version=f"sr-lib {__version__}")
    common = argparse.ArgumentParser(add_help=False)  # lets --debug follow the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    report = command("report", help="run the studies (training what is not cached) and regenerate reports/")
    _add_run_arguments(report)
    _add_study_arguments(report)
    report.add_argument("--dry-run", action="store_true", help="list which runs would train and which are reused, then stop")
    report.add_argument("--workers", type=int, default=None,
                        help="runs trained side by side (default: 1 on a GPU, else one per CPU core up to 4)")

    tables = command("tables", help="rebuild tables and figures from the runs already made (nothing trains)")
    _add_data_arguments(tables)
    _add_study_arguments(tables)

    train = command("train", help="train and evaluate one method (one run folder)")
    _add_run_arguments(train)
    train.add_argument("--method", required=True)
    train.add_argument("--scenario", default="kspace-2x")
    train.add_argument("--contrast", default="T2")
    train.add_argument("--pairing", default="paired", choices=["paired", "misaligned", "unpaired"])
    train.add_argument("--dims", type=int, choices=[2, 3], default=None, help="2D (slice-wise) or 3D where the method has both")
    train.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                       help="a method option, e.g. --option schedule=linear --option patience=0 (see `sr-lib methods -v`)")
    train.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")

    apply = command("apply", help="apply a trained run to NIfTI files, folders or globs")
    apply.add_argument("--run", required=True, help="a run folder (from `sr-lib train` or reports/runs/...)")
    apply.add_argument("inputs", nargs="+", help="NIfTI files, folders or globs")
    apply.add_argument("--out", required=True, help="output folder (outputs get BIDS-derivative names, "
                       "e.g. sub-01_desc-srcnnKspace2x_T2w.nii.gz)")
    apply.add_argument("--overwrite", action="store_true",
                       help="replace outputs an earlier apply wrote (without it, an existing output stops the batch "
                            "before anything is written; files sr_lib did not write are never replaced)")

    check = command("check", help="validate NIfTI files or a dataset folder")
    check.add_argument("paths", nargs="+", help="NIfTI files, folders or globs")

    bench = command("bench", help="training and inference speed of every method on this machine")
    bench.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    bench.add_argument("--methods", nargs="+", default=None)
    bench.add_argument("--scenario", default="SR-B")
    bench.add_argument("--device", default="auto", help="auto, cpu or cuda")
    bench.add_argument("--out", default=None, help="also write the table to this CSV")

    runs = command("runs", help="list, show or clean run folders")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True)
    listing = runs_sub.add_parser("list", help="one line per run folder: what it ran, its status, brain PSNR/SSIM")
    listing.add_argument("root", nargs="?", default="runs", help="folder that holds run folders (default runs/)")
    show = runs_sub.add_parser("show", help="a run's config, where training stopped, and its scores")
    show.add_argument("run", help="a run folder")
    clean = runs_sub.add_parser("clean", help="remove run folders that did not finish (interrupted or failed)")
    clean.add_argument("root", nargs="?", default="runs", help="folder that holds run folders (default runs/)")
    clean.add_argument("--yes", action="store_true", help="remove them (without it, only list what would go)")

    methods = command("methods", help="list the registered methods and presets, or one method's options")
    methods.add_argument("name", nargs="?", help="show this method's options and defaults")
    methods.add_argument("-v", "--verbose", action="store_true", help="show every method's options and defaults")
    command("studies", help="list the studies the report runs")
    command("scenarios", help="list the degradation presets")
    return parser


def cmd_methods(args: argparse.Namespace) -> int:
    import dataclasses

    from sr_lib.methods import METHODS, method_class
    from sr_lib.profiles import get_profile

    chosen = {args.name: method_class(args.name)} if getattr(args, "name", None) else METHODS
    for name, cls in chosen.items():
        dims = "/".join(f"{d}D" for d in cls.support.dims)
        grids = "+".join(cls.support.grids)
        print(f"{name:<17} {dims:<6} {grids:<11} {'learned' if cls.learned else 'classic':<8} {cls.summary}")
        if cls.preset_of:
            settings = ", ".join(f"{k}={v!r}" for k, v in cls.preset_options.items())
            print(f"{'':<19}preset of {cls.preset_of}: {settings}")
        if getattr(args, "verbose", False) or getattr(args, "name", None):
            quick = cls.Options.profile_defaults(get_profile("quick"))
            for field in dataclasses.fields(cls.Options):
                by_profile = f"  (quick profile: {quick[field.name]!r})" if field.name in quick else ""
                print(f"{'':<19}{field.name} = {field.default!r}{by_profile}")
    return 0


def cmd_studies(_: argparse.Namespace) -> int:
    from sr_lib.studies import STUDIES

    for name, study in STUDIES.items():
        print(f"{name:<12} {study.title}: {', '.join(study.scenarios)} x {', '.join(study.contrasts)} x "
              f"{len(study.methods)} methods x {study.seeds} seeds")
    return 0


def parse_options(items: Sequence[str]) -> dict:
    """`NAME=VALUE` pairs; VALUE is read as JSON when it parses (numbers, true, null), else as text."""
    import json

    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--option {item!r}: expected NAME=VALUE")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


def cmd_scenarios(_: argparse.Namespace) -> int:
    from sr_lib.degrade import SCENARIOS

    for name, scenario in SCENARIOS.items():
        # name + description [paper], then the paper's values and ours on indented lines
        print(f"{name:<13} {scenario.describe()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sr_lib.runs import RunConfig, run_experiment

    config = RunConfig(method=args.method, scenario=args.scenario, contrast=args.contrast.upper(), scale=args.scale,
                       pairing=args.pairing, profile=args.profile, seed=args.seed, dataset=args.dataset,
                       root=args.root, dims=args.dims, options=parse_options(args.option))
    result = run_experiment(config, args.out, force=args.force)
    if result.status == "n/a":
        print(f"sr-lib: {args.method} does not apply here: {result.error}", file=sys.stderr)
        return 1
    if result.status != "done":
        print(f"sr-lib: run failed: {result.error} (see {result.folder}/status.json)", file=sys.stderr)
        return 1
    means = result.scores("brain")[["psnr", "ssim"]].agg(["mean", "std"])
    print(f"{result.folder}\n  brain: PSNR {means.loc['mean', 'psnr']:.2f} ± {means.loc['std', 'psnr']:.2f} dB, "
          f"SSIM {means.loc['mean', 'ssim']:.4f} ± {means.loc['std', 'ssim']:.4f} over {len(result.scores())} test subjects")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sr_lib.pipeline import run_report

    result = run_report(studies=args.studies, profile=args.profile, dataset=args.dataset, root=args.root,
                        scale=args.scale, seeds=args.seeds, force=args.force, out=args.out, dry_run=args.dry_run,
                        workers=args.workers)
    if args.dry_run:
        print(result.to_string(index=False))
        counts = result["run"].value_counts().to_dict()
        print(f"{counts.get('train', 0)} to train, {counts.get('reuse', 0)} reused, {counts.get('n/a', 0)} not applicable")
        return 0
    print(f"report written: {result}")
    return 0


def cmd_tables(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sr_lib.paths import reports_dir
    from sr_lib.pipeline import write_tables
    from sr_lib.studies import get_studies

    out = Path(args.out) if args.out else reports_dir()
    write_tables(get_studies(args.studies), out, profile=args.profile, dataset=args.dataset, root=args.root,
                 scale=args.scale, seeds=args.seeds)
    print(f"tables and figures rebuilt under {out / 'tables'} and {out / 'figures'}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    """Apply a run to every input; one line per file, skipped files named; exit 1 if any failed,
    nothing was found or an output exists without --overwrite (then nothing is written), 130
    when interrupted (the file being written is removed)."""
    from sr_lib.apply import apply_run, find_inputs, printable

    found = find_inputs(args.inputs, skip_outputs=True)
    for path, why in found.skipped:
        print(printable(f"skipped {path}: {why}"))
    try:
        outcomes = apply_run(args.run, args.inputs, args.out, found=found, overwrite=args.overwrite)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM via sr_lib.atomic.Terminated
        print(printable(f"sr-lib: apply interrupted ({err or 'Ctrl-C'}); the file being written was removed, "
                        f"finished outputs in {args.out} are kept"), file=sys.stderr)
        return 130
    for outcome in outcomes:
        if outcome.ok:
            print(printable(f"ok      {outcome.input} -> {outcome.output}" + (f" ({outcome.note})" if outcome.note else "")))
        else:
            print(printable(f"FAILED  {outcome.error}"))
    failed = sum(not o.ok for o in outcomes)
    print(f"{len(outcomes) - failed} written, {failed} failed" + ("" if outcomes else "; no inputs"))
    return 1 if failed or not outcomes else 0


def cmd_check(args: argparse.Namespace) -> int:
    """Print the check table, skipped files and warnings; exit 1 if any file has a problem."""
    from sr_lib.apply import printable
    from sr_lib.check import check_paths

    table = check_paths(args.paths)
    print(printable(table.to_string(index=False)))
    for skipped in table.attrs.get("skipped", []):
        print(printable(f"skipped {skipped}"))
    for row in table.itertuples():
        if row.problem.startswith("no NIfTI files found"):
            print(printable(row.problem))
        if row.warning:
            print(printable(f"warning {row.path}: {row.warning}"))
    problems = int((table["problem"] != "").sum())
    print(f"{len(table)} files checked, {problems} with problems")
    return 1 if problems or table.empty else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from sr_lib.atomic import atomic_path
    from sr_lib.bench import benchmark

    table = benchmark(args.methods, profile=args.profile, scenario=args.scenario, device=args.device)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    import json

    from sr_lib.storage import clean_runs, load_run, runs_table

    if args.runs_command == "list":
        table = runs_table(args.root)
        print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}") if len(table) else f"no run folders under {args.root}")
        return 0
    if args.runs_command == "show":
        run = load_run(args.run)
        print(json.dumps(run.config.to_dict(), indent=2, sort_keys=True))
        facts = [(k, run.info[k]) for k in ("steps_done", "best_step", "stopped_early", "seconds", "error") if k in run.info]
        print(f"status: {run.status}" + "".join(f", {k} {v}" for k, v in facts))
        for region in ("brain", "volume"):
            scores = run.scores(region)
            if len(scores):
                print(f"{region}: PSNR {scores['psnr'].mean():.2f} ± {scores['psnr'].std():.2f} dB, "
                      f"SSIM {scores['ssim'].mean():.4f} over {len(scores)} test subjects")
        return 0
    folders = clean_runs(args.root, dry_run=not args.yes)
    for folder in folders:
        print(f"{'removed' if args.yes else 'would remove'} {folder}")
    print(f"{len(folders)} unfinished run folder(s)" + ("" if args.yes or not folders else "; rerun with --yes to remove"))
    return 0


COMMANDS = {"methods": cmd_methods, "studies": cmd_studies, "scenarios": cmd_scenarios, "train": cmd_train, "report": cmd_report,
            "apply": cmd_apply, "check": cmd_check, "bench": cmd_bench, "runs": cmd_runs,
            "tables": cmd_tables}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        print("sr-lib: interrupted; finished work and checkpoints are kept, rerun to resume", file=sys.stderr)
        return 130
    except Exception as err:  # one line for users, the traceback with --debug
        if args.debug:
            raise
        text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)  # KeyError quotes its message
        message = text.strip().splitlines()[0] if text.strip() else type(err).__name__
        print(f"sr-lib: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
