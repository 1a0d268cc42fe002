"""Build the offline fixtures (tiny LLaVA models + benchmark-shaped datasets) into $ICCTP_CACHE.

    .venv/bin/python scripts/make_fixtures.py            # build if missing, print the root
    .venv/bin/python scripts/make_fixtures.py --force    # rebuild from scratch
    .venv/bin/python scripts/make_fixtures.py --out DIR  # build a fresh copy into DIR (for byte comparisons)
    .venv/bin/python scripts/make_fixtures.py --toyworld-seed 7 --toyworld-questions 1000 --toyworld-out DIR
                                                          # DIR/vqav2.parquet + DIR/pope.parquet, fresh toy-world questions
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipeline.fixtures import TOYWORLD_QUESTIONS, TOYWORLD_SEED, build_fixtures, ensure_fixtures, toyworld


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="rebuild even if the cache is complete")
    parser.add_argument("--out", type=Path, help="build into this (non-existing) directory instead of the cache")
    parser.add_argument("--toyworld-out", type=Path, help="write toy-world vqav2.parquet and pope.parquet here (only)")
    parser.add_argument("--toyworld-seed", type=int, default=TOYWORLD_SEED)
    parser.add_argument("--toyworld-questions", type=int, default=TOYWORLD_QUESTIONS, help="questions per benchmark")
    args = parser.parse_args()
    start = time.perf_counter()
    if args.toyworld_out is not None:
        paths = toyworld.write_tables(args.toyworld_out, args.toyworld_seed, args.toyworld_questions)
        print(f"toy world (seed {args.toyworld_seed}, {args.toyworld_questions} questions each): "
              f"{', '.join(str(p) for p in paths.values())} ({time.perf_counter() - start:.1f} s)")
        return
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
