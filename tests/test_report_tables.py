"""Report tables on a hand-made metrics table: headline choice, points, retention, aggregate Acc."""
from __future__ import annotations

import polars as pl
import pytest

from pipeline.report import headline
from pipeline.report.tables import aggregate, benchmark_table, format_number, headline_metrics, to_markdown

COLUMNS = ["benchmark", "method", "budget", "metric", "value", "n", "n_errors"]


def metrics_frame(rows) -> pl.DataFrame:
    """Metrics rows whose variant label is the method name."""
    frame = pl.DataFrame(rows, schema=COLUMNS, orient="row")
    return frame.insert_column(1, frame["method"].alias("variant"))


@pytest.fixture
def metrics() -> pl.DataFrame:
    # toyqa has no card in the benchmark registry: its first metric is the headline.
    return metrics_frame([
        ("toyqa", "full", 576, "accuracy", 0.80, 100, 0),
        ("toyqa", "full", 576, "yes_ratio", 0.50, 100, 0),
        ("toyqa", "icctp", 64, "accuracy", 0.72, 100, 2),
        ("toyqa", "icctp", 64, "yes_ratio", 0.40, 100, 2),
        ("toyqa", "cls", 64, "accuracy", 0.60, 100, 0),
        ("toyqa", "cls", 64, "yes_ratio", 0.45, 100, 0),
        ("mme", "full", 576, "cognition", 300.0, 50, 0),
        ("mme", "full", 576, "perception", 1500.0, 50, 0),
        ("mme", "icctp", 64, "cognition", 280.0, 50, 1),
        ("mme", "icctp", 64, "perception", 1200.0, 50, 1),
        ("mme", "cls", 64, "cognition", 250.0, 50, 0),
        ("mme", "cls", 64, "perception", 1000.0, 50, 0),
        ("mmvet", "full", 576, None, None, 20, 0),
        ("mmvet", "icctp", 64, None, None, 20, 3),
    ])


def test_headline_rows_values_and_retention(metrics):
    head = headline_metrics(metrics)
    rows = {(r["benchmark"], r["method"], r["budget"]): r for r in head.iter_rows(named=True)}
    assert set(rows) == {("toyqa", "full", 576), ("toyqa", "icctp", 64), ("toyqa", "cls", 64),
                         ("mme", "full", 576), ("mme", "icctp", 64), ("mme", "cls", 64)}
    assert rows[("toyqa", "icctp", 64)]["metric"] == "accuracy"
    assert rows[("mme", "icctp", 64)]["metric"] == "perception"
    assert rows[("toyqa", "icctp", 64)]["percent"] == pytest.approx(72.0)
    assert rows[("mme", "icctp", 64)]["percent"] == pytest.approx(60.0)  # 1200 / 2000 x 100
    assert rows[("toyqa", "icctp", 64)]["retention"] == pytest.approx(90.0)
    assert rows[("mme", "cls", 64)]["retention"] == pytest.approx(1000 / 1500 * 100)
    assert rows[("toyqa", "full", 576)]["retention"] == pytest.approx(100.0)
    assert rows[("toyqa", "icctp", 64)]["n_errors"] == 2


def test_aggregate_is_plain_mean_with_mme_scaled(metrics):
    agg = aggregate(headline_metrics(metrics))
    got = {(r["method"], r["budget"]): r for r in agg.iter_rows(named=True)}
    assert agg["method"].to_list() == ["full", "cls", "icctp"]
    assert got[("full", 576)]["acc"] == pytest.approx((80.0 + 75.0) / 2)
    assert got[("icctp", 64)]["acc"] == pytest.approx((72.0 + 60.0) / 2)
    assert got[("cls", 64)]["acc"] == pytest.approx((60.0 + 50.0) / 2)
    assert got[("icctp", 64)]["retention"] == pytest.approx(66.0 / 77.5 * 100)
    assert got[("icctp", 64)]["benchmarks"] == 2


def test_aggregate_retention_null_without_full_on_a_benchmark():
    m = metrics_frame([
        ("toyqa", "full", 576, "accuracy", 0.8, 10, 0),
        ("toyqa", "icctp", 64, "accuracy", 0.4, 10, 0),
        ("other", "icctp", 64, "accuracy", 0.5, 10, 0),
    ])
    got = {r["method"]: r for r in aggregate(headline_metrics(m)).iter_rows(named=True)}
    assert got["icctp"]["acc"] == pytest.approx(45.0)
    assert got["icctp"]["retention"] is None


def test_declared_headline_wins_over_first_metric(metrics, monkeypatch):
    monkeypatch.setattr(headline, "declared_headline", lambda card: "yes_ratio" if card == "toyqa" else None)
    head = headline_metrics(metrics)
    row = head.filter((pl.col("benchmark") == "toyqa") & (pl.col("method") == "icctp")).row(0, named=True)
    assert row["metric"] == "yes_ratio"
    assert row["retention"] == pytest.approx(80.0)


def test_entry_reusing_the_mme_card_is_scaled_like_mme():
    m = metrics_frame([("mme_subset", "full", 576, "perception", 1000.0, 10, 0)])
    assert headline_metrics(m, {"mme_subset": "mme"})["percent"].to_list() == [pytest.approx(50.0)]
    assert headline_metrics(m, {"mme_subset": "other"})["percent"].to_list() == [pytest.approx(100000.0)]


def test_benchmark_table_in_points_with_counts(metrics):
    head = headline_metrics(metrics)
    table = benchmark_table(metrics, head, "toyqa")
    assert table.columns == ["variant", "method", "budget", "accuracy", "yes_ratio", "n", "errors", "retention"]
    assert table.rows() == [
        ("full", "full", 576, pytest.approx(80.0), pytest.approx(50.0), 100, 0, pytest.approx(100.0)),
        ("cls", "cls", 64, pytest.approx(60.0), pytest.approx(45.0), 100, 0, pytest.approx(75.0)),
        ("icctp", "icctp", 64, pytest.approx(72.0), pytest.approx(40.0), 100, 2, pytest.approx(90.0)),
    ]
    mme = benchmark_table(metrics, head, "mme")
    assert mme.filter(pl.col("method") == "icctp")["perception"].to_list() == [1200.0]
    assert to_markdown(table, {"retention": 1}, 2).splitlines() == [
        "| variant | method | budget | accuracy | yes_ratio | n | errors | retention |",
        "|---|---|---|---|---|---|---|---|",
        "| full | full | 576 | 80 | 50 | 100 | 0 | 100 |",
        "| cls | cls | 64 | 60 | 45 | 100 | 0 | 75 |",
        "| icctp | icctp | 64 | 72 | 40 | 100 | 2 | 90 |",
    ]


def test_format_number():
    assert format_number(40.0, 0) == "40"
    assert format_number(1510.0) == "1510"
    assert format_number(0.123456) == "0.1235"
    assert format_number(None) == "–"
    assert format_number(float("nan")) == "–"
    assert format_number(7) == "7"
    assert format_number(0.000604, 3) == "0.000604"
    assert format_number(0.0, 3) == "0"


def test_duplicate_metric_rows_are_an_error():
    m = metrics_frame([("toyqa", "full", 576, "accuracy", 0.8, 10, 0),
                       ("toyqa", "full", 576, "accuracy", 0.7, 10, 0)])
    with pytest.raises(ValueError, match="duplicate"):
        headline_metrics(m)


def test_mme_without_perception_is_left_out_of_the_aggregate():
    m = metrics_frame([("mme", "full", 576, "cognition", 300.0, 10, 0),
                       ("toyqa", "full", 576, "accuracy", 0.5, 10, 0)])
    head = headline_metrics(m)
    assert head.filter(pl.col("benchmark") == "mme")["percent"].to_list() == [None]
    agg = aggregate(head)
    assert agg["acc"].to_list() == [50.0] and agg["benchmarks"].to_list() == [1]


def test_relabelled_unpruned_variant_is_still_the_retention_baseline(metrics):
    relabelled = metrics.with_columns(pl.col("variant").replace({"full": "llava-576", "cls": "fasterv"}))
    head = headline_metrics(relabelled)
    toy = {r["variant"]: r["retention"] for r in head.filter(pl.col("benchmark") == "toyqa").iter_rows(named=True)}
    assert toy == {"llava-576": pytest.approx(100.0), "fasterv": pytest.approx(75.0), "icctp": pytest.approx(90.0)}
    agg = aggregate(head)
    assert agg["variant"].to_list() == ["llava-576", "fasterv", "icctp"]
    assert agg.filter(pl.col("variant") == "icctp")["retention"].to_list() == \
        aggregate(headline_metrics(metrics)).filter(pl.col("variant") == "icctp")["retention"].to_list()


def test_off_budget_note_names_the_variants_whose_kept_count_differs():
    import polars as pl

    from pipeline.report.writer import off_budget_note

    table = pl.DataFrame({"variant": ["full", "cls", "prumerge_plus", "cls"], "method": ["full", "cls", "prumerge_plus",
                                                                                     "cls"],
                          "budget": [576, 64, 64, 64], "n_visual": [576.0, 576.0, 576.0, 2880.0],
                          "n_kept": [576.0, 64.0, 238.5, 320.0]})
    assert [block.text for block in off_budget_note(table)] == [
        "Visual tokens that reached the language model differ from the budget (mean `n_kept`) for: prumerge_plus@64: 238.5."]
