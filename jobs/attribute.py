"""CIBA attribution over a manifest's benchmarks: attributions/ Parquet and attribution.md in a run directory.

    python jobs/attribute.py --manifest manifests/attribute_toyworld.yaml
    python jobs/attribute.py --manifest M --output runs/attr-A --limit 500     # rerun the same line to resume

Connects to the running Ray cluster when there is one, else starts a local Ray (as jobs/eval_all.py).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.attribution.run import run_attribution  # noqa: E402
from pipeline.manifest import ManifestError, load_manifest  # noqa: E402


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", default="manifests/attribute_toyworld.yaml", type=Path)
    p.add_argument("--benchmarks", type=lambda s: [x for x in s.split(",") if x], help="keep only these benchmarks")
    p.add_argument("--limit", type=int, help="first N rows of each benchmark")
    p.add_argument("--output", type=Path, help="run directory (default runs/<manifest>-attr-<time>)")
    p.add_argument("--num-gpus", type=float, help="GPUs per model actor (overrides compute.num_gpus)")
    p.add_argument("--actors", type=int, help="model actors (overrides compute.vlm_actors)")
    p.add_argument("--batch-size", type=int, help="questions per model batch (overrides compute.batch_size)")
    p.add_argument("--address", help="Ray address; 'local' forces a local Ray (default: cluster if running)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        manifest = load_manifest(args.manifest).restrict(
            benchmarks=args.benchmarks,
            compute={"num_gpus": args.num_gpus, "vlm_actors": args.actors, "batch_size": args.batch_size})
        if manifest.attribution is None:
            raise ManifestError(f"{args.manifest}: no attribution: section")
    except ManifestError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    output = args.output or Path("runs") / f"{manifest.name}-attr-{time.strftime('%Y%m%d-%H%M%S')}"
    start = time.perf_counter()
    result = run_attribution(manifest, output, limit=args.limit, address=args.address)
    print(f"{result.rows_total} attribution rows ({result.rows_written} new) in {time.perf_counter() - start:.0f} s")
    print(f"report: {result.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
