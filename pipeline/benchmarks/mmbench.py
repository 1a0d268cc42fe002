"""MMBench dev (English): hint line, the options offered, the MCQ suffix; circular accuracy.

The split carries every circular rotation of a question as its own row, ``index + r·1,000,000``;
a question counts only if all its rotations are answered right. All rotations show the same
image, so the image is named by ``index % 1,000,000``. ``index`` is an integer or, as on the hub's
English split, a string of one (cast to int). Options end at the first absent one (null, NaN, "",
"nan" or "none"), in the prompt and in the scorer alike; hints left empty arrive as null, NaN or
"nan". Scored by VLMEvalKit's circular evaluation with its exact matching (``can_infer``, no LLM
fallback): ``pipeline.evaluators.mmbench``.
"""
from __future__ import annotations

import polars as pl

from pipeline.benchmarks.base import IMAGE, INT, MCQ_ANSWER, STRING, Benchmark, options_block, present, with_targets
from pipeline.evaluators.mmbench import ROTATION, offered_options

OPTIONS = ("A", "B", "C", "D")
TARGETS = pl.Struct({"index": pl.Int64, "answer": pl.String, **{o: pl.String for o in OPTIONS}})


def row_index(row) -> int:
    """The row's ``index`` as an int (the hub's English split stores it as a string)."""
    value = row["index"]
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"MMBench index {value!r} is not an integer")


class MMBench(Benchmark):
    name = "mmbench"
    hf_id = "lmms-lab/MMBench"
    config = "en"
    split = "dev"
    columns = {"index": (INT, STRING), "question": STRING, "hint": STRING, "answer": STRING, "image": IMAGE,
               **{o: STRING for o in OPTIONS}}
    id_column = "index"
    image_id_column = "index"
    headline = "circular_accuracy"
    suffix = MCQ_ANSWER

    def sample_id(self, row, index):
        return str(row_index(row))

    def image_id(self, row, image):
        return str(row_index(row) % ROTATION)

    def prompt(self, row):
        hint = f"{row['hint']}\n" if present(row["hint"]) else ""
        return f"{hint}{row['question'] or ''}{options_block(offered_options(row, OPTIONS))}{self.suffix}"

    def targets(self, row):
        offered = dict(offered_options(row, OPTIONS))
        return {"index": row_index(row), "answer": row["answer"], **{o: offered.get(o) for o in OPTIONS},
                "category": row.get("category"), "l2_category": row.get("L2-category")}

    def score(self, df):
        from pipeline.evaluators.mmbench import circular_accuracy

        return {"circular_accuracy": circular_accuracy(with_targets(df, TARGETS))}
