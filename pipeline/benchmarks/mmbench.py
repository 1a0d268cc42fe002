"""MMBench dev (English): hint line, the options present, the MCQ suffix; circular accuracy.

The split carries every circular rotation of a question as its own row, ``index + r·1,000,000``;
a question counts only if all its rotations are answered right. All rotations show the same
image, so the image is named by ``index % 1,000,000``. Options and hints left empty in the
source TSV arrive as null, NaN or the string ``"nan"``: all three mean absent.
"""
from __future__ import annotations

import polars as pl

from pipeline.benchmarks.base import IMAGE, INT, MCQ_ANSWER, STRING, Benchmark, options_block, present, with_targets

ROTATION = 1_000_000
OPTIONS = ("A", "B", "C", "D")
TARGETS = pl.Struct({"index": pl.Int64, "answer": pl.String, **{o: pl.String for o in OPTIONS}})


class MMBench(Benchmark):
    name = "mmbench"
    hf_id = "lmms-lab/MMBench"
    config = "en"
    split = "dev"
    columns = {"index": INT, "question": STRING, "hint": STRING, "answer": STRING, "image": IMAGE,
               **{o: STRING for o in OPTIONS}}
    id_column = "index"
    image_id_column = "index"
    headline = "circular_accuracy"
    suffix = MCQ_ANSWER

    def image_id(self, row, image):
        return str(row["index"] % ROTATION)

    def prompt(self, row):
        hint = f"{row['hint']}\n" if present(row["hint"]) else ""
        options = [(o, row[o]) for o in OPTIONS if present(row.get(o))]
        return f"{hint}{row['question'] or ''}{options_block(options)}{self.suffix}"

    def targets(self, row):
        return {"index": row["index"], "answer": row["answer"],
                **{o: row[o] if present(row.get(o)) else None for o in OPTIONS},
                "category": row.get("category"), "l2_category": row.get("L2-category")}

    def score(self, df):
        from pipeline.evaluators.mcq import circular_accuracy

        return {"circular_accuracy": circular_accuracy(with_targets(df, TARGETS))}
