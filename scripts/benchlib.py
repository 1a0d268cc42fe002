"""What every bench script shares: the machine description and appending to BENCHMARKS.md."""
from __future__ import annotations

import platform
import statistics
import time
from pathlib import Path

BENCHMARKS_MD = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def append_to_section(section: str, intro: str, block: str, path: Path = BENCHMARKS_MD) -> None:
    """Insert ``block`` at the end of ``section`` (a ``## `` heading) of ``path``, before the next
    ``## ``; the section, opened by ``intro``, is created at the end of the file when missing."""
    lines = path.read_text().splitlines() if path.exists() else ["# Benchmarks", ""]
    if section not in lines:
        if lines and lines[-1].strip():
            lines.append("")
        lines += [section, "", *intro.splitlines(), ""]
    start = lines.index(section) + 1
    end = next((i for i in range(start, len(lines)) if lines[i].startswith("## ")), len(lines))
    while end > start and not lines[end - 1].strip():
        end -= 1
    lines[end:end] = ["", *block.rstrip("\n").splitlines()]
    path.write_text("\n".join(lines).rstrip("\n") + "\n")


def median_seconds(fn, repeats: int, warmup: bool = True) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls, after one untimed warm-up call if ``warmup``."""
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
