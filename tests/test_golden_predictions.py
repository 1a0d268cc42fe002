"""The adapter's predictions do not change under refactoring: every method on both tiny model
families equals ``tests/data/golden_predictions.json`` (written by :func:`predictions` at commit
ba28470, before the adapter was restructured), field by field."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_model_llava import sample
from test_model_llava_next import next_sample

pytestmark = pytest.mark.slow
GOLDEN = Path(__file__).parent / "data" / "golden_predictions.json"
FIELDS = ("prediction", "n_visual", "n_kept", "n_text", "kept_indices", "kept_clusters", "noun_phrases",
          "center_source", "error")
CASES = {
    "llava15": (8, sample, [("full", 576), ("icctp", 64), ("icctp", 16), ("cls", 16), ("random", 16),
                            ("visionzip_proj", 16), ("dart_pre", 16), ("fastv", 16)]),
    "llava_next": (4, next_sample, [("full", 576), ("icctp", 64), ("cls", 64), ("fastv", 64)]),
}


def predictions(vlm, kind: str) -> dict[str, list[dict]]:
    """``{"kind/method@budget": [fields per sample]}`` for the drawn samples of ``kind`` on ``vlm``."""
    count, make, variants = CASES[kind]
    samples = [make(i) for i in range(count)]  # noun spans from the pipeline's extractor
    out = {}
    for method, budget in variants:
        results = vlm.generate(samples, method=method, budget=budget, max_new_tokens=6)
        out[f"{kind}/{method}@{budget}"] = [{f: r.get(f) for f in FIELDS} for r in results]
    return out


@pytest.mark.parametrize("kind", list(CASES))
def test_predictions_equal_the_golden_file(kind, request):
    golden = {k: v for k, v in json.loads(GOLDEN.read_text()).items() if k.startswith(kind + "/")}
    got = predictions(request.getfixturevalue(f"{kind}_vlm"), kind)
    assert sorted(got) == sorted(golden)
    for key, rows in golden.items():
        for i, (want, have) in enumerate(zip(rows, got[key], strict=True)):
            assert have == want, (key, i, [f for f in FIELDS if have[f] != want[f]])
