"""Regression verdict between runs, or between two budgets of one run.

    python jobs/compare.py RUN_A RUN_B [RUN_C ...]      # each later run against RUN_A
    python jobs/compare.py RUN --budgets 576,64         # budget 64 against 576 inside RUN
    python jobs/compare.py RUN --paper                  # RUN beside the paper's matching table

Prints the verdict in one line, writes compare.md and plots (default: the last run's compare/).
Exit 0: every metric within tolerance, no row lost, no error gained; 1: regression; 2: bad input.
With --paper: prints the paper's table with the run's values beside it and a one-line summary
(mean absolute difference per method, the largest differences); exit 0, or 2 when no table matches.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.report.compare import verdict, write_comparison  # noqa: E402
from pipeline.report.content import Report  # noqa: E402
from pipeline.report.paper import summary  # noqa: E402
from pipeline.report.render_md import render_markdown  # noqa: E402
from pipeline.report.runs import read_run_info  # noqa: E402
from pipeline.report.tolerances import load_tolerances, run_tolerances  # noqa: E402
from pipeline.report.writer import load_tables, paper_section  # noqa: E402

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
    p.add_argument("--paper", action="store_true", help="print RUN beside the paper's matching table (one run)")
    return p.parse_args(argv)


def compare_with_paper(run: Path) -> int:
    """Print the run beside the paper's matching table and the summary line; 0, or 2 without a match."""
    tables = load_tables(run)
    if tables.paper is None:
        print(f"error: {run}: no paper table matches the run's model and budgets "
              "(Tables 1-3: LLaVA-1.5-7B, LLaVA-NeXT-7B, LLaVA-1.5-13B)", file=sys.stderr)
        return 2
    section = paper_section(tables.paper)
    print(render_markdown(Report(f"{tables.label} versus the paper", [], [section], tables.run_dir)))
    print(summary(tables.paper))
    return 0


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.paper:
        if len(args.runs) != 1 or args.budgets:
            print("error: --paper takes exactly one run and no --budgets", file=sys.stderr)
            return 2
        try:
            return compare_with_paper(args.runs[0])
        except (FileNotFoundError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
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
