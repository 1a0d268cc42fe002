"""Build the offline fixtures (tiny LLaVA models + benchmark-shaped datasets) into $ICCTP_CACHE.

    .venv/bin/python scripts/make_fixtures.py            # build if missing, print the root
    .venv/bin/python scripts/make_fixtures.py --force    # rebuild from scratch
    .venv/bin/python scripts/make_fixtures.py --out DIR  # build a fresh copy into DIR (for byte comparisons)
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.fixtures import build_fixtures, ensure_fixtures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache is complete")
    parser.add_argument("--out", type=Path, help="build into this (non-existing) directory instead of the cache")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.out is not None:
        if args.out.exists():
            parser.error(f"--out {args.out} already exists")
        build_fixtures(args.out)
        root = args.out
    else:
        root = ensure_fixtures(force=args.force)
    print(f"fixtures ready at {root} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
