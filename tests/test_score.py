"""score: a run is scored only when every input row has exactly one row per variant."""
from __future__ import annotations

import json

import polars as pl
import pytest

from pipeline.manifest import Variant
from pipeline.stages.score import IncompleteRunError, check_complete, score_predictions


def preds(ids, method="full", budget=576, bench="pope", answers=None, errors=()):
    answers = answers or {i: "yes" for i in ids}
    return pl.DataFrame({
        "benchmark": bench, "variant": method, "method": method, "budget": pl.Series([budget] * len(ids), dtype=pl.Int32),
        "sample_id": ids,
        "prediction": [None if i in errors else "Yes" for i in ids],
        "error": [("ImageError: bad" if i in errors else None) for i in ids],
        "targets": [json.dumps({"answer": answers[i], "category": "random", "question_id": i}) for i in ids],
    })


def test_complete_run_passes():
    check_complete(preds(["1", "2"]), {"pope": ["1", "2"]}, [Variant("full", "full", 576)])


@pytest.mark.parametrize("ids, needle", [
    (["1"], r"1 of 2 rows, missing e.g. \['2'\]"),
    (["1", "2", "2"], "1 duplicate rows"),
    (["1", "3"], r"1 of 2 rows, missing e.g. \['2'\], 1 unknown ids e.g. \['3'\]"),
])
def test_holes_duplicates_and_foreign_ids_are_named(ids, needle):
    with pytest.raises(IncompleteRunError, match=needle):
        check_complete(preds(ids), {"pope": ["1", "2"]}, [Variant("full", "full", 576)])


def test_missing_variant_is_named():
    with pytest.raises(IncompleteRunError, match="pope icctp@64: 0 of 2"):
        check_complete(preds(["1", "2"]), {"pope": ["1", "2"]}, [Variant("full", "full", 576), Variant("icctp", "icctp", 64)])


def test_error_rows_count_as_wrong_and_are_counted():
    df = preds(["1", "2", "3", "4"], answers={"1": "yes", "2": "yes", "3": "no", "4": "yes"}, errors=("4",))
    m = score_predictions(df)
    acc = m.filter(pl.col("metric") == "random/accuracy")
    # predictions: yes, yes, yes, <error>; truth: yes, yes, no, yes -> 2 of 4 right
    assert acc["value"].to_list() == [0.5]
    assert acc["n"].to_list() == [4] and acc["n_errors"].to_list() == [1]


def test_unscored_benchmark_keeps_its_counts():
    df = pl.DataFrame({"benchmark": "mmvet", "variant": "full", "method": "full", "budget": pl.Series([576], dtype=pl.Int32),
                       "sample_id": ["v1"], "prediction": ["a cat"], "error": pl.Series([None], dtype=pl.String),
                       "targets": [json.dumps({"answer": "cat", "capability": "rec", "question": "What?"})]})
    m = score_predictions(df)
    assert m.height == 1 and m["metric"].to_list() == [None] and m["n"].to_list() == [1]


def keyword_judge(question, answer, prediction):
    """Test judge: 1 when the reference answer appears in the prediction."""
    return float(answer.lower() in prediction.lower())


def test_mmvet_is_scored_with_a_judge_from_the_manifest():
    from pipeline.manifest import BenchmarkSource
    from pipeline.stages.score import scoring_card

    card = scoring_card("mmvet", BenchmarkSource(judge="test_score:keyword_judge"))
    df = pl.DataFrame({"benchmark": "mmvet", "variant": "full", "method": "full", "budget": pl.Series([576] * 3, dtype=pl.Int32),
                       "sample_id": ["a", "b", "c"], "prediction": ["A cat.", "a dog", None],
                       "error": [None, None, "ImageError: bad"],
                       "targets": [json.dumps({"answer": a, "capability": "rec", "question": "What?"})
                                   for a in ("cat", "cat", "cat")]})
    m = score_predictions(df, {"mmvet": card})
    # judge: 1 (cat in "A cat."), 0, error row 0 -> 1/3
    assert m.filter(pl.col("metric") == "score")["value"].to_list() == [pytest.approx(1 / 3)]


def test_bad_judge_settings_are_named():
    from pipeline.manifest import BenchmarkSource, ManifestError
    from pipeline.stages.score import scoring_card

    with pytest.raises(ManifestError, match="benchmarks.mmvet.judge: cannot load"):
        scoring_card("mmvet", BenchmarkSource(judge="no_such_module:grade"))
    with pytest.raises(ManifestError, match="not graded by a judge"):
        scoring_card("vqav2", BenchmarkSource(judge="test_score:keyword_judge"))
