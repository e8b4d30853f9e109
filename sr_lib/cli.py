"""Command line: `sr-lib report | train | apply | check | methods | scenarios`.

argparse lives here only; every command calls a library function. Errors print one line
(`sr-lib: error: <file>: <problem>`) and exit 2; `--debug` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from sr_lib.profiles import PROFILES


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="quick", choices=sorted(PROFILES), help="sizes of everything (default quick)")
    parser.add_argument("--dataset", default="phantom", choices=["phantom", "ixi", "folder"], help="data source (default phantom)")
    parser.add_argument("--root", default=None, help="data folder for --dataset ixi/folder")
    parser.add_argument("--scale", type=int, default=2, help="SR factor where the scenario takes one (2 or 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--force", action="store_true", help="retrain even if an identical finished run exists")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sr-lib", description="MRI super-resolution / inpainting workbench")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    common = argparse.ArgumentParser(add_help=False)  # lets --debug follow the command too
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, parents=[common])

    report = command("report", help="run the notebooks with papermill and regenerate reports/")
    _add_run_arguments(report)
    report.add_argument("--methods", nargs="+", default=None, help="default: every registered method")
    report.add_argument("--scenarios", nargs="+", default=["kspace-2x", "SR-B"])
    report.add_argument("--contrasts", nargs="+", default=["T2"])
    report.add_argument("--out", default=None, help="reports folder (default reports/)")

    train = command("train", help="train and evaluate one method (one run folder)")
    _add_run_arguments(train)
    train.add_argument("--method", required=True)
    train.add_argument("--scenario", default="kspace-2x")
    train.add_argument("--contrast", default="T2")
    train.add_argument("--pairing", default="paired", choices=["paired", "misaligned", "unpaired"])
    train.add_argument("--schedule", default="constant", choices=["constant", "step", "linear", "cosine"])
    train.add_argument("--out", default="runs", help="folder that holds run folders (default runs/)")

    apply = command("apply", help="apply a trained run to NIfTI files, folders or globs")
    apply.add_argument("--run", required=True, help="a run folder (from `sr-lib train` or reports/runs/...)")
    apply.add_argument("inputs", nargs="+", help="NIfTI files, folders or globs")
    apply.add_argument("--out", required=True, help="output folder")

    check = command("check", help="validate NIfTI files or a dataset folder")
    check.add_argument("paths", nargs="+", help="NIfTI files, folders or globs")

    bench = command("bench", help="training and inference speed of every method on this machine")
    bench.add_argument("--profile", default="quick", choices=sorted(PROFILES))
    bench.add_argument("--methods", nargs="+", default=None)
    bench.add_argument("--scenario", default="SR-B")
    bench.add_argument("--device", default="auto", help="auto, cpu or cuda")
    bench.add_argument("--out", default=None, help="also write the table to this CSV")

    command("methods", help="list the registered methods")
    command("scenarios", help="list the degradation presets")
    return parser


def cmd_methods(_: argparse.Namespace) -> int:
    from sr_lib.methods import METHODS

    for name, spec in METHODS.items():
        dims = "/".join(f"{d}D" for d in spec.dims)
        print(f"{name:<10} {dims:<6} {'learned' if spec.learned else 'classic':<8} {spec.summary}")
    return 0


def cmd_scenarios(_: argparse.Namespace) -> int:
    from sr_lib.degrade import SCENARIOS

    for name, scenario in SCENARIOS.items():
        print(f"{name:<13} {scenario.description}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from sr_lib.runs import RunConfig, run_experiment

    config = RunConfig(method=args.method, scenario=args.scenario, contrast=args.contrast.upper(), scale=args.scale,
                       pairing=args.pairing, profile=args.profile, seed=args.seed, dataset=args.dataset,
                       root=args.root, schedule=args.schedule)
    result = run_experiment(config, args.out, force=args.force)
    if result.status != "done":
        print(f"sr-lib: run failed: {result.error} (see {result.folder}/status.json)", file=sys.stderr)
        return 1
    means = result.metrics[["psnr", "ssim"]].agg(["mean", "std"])
    print(f"{result.folder}\n  PSNR {means.loc['mean', 'psnr']:.2f} ± {means.loc['std', 'psnr']:.2f} dB, "
          f"SSIM {means.loc['mean', 'ssim']:.4f} ± {means.loc['std', 'ssim']:.4f} over {len(result.metrics)} test subjects")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from sr_lib.pipeline import run_report

    index = run_report(profile=args.profile, methods=args.methods, scenarios=args.scenarios,
                       contrasts=[c.upper() for c in args.contrasts], dataset=args.dataset, root=args.root,
                       scale=args.scale, seed=args.seed, force=args.force, out=args.out)
    print(f"report written: {index}")
    return 0


def cmd_apply(args: argparse.Namespace) -> int:
    from sr_lib.apply import apply_run

    outcomes = apply_run(args.run, args.inputs, args.out)
    for outcome in outcomes:
        print(f"ok      {outcome.input} -> {outcome.output}" if outcome.ok else f"FAILED  {outcome.error}")
    failed = sum(not o.ok for o in outcomes)
    print(f"{len(outcomes) - failed} written, {failed} failed")
    return 1 if failed or not outcomes else 0


def cmd_check(args: argparse.Namespace) -> int:
    from sr_lib.check import check_paths

    table = check_paths(args.paths)
    print(table.to_string(index=False))
    problems = int((table["problem"] != "").sum())
    print(f"{len(table)} files checked, {problems} with problems")
    return 1 if problems else 0


def cmd_bench(args: argparse.Namespace) -> int:
    from sr_lib.atomic import atomic_path
    from sr_lib.bench import benchmark

    table = benchmark(args.methods, profile=args.profile, scenario=args.scenario, device=args.device)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    if args.out:
        with atomic_path(args.out) as tmp:
            table.to_csv(tmp, index=False)
    return 0


COMMANDS = {"methods": cmd_methods, "scenarios": cmd_scenarios, "train": cmd_train, "report": cmd_report,
            "apply": cmd_apply, "check": cmd_check, "bench": cmd_bench}


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
        return 2


if __name__ == "__main__":
    sys.exit(main())
