"""The ten benchmarks of the LLaVA-1.5 protocol: registry and sample loader.

    BENCHMARKS["vqav2"].hf_id                  # card data: HF id / config / split, columns, headline
    get_benchmark("pope").score(df)            # metrics of a prediction frame
    for s in iter_samples("mme", data_files=fixture_data_files("mme")): ...

``iter_samples`` loads a split with ``datasets.load_dataset`` (local Parquet files when
``data_files`` is given, else the hub id, overridable), checks its schema before yielding
anything, and yields one common-schema sample per row (see ``base``), rows of one image adjacent.
"""
from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

from pipeline.benchmarks.base import CARDS, Benchmark, SchemaError

__all__ = ["BENCHMARKS", "Benchmark", "SchemaError", "fixture_data_files", "get_benchmark", "iter_samples"]

# Every module of this package is a card (or shared code); importing it registers its cards.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

BENCHMARKS: dict[str, Benchmark] = {name: card() for name, card in sorted(CARDS.items())}


def get_benchmark(name: str) -> Benchmark:
    """The card registered as ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return BENCHMARKS[name]
    except KeyError:
        raise ValueError(f"unknown benchmark {name!r}; known: {', '.join(BENCHMARKS)}") from None


def iter_samples(benchmark: str | Benchmark, *, hf_id: str | None = None, config: str | None = None,
                 split: str | None = None, data_files: Any = None, streaming: bool = False,
                 revision: str | None = None, limit: int | None = None, skip: int = 0) -> Iterator[dict]:
    """Common-schema samples of one benchmark split, at most ``limit``, without the first ``skip``
    (counted within the limit; skipped rows are not converted).

    ``data_files`` (a path, list or ``{split: path}``; GQA: ``{"instructions": ..., "images": ...}``)
    reads local Parquet through ``load_dataset("parquet", ...)``; otherwise ``hf_id``/``config``/
    ``split`` (default: the card's) name the hub dataset, read at ``revision`` (a pinned dataset
    commit) when given. The schema is validated before the first
    sample (``SchemaError``). In memory, rows of one image are made adjacent; with
    ``streaming=True`` the dataset's own order is kept.
    """
    card = get_benchmark(benchmark) if isinstance(benchmark, str) else benchmark
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    rows = card.load_rows(hf_id=hf_id, config=config, split=split, data_files=data_files, streaming=streaming,
                          revision=revision)
    for n, (index, row) in enumerate(rows):
        if limit is not None and n >= limit:
            return
        if n >= skip:
            yield card.to_sample(row, index)


def fixture_data_files(name: str) -> dict[str, str]:
    """``data_files`` of the offline fixture of benchmark ``name`` (built on first use)."""
    from pipeline.fixtures import dataset_files

    get_benchmark(name)
    if name == "gqa":
        return {part: dataset_files(f"gqa_{part}")["test"] for part in ("instructions", "images")}
    return dataset_files(name)
