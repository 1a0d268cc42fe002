"""(Re)write a run's report.md and report.html, plots and kept-token heatmaps, or a nightly series' trend page.

    python jobs/report.py RUN --heatmaps 8                  # 8 ICCTP rows at the smallest budget
    python jobs/report.py RUN --heatmaps 4 --method cls --budget 64
    python jobs/report.py --nightly runs/nightly            # runs/nightly/index.html
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.report.trend import write_trend_page  # noqa: E402
from pipeline.report.writer import write_report  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path, nargs="?", help="run directory written by jobs/eval_all.py")
    p.add_argument("--nightly", type=Path, metavar="DIR", help="write DIR/index.html, the trend page of a nightly series")
    p.add_argument("--heatmaps", type=int, default=0, help="kept-token heatmaps to draw (run/heatmaps/)")
    p.add_argument("--variant", help="variant label of the heatmap rows (default: an icctp variant when present)")
    p.add_argument("--budget", type=int, help="budget of the heatmap rows (default: the smallest)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    if (args.run is None) == (args.nightly is None):
        print("error: give either a run directory or --nightly DIR", file=sys.stderr)
        return 2
    if args.nightly is not None:
        if not args.nightly.is_dir():
            print(f"error: {args.nightly} is not a directory", file=sys.stderr)
            return 2
        print(f"trend page: {write_trend_page(args.nightly)}")
        return 0
    if args.heatmaps < 0:
        print("error: --heatmaps must be >= 0", file=sys.stderr)
        return 2
    try:
        report = write_report(args.run, heatmaps=args.heatmaps, heatmap_variant=args.variant,
                              heatmap_budget=args.budget)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"report: {report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
