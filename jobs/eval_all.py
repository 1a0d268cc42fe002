"""Evaluate pruning methods × budgets × benchmarks for one model; write a run directory.

    python jobs/eval_all.py                                    # embedded default: the toy world (docs/toyworld.md)
    python jobs/eval_all.py --manifest manifests/smoke.yaml --budget 64   # ten benchmark schemas, random tiny model
    ray job submit --working-dir . -- python jobs/eval_all.py --manifest manifests/llava15_7b_paper.yaml

Connects to the running Ray cluster when there is one, else starts a local Ray. Rerun with the
same --output to resume a killed run. Exit status 3: a node was lost and the run stalled
(``pipeline.watch``); the message names the node, and a rerun with the same --output finishes it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.manifest import ManifestError, load_manifest  # noqa: E402
from pipeline.run import run_eval  # noqa: E402
from pipeline.summary import summary_lines  # noqa: E402
from pipeline.watch import NodeLostError  # noqa: E402


def _csv(kind):
    return lambda s: [kind(x) for x in s.split(",") if x.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", default="manifests/toyworld.yaml", type=Path)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--budget", type=int, help="one visual-token budget (overrides the manifest's budgets)")
    g.add_argument("--budgets", type=_csv(int), help="comma-separated budgets, e.g. 128,64,32")
    p.add_argument("--methods", type=_csv(str), help="keep only these method labels (comma-separated)")
    p.add_argument("--benchmarks", type=_csv(str), help="keep only these benchmarks (comma-separated)")
    p.add_argument("--limit", type=int, help="first N rows of each benchmark")
    p.add_argument("--output", type=Path, help="run directory (default runs/<manifest>-<time>)")
    p.add_argument("--num-gpus", type=float, help="GPUs per model actor (overrides compute.num_gpus)")
    p.add_argument("--actors", type=int, help="model actors (overrides compute.vlm_actors)")
    p.add_argument("--batch-size", type=int, help="samples per model batch (overrides compute.batch_size)")
    p.add_argument("--retry-errors", action="store_true",
                   help="on resume, run the rows that ended in an error again (their error rows are replaced)")
    p.add_argument("--address", help="Ray address; 'local' forces a local Ray (default: cluster if running)")
    return p.parse_args(argv)


NODE_LOST = 3


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
        manifest = manifest.restrict(
            budgets=[args.budget] if args.budget is not None else args.budgets,
            methods=args.methods,
            benchmarks=args.benchmarks,
            compute={"num_gpus": args.num_gpus, "vlm_actors": args.actors, "batch_size": args.batch_size},
        )
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = args.output or Path("runs") / f"{manifest.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.perf_counter()
    try:
        result = run_eval(manifest, output, limit=args.limit, address=args.address, retry_errors=args.retry_errors)
    except NodeLostError as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        os._exit(NODE_LOST)  # now: a clean shutdown would wait on the actors of the lost node
    for line in summary_lines(result.metrics):
        print(line)
    print(f"{result.rows_total} prediction rows ({result.rows_written} new) in {time.perf_counter() - start:.0f} s")
    print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
