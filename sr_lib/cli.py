"""Command line: `sr-lib report | tables | train | apply | check | runs | bench | methods | studies | scenarios`.

argparse lives here only; every command calls a library function. Errors print one line
(`sr-lib: error: <file>: <problem>`) and exit 1, as do `check` and `apply` when a file
fails; usage errors exit 2 (argparse, and a method option no selected method has), an
interrupt 130; `--debug` shows the traceback. What a command produces (tables, listings) goes
to stdout; progress goes through `logging` to stderr: INFO by default, `-q` warnings only,
`-v` debug. During `report` a status line says which study, run and step is training,
redrawn in place on a terminal (`ConsoleHandler`). `--device` picks where torch computes.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence

from sr_lib import __version__
from sr_lib.paths import environment
from sr_lib.profiles import PROFILES

PAIRINGS = ["paired", "misaligned", "unpaired"]
EXECUTORS = ["local", "slurm"]  # `report --executor`: sr_lib.pipeline.EXECUTORS (not imported here: it loads torch)
DEVICE_HELP = "where torch computes: auto (CUDA when available, else CPU), cpu, cuda or cuda:N"


class UsageError(ValueError):
    """A command line that cannot mean anything: exit 2, as argparse's own errors."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Every option's default appended to its help (not where the help already says it, nor
    for flags and options without one); descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help = action.help or ""
        if "default" in help or action.nargs == 0 or action.default in (None, [], argparse.SUPPRESS):
            return help
        return super()._get_help_string(action)


def device_name(text: str) -> str:
    """argparse type of --device: auto, cpu, cuda or cuda:N (whether this machine has it is
    checked when the command runs, as an error that exits 1)."""
    name = text.strip().lower()
    kind, _, index = name.partition(":")
    if name in ("auto", "cpu", "cuda") or (kind == "cuda" and index.isdigit()):
        return name
    raise argparse.ArgumentTypeError(f"{text!r}: expected auto, cpu, cuda or cuda:N")


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES), help="sizes of everything")
    parser.add_argument("--dataset", default="phantom", choices=["phantom", "ixi", "folder"], help="data source")
    parser.add_argument("--root", default=None, help="data folder for --dataset ixi/folder")
    parser.add_argument("--scale", type=int, default=2, help="SR factor where the scenario takes one (2 or 4)")


def switch_setting(text: str) -> str:
    """argparse type of --switch: NAME=on|off for a switch of `sr_lib.train.Switches`."""
    from sr_lib.train import Switches

    try:
        Switches.parse([text])
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text.strip()


def _add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", type=device_name, default="auto", help=DEVICE_HELP)
    parser.add_argument("--switch", dest="switches", action="append", type=switch_setting, default=[],
                        metavar="NAME=on|off",
                        help="a speed switch of the GPU path (repeatable): amp, channels_last, channels_last_3d, "
                             "preload, cudnn_benchmark, fused_adam, compile; see README 'Performance and scale'")


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--study", nargs="+", default=None, dest="studies", metavar="STUDY",
                        help="studies to run (default: all; see `sr-lib studies`)")
    parser.add_argument("--seeds", type=int, default=None, help="training seeds per run (default: each study's own)")
    parser.add_argument("--out", default=None, help="reports folder (default: reports/, or $SR_LIB_REPORTS)")


def _add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """--pairing, --schedule and --option: what varies every study's runs (new run identities)."""
    parser.add_argument("--pairing", default=None, choices=PAIRINGS,
                        help="every run's pairing of HR and LR training data (default: each study's own; methods that "
                             "cannot train on it are n/a)")
    parser.add_argument("--schedule", default=None, metavar="NAME",
                        help="learning-rate schedule of every net method: constant, step, linear or cosine "
                             "(default: each method's own); the same as --option schedule=NAME")
    parser.add_argument("--option", action="append", default=[], metavar="[METHOD.]NAME=VALUE",
                        help="a method option for every run whose method has it, or with METHOD. for that method's "
                             "runs only, e.g. --option steps=200 --option srgan.adversarial_weight=0.01; repeatable; VALUE is "
                             "read as JSON when it parses (see `sr-lib methods NAME` for names and defaults)")


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    _add_data_arguments(parser)
    parser.add_argument("--seed", type=int, default=0, help="training seed (initialisation, patch sampling)")
    parser.add_argument("--force", action="store_true", help="retrain even if an identical finished run exists")


DESCRIPTIONS = {
    "report": "Run the studies (see `sr-lib studies`): train every run that is not cached, side by side in worker\n"
              "processes, execute the notebooks with papermill, write reports/tables, reports/figures and\n"
              "reports/index.md. A finished run of the same identity (resolved options, data) is reused;\n"
              "--pairing, --schedule and --option vary the runs (new identities). A status line on stderr says\n"
              "which study, run and step is training.",
    "tables": "Rebuild every study's tables and figures from the runs already made (nothing trains); give the\n"
              "--pairing/--schedule/--option of the report that made them.",
    "train": "Train and evaluate one method on one setting into a run folder under --out (reused when an\n"
             "identical run finished; resumed from its checkpoint when one was interrupted).",
    "apply": "Super-resolve NIfTI files with a trained run; each output keeps its input's geometry and units.",
    "check": "Validate NIfTI files or a dataset folder with the rules `apply` uses; exit 1 if any file has a problem.",
    "bench": "Training and inference speed of every method on this machine (a table; numbers never go into tests).",
    "runs": "List, show or clean run folders.",
    "methods": "The registered methods and presets; with a NAME, that method's options and defaults\n"
               "(the names `--option` takes).",
    "studies": "The studies `sr-lib report` runs: scenarios x contrasts x methods x seeds.",
    "scenarios": "The degradation presets, with the paper's values and ours.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sr-lib", formatter_class=HelpFormatter,
                                     description="MRI super-resolution / inpainting workbench. "
                                                 "`sr-lib COMMAND --help` describes each command.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("-v", "--verbose", dest="log_level", action="store_const", const=logging.DEBUG,
                        default=logging.INFO, help="log debug messages too")
    parser.add_argument("-q", "--quiet", dest="log_level", action="store_const", const=logging.WARNING,
                        help="log warnings and errors only (no progress)")
    parser.add_argument("--version", action="version", version=f"sr-lib {__version__}")
    common = argparse.ArgumentParser(add_help=False)  # lets --debug, -v and -q follow the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    common.add_argument("-v", "--verbose", dest="log_level", action="store_const", const=logging.DEBUG,
                        default=argparse.SUPPRESS, help="log debug messages too")
    common.add_argument("-q", "--quiet", dest="log_level", action="store_const", const=logging.WARNING,
                        default=argparse.SUPPRESS, help="log warnings and errors only (no progress)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common], formatter_class=HelpFormatter,
                              description=DESCRIPTIONS.get(name, help))

    report = command("report", help="run the studies (training what is not cached) and regenerate reports/")
    _add_data_arguments(report)
    report.add_argument("--force", action="store_true", help="retrain even if an identical finished run exists")
    _add_study_arguments(report)
    _add_variant_arguments(report)
    _add_device_argument(report)
    report.add_argument("--dry-run", action="store_true", help="list which runs would train and which are reused, then stop")
    report.add_argument("--workers", type=int, default=None,
                        help="runs trained side by side (default: 1 on a GPU, else one per CPU core up to 4)")
    report.add_argument("--executor", default=None, choices=EXECUTORS,
                        help="train each run as a submitit job: slurm (sbatch; --out must be on storage the nodes "
                             "share) or local (processes on this machine, --workers at a time); default: none, "
                             "runs train here as above")
    report.add_argument("--executor-option", action="append", default=[], dest="executor_options",
                        metavar="NAME=VALUE",
                        help="a submitit option for the jobs, e.g. slurm_partition=gpu, gpus_per_node=1, "
                             "timeout_min=240, cpus_per_task=8, mem_gb=32; repeatable; VALUE is read as an "
                             "integer, a float or else text")

    tables = command("tables", help="rebuild tables and figures from the runs already made (nothing trains)")
    _add_data_arguments(tables)
    _add_study_arguments(tables)
    _add_variant_arguments(tables)
    _add_device_argument(tables)

    train = command("train", help="train and evaluate one method (one run folder)")
    _add_run_arguments(train)
    train.add_argument("--method", required=True, help="a method or preset (see `sr-lib methods`)")
    train.add_argument("--scenario", default="kspace-2x", help="a degradation preset (see `sr-lib scenarios`)")
    train.add_argument("--contrast", default="T2", help="T1, T2 or PD")
    train.add_argument("--pairing", default="paired", choices=PAIRINGS, help="how HR and LR training data correspond")
    train.add_argument("--dims", type=int, choices=[2, 3], default=None, help="2D (slice-wise) or 3D where the method has both")
    train.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                       help="a method option, e.g. --option schedule=linear --option patience=0; repeatable "
                            "(see `sr-lib methods NAME`)")
    train.add_argument("--out", default="runs", help="folder that holds run folders")
    _add_device_argument(train)
    train.add_argument("--distributed", action="store_true",
                       help="one run over the processes torchrun started (`torchrun --nproc_per_node=N -m sr_lib train "
                            "--distributed ...`): each takes a share of every batch; rank 0 writes the run folder, "
                            "which must be on storage every process sees")


    apply = command("apply", help="apply a trained run to NIfTI files, folders or globs")
    _add_device_argument(apply)
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
    bench.add_argument("--profile", default="quick", choices=sorted(PROFILES), help="sizes of nets, patches and volumes")
    bench.add_argument("--methods", nargs="+", default=None, metavar="METHOD", help="methods to time (default: all)")
    bench.add_argument("--scenario", dest="scenarios", nargs="+", default=["SR-B"], metavar="SCENARIO",
                       help="degradation presets that set the grids (e.g. SR-B kspace-2x2x2: 3D nets on the latter)")
    bench.add_argument("--switches", dest="ablate", action="store_true",
                       help="instead: time each method's training step with each speed switch flipped, against the "
                            "defaults (written as switches-<profile>-<device>)")
    _add_device_argument(bench)
    bench.add_argument("--out", default=None, help="folder for bench-<profile>-<device>.csv and .md (default: reports/bench)")

    runs = command("runs", help="list, show or clean run folders")
    runs_sub = runs.add_subparsers(dest="runs_command", required=True, metavar="ACTION")

    def action(name: str, help: str) -> argparse.ArgumentParser:
        return runs_sub.add_parser(name, help=help, description=help[0].upper() + help[1:] + ".", parents=[common],
                                   formatter_class=HelpFormatter)

    listing = action("list", help="one line per run folder: what it ran, its status, brain PSNR/SSIM")
    listing.add_argument("root", nargs="?", default="runs", help="folder that holds run folders")
    show = action("show", help="a run's config, where training stopped, and its scores")
    show.add_argument("run", help="a run folder")
    clean = action("clean", help="remove run folders that did not finish (interrupted or failed)")
    clean.add_argument("root", nargs="?", default="runs", help="folder that holds run folders")
    clean.add_argument("--yes", action="store_true", help="remove them (without it, only list what would go)")

    methods = command("methods", help="list the registered methods and presets, or one method's options")
    methods.add_argument("name", nargs="?", help="show this method's options and defaults")
    methods.add_argument("--all", action="store_true", dest="all_options",
                         help="show every method's options and defaults (so does -v)")
    command("studies", help="list the studies the report runs")
    command("scenarios", help="list the degradation presets")
    return parser


def cmd_methods(args: argparse.Namespace) -> int:
    import dataclasses

    from sr_lib.methods import METHODS, method_class
    from sr_lib.profiles import get_profile

    chosen = {args.name: method_class(args.name)} if getattr(args, "name", None) else METHODS
    every = getattr(args, "all_options", False) or args.log_level <= logging.DEBUG
    for name, cls in chosen.items():
        dims = "/".join(f"{d}D" for d in cls.support.dims)
        grids = "+".join(cls.support.grids)
        print(f"{name:<17} {dims:<6} {grids:<11} {'learned' if cls.learned else 'classic':<8} {cls.summary}")
        if cls.preset_of:
            settings = ", ".join(f"{k}={v!r}" for k, v in cls.preset_options.items())
            print(f"{'':<19}preset of {cls.preset_of}: {settings}")
        if every or getattr(args, "name", None):
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
    """`NAME=VALUE` pairs; VALUE is read as JSON when it parses (numbers, true, null), else as
    text. A pair without '=' or a name given twice is a `UsageError`."""
    import json

    options = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--option {item!r}: expected NAME=VALUE")
        if name in options:
            raise UsageError(f"--option {name} is given twice")
        try:
            options[name] = json.loads(value)
        except json.JSONDecodeError:
            options[name] = value
    return options


def variant_options(args: argparse.Namespace) -> dict:
    """The method options of --option and --schedule (checked against the training engine's schedules)."""
    options = parse_options(args.option)
    if args.schedule is not None:
        from sr_lib.train import SCHEDULES

        if args.schedule not in SCHEDULES:
            raise UsageError(f"--schedule {args.schedule!r}: choose one of {', '.join(SCHEDULES)}")
        if "schedule" in options:
            raise UsageError("give the schedule once: --schedule or --option schedule=...")
        options["schedule"] = args.schedule
    return options


def cmd_scenarios(_: argparse.Namespace) -> int:
    from sr_lib.degrade import SCENARIOS

    for name, scenario in SCENARIOS.items():
        # name + description [paper], then the paper's values and ours on indented lines
        print(f"{name:<13} {scenario.describe()}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sr_lib import distributed
    from sr_lib.report import check_options
    from sr_lib.runs import RunConfig, run_experiment
    from sr_lib.train import Runtime

    options = parse_options(args.option)
    check_options([args.method], options)
    config = RunConfig(method=args.method, scenario=args.scenario, contrast=args.contrast.upper(), scale=args.scale,
                       pairing=args.pairing, profile=args.profile, seed=args.seed, dataset=args.dataset,
                       root=args.root, dims=args.dims, options=options)
    if args.distributed:  # one run over the processes torchrun started; a one-line error without it
        launch = distributed.process_group(args.device)
    else:
        launch = contextlib.nullcontext(Runtime.auto(args.device))
    with launch as runtime:
        result = run_experiment(config, args.out, force=args.force, runtime=runtime,
                                progress=args.log_level <= logging.INFO and sys.stderr.isatty())
    if not runtime.is_main:  # rank 0 reports the run
        return 0 if result.status == "done" else 1
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


def executor_options(items: Sequence[str]) -> dict:
    """--executor-option `NAME=VALUE` pairs: VALUE as an int, else a float, else text (submitit
    checks names and types). A pair without '=' or a name given twice is a `UsageError`."""
    options: dict = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise UsageError(f"--executor-option {item!r}: expected NAME=VALUE")
        if name in options:
            raise UsageError(f"--executor-option {name} is given twice")
        for kind in (int, float, str):
            with contextlib.suppress(ValueError):
                options[name] = kind(value)
                break
    return options


def cmd_report(args: argparse.Namespace) -> int:
    from sr_lib.pipeline import run_report

    executor_parameters = executor_options(args.executor_options)
    if executor_parameters and args.executor is None:
        raise UsageError("--executor-option needs --executor local or slurm")
    result = run_report(studies=args.studies, profile=args.profile, dataset=args.dataset, root=args.root,
                        scale=args.scale, seeds=args.seeds, pairing=args.pairing, options=variant_options(args),
                        force=args.force, out=args.out, dry_run=args.dry_run, workers=args.workers, device=args.device,
                        progress=args.log_level <= logging.INFO, executor=args.executor,
                        executor_parameters=executor_parameters)
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
                 scale=args.scale, seeds=args.seeds, pairing=args.pairing, options=variant_options(args),
                 device=args.device)
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
    from pathlib import Path

    import pandas as pd

    from sr_lib.bench import benchmark, benchmark_switches, write_bench
    from sr_lib.paths import reports_dir
    from sr_lib.train import pick_device

    measure = benchmark_switches if args.ablate else benchmark
    tables = [measure(args.methods, profile=args.profile, scenario=scenario, device=args.device)
              for scenario in args.scenarios]
    table = pd.concat(tables, ignore_index=True)
    table.attrs = tables[0].attrs
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    out = Path(args.out) if args.out else reports_dir() / "bench"
    for path in write_bench(table, out, profile=args.profile, device=str(pick_device(args.device)),
                            kind="switches" if args.ablate else "bench"):
        logging.getLogger("sr_lib.bench").info("wrote %s", path)
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

STATUS_INTERVAL_S = 30.0  # off a terminal, a status line is printed after this long without any other line


class ConsoleFormatter(logging.Formatter):
    """Plain lines: INFO as the message; others prefixed with their level; records from
    outside sr_lib name their logger."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        where = "" if record.name.split(".")[0] == "sr_lib" else f"[{record.name}] "
        if record.levelno == logging.INFO:
            return where + message
        return f"{record.levelname.lower()}: {where}{message}"


class ConsoleHandler(logging.Handler):
    """Log lines on stderr (looked up per record, so a replaced `sys.stderr` is followed).

    A record with `status` "update" (see `sr_lib.pipeline`) is the live status line: on a
    terminal it is redrawn in place with `\\r` and other lines print above it; elsewhere it is
    printed only after `STATUS_INTERVAL_S` without any other line. A record with status "end"
    closes it and prints as a normal line."""

    def __init__(self, stream=None) -> None:
        super().__init__()
        self._stream = stream
        self.live = ""  # the status line on the terminal now
        self.last_line = time.monotonic()

    @property
    def stream(self):
        return self._stream or sys.stderr

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text, kind, stream = self.format(record), getattr(record, "status", None), self.stream
            tty = stream.isatty()
            if kind == "update" and tty:
                width = max(shutil.get_terminal_size().columns - 1, 20)
                self.live = text if len(text) <= width else text[: width - 1] + "…"
                stream.write("\r" + self.live + "\x1b[K")
            elif kind == "update":
                if time.monotonic() - self.last_line >= STATUS_INTERVAL_S:
                    stream.write(text + "\n")
                    self.last_line = time.monotonic()
            else:
                if tty and self.live:
                    stream.write("\r\x1b[K")
                stream.write(text + "\n")
                self.last_line = time.monotonic()
                if kind == "end":
                    self.live = ""
                elif tty and self.live:
                    stream.write(self.live + "\x1b[K")
            stream.flush()
        except Exception:  # logging must never take the command down
            self.handleError(record)

    def close_status(self) -> None:
        """Leave the live status line where it is and move below it (before an error message)."""
        if self.live:
            self.stream.write("\n")
            self.stream.flush()
            self.live = ""


@contextlib.contextmanager
def console_logging(level: int) -> Iterator[ConsoleHandler]:
    """For the block: sr_lib's loggers at `level`, every other library's at WARNING, Python
    warnings included, all through one `ConsoleHandler` to stderr; restored afterwards."""
    root, ours = logging.getLogger(), logging.getLogger("sr_lib")
    saved = root.level, ours.level
    handler = ConsoleHandler()
    handler.setFormatter(ConsoleFormatter())
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    ours.setLevel(level)
    logging.captureWarnings(True)
    try:
        yield handler
    finally:
        handler.close_status()
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(saved[0])
        ours.setLevel(saved[1])


@contextlib.contextmanager
def command_environment(args: argparse.Namespace) -> Iterator[None]:
    """For the command: check that --device exists on this machine (a ValueError naming it,
    exit 1) and export it as `$SR_LIB_DEVICE`, which 'auto' follows in this process, its
    workers and the notebook kernels (and --switch likewise as `$SR_LIB_SWITCHES`); without progress to show (-q, or stderr not a terminal),
    `$TQDM_DISABLE` so that no progress bars clutter the log."""
    values = {}
    device = getattr(args, "device", "auto")
    if device != "auto":
        from sr_lib.train import DEVICE_ENV, check_device_name, pick_device

        # SLURM jobs take their nodes' devices: the login node need not have the one named
        check_device_name(device) if getattr(args, "executor", None) == "slurm" else pick_device(device)
        values[DEVICE_ENV] = device
    if getattr(args, "switches", None):
        from sr_lib.train import SWITCHES_ENV, Switches

        values[SWITCHES_ENV] = Switches.parse(args.switches, Switches.from_env()).changed()
    if args.log_level > logging.INFO or not sys.stderr.isatty():
        values["TQDM_DISABLE"] = "1"
    with environment(**values):
        yield


def _is_usage_error(err: Exception) -> bool:
    """A `UsageError`, or a method option no selected method has (`sr_lib.report.OptionError`)."""
    report = sys.modules.get("sr_lib.report")  # loaded whenever it raised
    return isinstance(err, UsageError) or (report is not None and isinstance(err, report.OptionError))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with console_logging(args.log_level) as console:
        try:
            with command_environment(args):
                return COMMANDS[args.command](args)
        except KeyboardInterrupt:
            console.close_status()
            print("sr-lib: interrupted; finished work and checkpoints are kept, rerun to resume", file=sys.stderr)
            return 130
        except BrokenPipeError:  # stdout closed early (`sr-lib runs list | head`): stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 1
        except Exception as err:  # one line for users, the traceback with --debug
            if args.debug:
                raise
            console.close_status()
            text = str(err.args[0]) if isinstance(err, KeyError) and err.args else str(err)  # KeyError quotes its message
            message = text.strip().splitlines()[0] if text.strip() else type(err).__name__
            if _is_usage_error(err):
                print(f"sr-lib {args.command}: error: {message}", file=sys.stderr)
                return 2
            print(f"sr-lib: error: {message}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(main())
