"""Which metric of a benchmark is its headline, and how it enters the paper's aggregate "Acc.".

Reports and comparisons show metrics in *points*, the paper's units: the evaluators store
accuracies, F1 and ratios as fractions in [0, 1], shown x 100; MME's scores (per category 0-200,
perception 0-2000, cognition 0-800) are points already. The aggregate "Acc." is the plain mean
over benchmarks of the headline metric in points, with MME entered as perception / 2000 x 100
(docs/architecture.md, "The paper's aggregate").
"""
from __future__ import annotations

MME = "mme"
MME_PERCEPTION = "perception"
MME_PERCEPTION_MAX = 2000.0


def declared_headline(card: str) -> str | None:
    """The headline metric the benchmark card declares (None for a name with no card)."""
    from pipeline.benchmarks import BENCHMARKS

    return BENCHMARKS[card].headline if card in BENCHMARKS else None


def headline_metric(benchmark: str, metrics: list[str], card: str | None = None) -> str:
    """The headline metric of ``benchmark`` among the ``metrics`` it reported.

    ``card``: the benchmark card scoring that entry (a manifest entry may reuse a card; default:
    the entry's name). The card's declared headline is used when it is among ``metrics``
    (MME: always ``perception``, which the aggregate needs); otherwise the first metric.
    """
    if not metrics:
        raise ValueError(f"benchmark {benchmark!r} reported no metric")
    card = card or benchmark
    declared = MME_PERCEPTION if card == MME else declared_headline(card)
    return declared if declared in metrics else metrics[0]


def point_scale(card: str) -> float:
    """Factor from a stored metric value of a benchmark ``card`` to points."""
    return 1.0 if card == MME else 100.0


def aggregate_percent(card: str, metric: str, value: float) -> float | None:
    """Stored ``value`` of a ``card``'s headline ``metric`` on the 0-100 scale of "Acc.".

    None (left out of the aggregate) for MME without ``perception`` (a subset of cognition only).
    """
    if card == MME:
        return value / MME_PERCEPTION_MAX * 100.0 if metric == MME_PERCEPTION else None
    return value * point_scale(card)


def run_cards(run_info: dict) -> dict[str, str]:
    """Benchmark entry -> card from ``run.json``'s manifest (an entry's ``benchmark`` key)."""
    entries = (run_info.get("manifest") or {}).get("benchmarks") or {}
    if not isinstance(entries, dict):
        return {}
    return {name: (spec or {}).get("benchmark") or name for name, spec in entries.items()}
