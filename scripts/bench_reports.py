"""Time the report builders on synthetic data: ``write_report`` (report.md + report.html, plots, the
paper comparison) on a Table-1-shaped run, and the nightly trend page on a long series.

    python scripts/bench_reports.py --samples 2000 --nights 30 --out /tmp/bench_reports

The run has the ten benchmarks of Table 1 and the variants of manifests/paper/table1_llava15_7b.yaml
(full + 4 methods x 3 budgets); the series has ``--nights`` nights x ten benchmarks x 19 variants
(full + 6 methods x 3 budgets). Writing the synthetic data is not timed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.fixtures.synthetic_nightly import write_synthetic_series  # noqa: E402
from pipeline.fixtures.synthetic_run import write_synthetic_run  # noqa: E402
from pipeline.report import write_report  # noqa: E402
from pipeline.report.paper import PAPER_BENCHMARKS  # noqa: E402
from pipeline.report.trend import write_trend_page  # noqa: E402

TEN = tuple(PAPER_BENCHMARKS.values())
TABLE1_METHODS = ("full", "fastv", "dart", "visionzip", "icctp")
SERIES_METHODS = ("full", "icctp", "cls", "random", "visionzip", "dart", "fastv")


def mib(path: Path) -> str:
    return f"{path.stat().st_size / 2**20:.2f} MiB"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=2000, help="questions per benchmark of the Table-1 run")
    p.add_argument("--nights", type=int, default=30)
    p.add_argument("--out", type=Path, default=Path("/tmp/bench_reports"))
    args = p.parse_args(argv)
    shutil.rmtree(args.out, ignore_errors=True)

    run = write_synthetic_run(args.out / "table1", benchmarks=TEN, methods=TABLE1_METHODS, budgets=(576, 128, 64, 32),
                              n_samples=args.samples)
    parts = sum(1 for _ in (run / "predictions").rglob("*.parquet"))
    start, cpu = time.perf_counter(), time.process_time()
    md = write_report(run)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"report: {args.samples} questions x 10 benchmarks x 13 variants ({parts} part files, "
          f"{args.samples * 10 * 13:,} prediction rows): {took:.1f} s wall, {cpu:.1f} s CPU; report.md {mib(md)}, "
          f"report.html {mib(run / 'report.html')}")

    root = args.out / "nightly"
    write_synthetic_series(root, nights=args.nights, regression=args.nights // 2, benchmarks=TEN,
                           methods=SERIES_METHODS, budgets=(576, 128, 64, 32), n_samples=2, reports=False, trend=False)
    start, cpu = time.perf_counter(), time.process_time()
    page = write_trend_page(root)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"trend page: {args.nights} nights x 10 benchmarks x 19 variants: {took:.1f} s wall, {cpu:.1f} s CPU; "
          f"index.html {mib(page)}")
    print(f"load average {os.getloadavg()[0]:.1f} (shared machine: wall times are inflated, CPU times less so)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
