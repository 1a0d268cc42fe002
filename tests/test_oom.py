"""Out of memory is survivable: the model stage retries a batch that raises ``torch.OutOfMemoryError`` on
each half of its rows, down to single rows; a row that alone does not fit becomes an error row; the
splits are logged, carried to the write stage and summed by the driver."""
from __future__ import annotations

import contextlib
import logging

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.manifest import Variant
from pipeline.model.inputs import PreparedBatch, PreparedSample
from pipeline.model.visual import ImagePixels
from pipeline.run import drain
from pipeline.stages.preprocess import to_arrow
from pipeline.stages.schema import OOM_SPLITS, PREDICTION_SCHEMA
from pipeline.stages.vlm import VLMStage
from pipeline.stages.write import WriteStage

HUGE = 99  # the seed of a row that does not fit even alone
VARIANT = Variant("full", "full", 576)


class SmallDevice:
    """Answers ``p<seed>``; a call with more than ``capacity`` rows, or holding ``HUGE``, runs out of memory."""

    device = torch.device("cpu")
    dtype = torch.float32

    def __init__(self, capacity: int):
        self.capacity, self.calls = capacity, []

    def answer(self, prepared, method, budget, max_new_tokens, **params):
        seeds = [s.seed for s in prepared.samples]
        self.calls.append(seeds)
        if len(seeds) > self.capacity or HUGE in seeds:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [{"prediction": f"p{seed}", "timings": {}} for seed in seeds]

    def reuse_vision(self):
        return contextlib.nullcontext()


def stage(capacity: int) -> VLMStage:
    return VLMStage.from_vlm(SmallDevice(capacity), [VARIANT], "r", 4)


def batch(seeds: list[int]) -> pa.Table:
    n = len(seeds)
    cols = {"benchmark": ["pope"] * n, "sample_id": [str(i) for i in range(n)], "image_id": ["i"] * n,
            "question": ["q"] * n, "prompt": ["q"] * n, "targets": ["{}"] * n, "noun_lang": ["en"] * n}
    samples = [PreparedSample(image_key="k", text_ids=[9], image_pos=0, seed=seed) for seed in seeds]
    return to_arrow(pa.table(cols), PreparedBatch(samples, {"k": ImagePixels("k", torch.zeros(1, 3, 2, 2), (2, 2))}))


def test_a_batch_too_big_is_halved_until_it_fits_with_the_same_predictions(caplog):
    s = stage(capacity=2)
    with caplog.at_level(logging.WARNING, logger="pipeline.stages.vlm"):
        out = s(batch(list(range(8))))
    # 8 -> 4 + 4 (1 split) -> each 4 -> 2 + 2 (2 splits): 3 splits, the four 2-row calls succeed
    assert s.vlm.calls == [[0, 1, 2, 3, 4, 5, 6, 7], [0, 1, 2, 3], [0, 1], [2, 3], [4, 5, 6, 7], [4, 5], [6, 7]]
    assert out.column("prediction").to_pylist() == [f"p{i}" for i in range(8)]
    assert out.column("error").null_count == 8
    assert out.column(OOM_SPLITS).to_pylist() == [3, 0, 0, 0, 0, 0, 0, 0]
    assert sum("retrying as" in r.getMessage() for r in caplog.records) == 3


def test_a_row_that_never_fits_becomes_an_error_row_and_the_rest_runs():
    s = stage(capacity=2)
    out = s(batch([0, 1, 2, HUGE, 4]))
    # 5 -> 3 + 2; [0, 1, 2] -> 2 + 1; [HUGE, 4] -> 1 + 1; HUGE alone fails: 3 splits
    assert s.vlm.calls == [[0, 1, 2, HUGE, 4], [0, 1, 2], [0, 1], [2], [HUGE, 4], [HUGE], [4]]
    assert out.column("prediction").to_pylist() == ["p0", "p1", "p2", None, "p4"]
    errors = out.column("error").to_pylist()
    assert errors[:3] == [None] * 3 and errors[4] is None
    assert errors[3].startswith("OutOfMemoryError: one row does not fit on cpu: CUDA out of memory")
    assert out.column(OOM_SPLITS).to_pylist() == [3, 0, 0, 0, 0]


def test_a_batch_that_fits_is_not_split():
    s = stage(capacity=8)
    out = s(batch(list(range(8))))
    assert len(s.vlm.calls) == 1 and sum(out.column(OOM_SPLITS).to_pylist()) == 0


def test_other_errors_still_fail_the_batch():
    s = stage(capacity=8)
    s.vlm.answer = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("CUDA error: an illegal memory access"))
    with pytest.raises(RuntimeError, match="illegal memory access"):
        s(batch([0, 1]))


def test_the_write_stage_drops_the_count_from_the_files_and_sums_it_and_the_driver_adds_it_up(tmp_path):
    out = stage(capacity=2)(batch(list(range(8))))
    more = stage(capacity=2)(batch([0, 1, 2, HUGE, 4]))
    more = more.set_column(more.schema.get_field_index("sample_id"), "sample_id",
                           pa.array([str(i) for i in range(8, 13)]))
    two = pa.concat_tables([out, more])
    summary = WriteStage(str(tmp_path))(two)
    assert summary.column(OOM_SPLITS).to_pylist() == [6]
    files = list(tmp_path.rglob("part-*.parquet"))
    assert len(files) == 1 and pq.read_schema(files[0]) == PREDICTION_SCHEMA
    assert pq.read_table(files[0]).num_rows == 13
    assert drain([summary, summary]) == (26, 12)
