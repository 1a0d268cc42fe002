"""Regression verdict between runs, or between two budgets of one run.

    python jobs/compare.py RUN_A RUN_B [RUN_C ...]      # each later run against RUN_A
    python jobs/compare.py RUN --budgets 576,64         # budget 64 against 576 inside RUN

Prints the verdict in one line, writes compare.md and plots (default: the last run's compare/).
Exit 0: every metric within tolerance, no row lost, no error gained; 1: regression; 2: bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.report.compare import verdict, write_comparison  # noqa: E402
from pipeline.report.runs import read_run_info  # noqa: E402
from pipeline.report.tolerances import load_tolerances, run_tolerances  # noqa: E402

DEFAULT_TOLERANCES = Path(__file__).resolve().parents[1] / "manifests" / "tolerances.yaml"


def budget_pair(text: str) -> tuple[int, int]:
    parts = [int(x) for x in text.split(",")]
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"expected REFERENCE,BUDGET (e.g. 576,64), got {text!r}")
    return parts[0], parts[1]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories; the first is the baseline")
    p.add_argument("--budgets", type=budget_pair, help="REFERENCE,BUDGET inside a single run")
    p.add_argument("--tolerances", type=Path,
                   help="YAML with tolerances (top level or a `tolerances:` section, e.g. a manifest); default: "
                        "the last run's manifest section when set, else manifests/tolerances.yaml")
    p.add_argument("--output", type=Path, help="where compare.md and plots go (default: LAST_RUN/compare)")
    p.add_argument("--no-plots", action="store_true", help="write compare.md only")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        tol = (load_tolerances(args.tolerances) if args.tolerances else
               run_tolerances(read_run_info(args.runs[-1])) or load_tolerances(DEFAULT_TOLERANCES))
        out = args.output or args.runs[-1] / "compare"
        comparisons, path = write_comparison(args.runs, tol, out, args.budgets, with_plots=not args.no_plots)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(verdict(comparisons))
    print(f"comparison: {path}")
    return 1 if any(c.regressed for c in comparisons) else 0


if __name__ == "__main__":
    sys.exit(main())
