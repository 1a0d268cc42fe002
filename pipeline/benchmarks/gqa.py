"""GQA testdev-balanced: short-answer prompt, exact match (lower-case, trailing '.' removed).

Official scorer it equals: LLaVA-1.5's ``scripts/convert_gqa_for_eval.py`` followed by GQA's
``eval.py`` accuracy (``pipeline/evaluators/exact_match.py``).

The hub keeps questions and images in two configs (``*_instructions`` and ``*_images``) joined by
``imageId``. ``load_rows`` walks the questions grouped by image and reads each image's bytes
once, by position in the images table (in memory) or from one pass over it (streaming). Local
files come as ``data_files={"instructions": ..., "images": ...}``.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import datasets
import polars as pl

from pipeline.benchmarks.base import (
    IMAGE,
    SHORT_ANSWER,
    STRING,
    Benchmark,
    check_columns,
    grouped_order,
    image_bytes,
    open_split,
    resolve_split,
    with_targets,
)

TARGETS = pl.Struct({"answer": pl.String})
IMAGE_COLUMNS = {"id": STRING, "image": IMAGE}


class GQA(Benchmark):
    name = "gqa"
    hf_id = "lmms-lab/GQA"
    config = "testdev_balanced_instructions"
    split = "testdev"
    columns = {"id": STRING, "imageId": STRING, "question": STRING, "answer": STRING}
    id_column = "id"
    image_id_column = "imageId"
    headline = "accuracy"

    @property
    def images_config(self) -> str:
        return self.config.replace("_instructions", "_images")

    def prompt(self, row):
        return f"{row['question'] or ''}{SHORT_ANSWER}"

    def targets(self, row):
        return {"answer": row["answer"], "fullAnswer": row.get("fullAnswer")}

    def score(self, df):
        from pipeline.evaluators.exact_match import exact_match_frame

        return {"accuracy": exact_match_frame(with_targets(df, TARGETS)).mean()}

    def load_rows(self, *, hf_id: str | None = None, config: str | None = None, split: str | None = None,
                  data_files: Any = None, streaming: bool = False,
                  revision: str | None = None) -> Iterator[tuple[int, dict]]:
        """Question rows with ``image`` set to the encoded bytes of their ``imageId`` (None if absent)."""
        hf_id = hf_id or self.hf_id
        card = self.with_source(config=config) if config is not None else self
        if data_files is not None:
            if not isinstance(data_files, Mapping) or set(data_files) != {"instructions", "images"}:
                raise ValueError(f"benchmark 'gqa': data_files must be {{'instructions': ..., 'images': ...}}, "
                                 f"got {data_files!r}")
            sources = [resolve_split(data_files[part], split, self.split) for part in ("instructions", "images")]
        else:
            sources = [(None, split or self.split)] * 2
        (q_files, q_split), (i_files, i_split) = sources
        questions = open_split(hf_id, card.config, q_split, q_files, streaming, revision)
        self.validate(questions.features)
        images = open_split(hf_id, card.images_config, i_split, i_files, streaming, revision)
        check_columns(self.name, images.features, IMAGE_COLUMNS, table="images")
        images = images.cast_column("image", datasets.Image(decode=False))
        if streaming:
            yield from self._stream(questions, images)
        else:
            yield from self._in_memory(questions, images)

    @staticmethod
    def _stream(questions, images) -> Iterator[tuple[int, dict]]:
        # dataset order kept; image bytes of the split held once each
        by_id = {row["id"]: image_bytes(row["image"]) for row in images}
        for i, row in enumerate(questions):
            yield i, {**row, "image": by_id.get(row["imageId"])}

    @staticmethod
    def _in_memory(questions, images) -> Iterator[tuple[int, dict]]:
        position = {image_id: k for k, image_id in enumerate(images["id"])}
        keys = list(questions["imageId"])
        order = grouped_order(keys) or list(range(len(keys)))
        current, data = None, None
        for i in order:
            row = questions[i]
            if row["imageId"] != current:
                current = row["imageId"]
                k = position.get(current)
                data = image_bytes(images[k]["image"]) if k is not None else None
            yield i, {**row, "image": data}
