"""Nightly regression (cron-friendly): budget sweep, comparison with the last good run, verdict.

    python jobs/nightly.py --manifest manifests/nightly.yaml                  # runs/nightly/...
    python jobs/nightly.py --manifest manifests/nightly.yaml --runs /data/nightly -- --limit 8

Runs jobs/eval_all.py over budgets 576/192/128/64/32 into RUNS/nightly-<UTC time>, compares it
with --baseline (default: RUNS/latest-good), writes compare.md there, moves RUNS/latest-good
to the new run only when green, and rebuilds the trend page RUNS/index.html. Arguments after `--`
go to eval_all.py.
Exit 0: green; 1: regression; 2: the evaluation failed or bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.nightly import EVAL_ALL, NIGHTLY_BUDGETS, run_nightly  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", type=Path, default=Path("manifests/nightly.yaml"))
    p.add_argument("--runs", type=Path, default=Path("runs/nightly"),
                   help="root of the nightly run directories and the latest-good pointer")
    p.add_argument("--baseline", type=Path, help="compare with this run instead of RUNS/latest-good")
    p.add_argument("--budgets", default=",".join(map(str, NIGHTLY_BUDGETS)), help="comma-separated budgets")
    p.add_argument("--tolerances", type=Path,
                   help="tolerances YAML (default: the manifest's tolerances section, else manifests/tolerances.yaml)")
    p.add_argument("--eval-script", type=Path, default=EVAL_ALL, help="evaluation entry point")
    p.add_argument("--no-plots", action="store_true", help="write compare.md without plots")
    p.add_argument("eval_args", nargs=argparse.REMAINDER, help="after --: arguments for eval_all.py")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    extra = args.eval_args[1:] if args.eval_args[:1] == ["--"] else args.eval_args
    try:
        budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
        result = run_nightly(args.manifest, args.runs, baseline=args.baseline, budgets=budgets,
                             tolerances=args.tolerances, extra_args=extra, eval_script=args.eval_script,
                             with_plots=not args.no_plots)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.verdict)
    print(f"run: {result.run_dir}  baseline: {result.baseline}")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
