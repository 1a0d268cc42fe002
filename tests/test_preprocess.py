"""The preprocess stage: pixels travel once per image per batch, in the model's dtype, and the
prepare → nouns → preprocess → vlm chain writes the predictions the model actor wrote when it
decoded and processed images itself (recorded in tests/data/golden_predictions.parquet)."""
from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.manifest import Variant
from pipeline.model.inputs import PreparedBatch, PreparedSample
from pipeline.model.visual import ImagePixels
from pipeline.stages.preprocess import COLUMNS, PreprocessStage, from_arrow, to_arrow
from pipeline.stages.schema import NOUN_SPANS
from pipeline.stages.shard_images import read_shard

GOLDEN = Path(__file__).parent / "data" / "golden_predictions.parquet"
# What the golden file was recorded on: per model, (benchmark, --limit) and (method, budget) variants,
# stages called in-process on slices of 6 rows, max_new_tokens 4, float32 on CPU.
CASES = {"llava15": [("vqav2", 12), ("bad_rows", None), ("pope", 8)], "llava_next": [("vqav2", 8), ("bad_rows", None)]}
VARIANTS = {"llava15": [("full", 576), ("icctp", 64), ("random", 64), ("visionzip_proj", 64), ("fastv", 64)],
            "llava_next": [("full", 576), ("icctp", 64), ("cls", 64)]}


def prepared_batch(dtype: torch.dtype) -> PreparedBatch:
    """Three rows, two of them on image "a" (2 grids), one error row; pixels 0, 1, 2, ... in ``dtype``."""
    a = ImagePixels("a", torch.arange(2 * 3 * 4 * 4).view(2, 3, 4, 4).to(dtype), (5, 7))
    b = ImagePixels("b", -torch.arange(3 * 4 * 4).view(1, 3, 4, 4).to(dtype), (4, 4))
    rows = [PreparedSample(image_key="a", text_ids=[1, 9, 2], image_pos=1, seed=3, phrases=["cat"],
                           center_ids=[[5]], center_source="nouns"),
            PreparedSample(error="ImageError: image is missing"),
            PreparedSample(image_key="b", text_ids=[9, 4], image_pos=0, seed=4, center_ids=[[4]],
                           center_source="instruction"),
            PreparedSample(image_key="a", text_ids=[9], image_pos=0, seed=5, center_error="ValueError: x")]
    return PreparedBatch(rows, {"a": a, "b": b})


def base_table(n: int) -> pa.Table:
    return pa.table({"sample_id": [str(i) for i in range(n)], "noun_phrases": [[] for _ in range(n)]})


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_arrow_round_trip_keeps_each_image_once_and_its_dtype(dtype):
    batch = prepared_batch(dtype)
    table = to_arrow(base_table(4), batch)
    assert set(COLUMNS) <= set(table.column_names)
    assert len(table.column("pixel_values").combine_chunks().dictionary) == 2
    back = from_arrow(table)
    assert back.samples == batch.samples
    assert list(back.images) == ["a", "b"]
    for key, image in batch.images.items():
        assert back.images[key].pixel_values.dtype == dtype
        assert torch.equal(back.images[key].pixel_values, image.pixel_values)
        assert back.images[key].image_size == image.image_size


def test_slices_and_concatenations_keep_the_pixels_of_their_rows():
    table = to_arrow(base_table(4), prepared_batch(torch.float16))
    other = to_arrow(base_table(4), PreparedBatch([PreparedSample(image_key="c", text_ids=[9], image_pos=0)],
                                                  {"c": ImagePixels("c", torch.ones(1, 3, 4, 4, dtype=torch.float16),
                                                                    (1, 1))}).subset([0] * 4))
    mixed = pa.concat_tables([table.slice(2, 2), other.slice(0, 1)])
    back = from_arrow(mixed)
    assert [s.image_key for s in back.samples] == ["b", "a", "c"]
    assert torch.equal(back.images["a"].pixel_values, prepared_batch(torch.float16).images["a"].pixel_values)
    assert torch.equal(back.images["c"].pixel_values, torch.ones(1, 3, 4, 4, dtype=torch.float16))


def input_rows(kind: str, tmp: Path) -> list[pa.Table]:
    from pipeline.manifest import BenchmarkSource
    from pipeline.stages.prepare import prepare_benchmark

    tables = []
    for bench, limit in CASES[kind]:
        source = BenchmarkSource(benchmark="vqav2" if bench == "bad_rows" else None, data_files=f"fixture:{bench}")
        prepare_benchmark(bench, source, tmp / kind / bench, 64, limit)
        tables.append(pa.concat_tables([read_shard(f) for f in sorted((tmp / kind / bench).glob("shard-*"))]))
    return tables


@pytest.mark.slow
def test_image_processor_runs_once_per_distinct_image(fixtures_root, monkeypatch):
    from pipeline.fixtures import tiny_model_path
    from pipeline.model import llava

    stage = PreprocessStage(str(tiny_model_path("llava15")), "float16")
    seen = []
    original = llava.pixel_inputs
    monkeypatch.setattr(llava, "pixel_inputs", lambda p, c, images, keys, d: seen.append(len(images))
                        or original(p, c, images, keys, d))
    rows = pq.read_table(fixtures_root / "data" / "vqav2.parquet").slice(0, 8)
    table = pa.table({"image": [r["bytes"] for r in rows.column("image").to_pylist()],
                      "prompt": rows.column("question"), "question": rows.column("question"),
                      "noun_spans": pa.array([[] for _ in range(8)], NOUN_SPANS)})
    out = stage(table)
    distinct = len(set(table.column("image").to_pylist()))
    assert distinct < 8 and seen == [distinct]
    assert len(out.column("pixel_values").combine_chunks().dictionary) == distinct
    assert set(out.column("pixel_dtype").to_pylist()) == {"float16"}
    assert "image" not in out.column_names


@pytest.mark.slow
def test_predictions_equal_those_recorded_before_the_preprocess_stage(fixtures_root, tmp_path, request):
    from pipeline.fixtures import tiny_model_path
    from pipeline.stages.nouns import NounStage
    from pipeline.stages.vlm import VLMStage

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nouns, out = NounStage(), []
        for kind in CASES:
            path = str(tiny_model_path(kind))
            variants = [Variant(m, m, b) for m, b in VARIANTS[kind]]
            model = request.getfixturevalue(f"{kind}_vlm")  # what VLMStage(path, ..., "float32", "cpu") loads
            pre, vlm = PreprocessStage(path, "float32"), VLMStage.from_vlm(model, variants, "golden", 4)
            for table in input_rows(kind, tmp_path):
                table = nouns(table)
                for start in range(0, table.num_rows, 6):
                    rows = vlm(pre(table.slice(start, 6)))
                    assert rows.column("other_ms").null_count == rows.num_rows - rows.column("error").null_count
                    out.append(rows.append_column("model", pa.array([kind] * rows.num_rows)))
    finally:
        torch.set_num_threads(threads)
    golden = pl.read_parquet(GOLDEN)
    got = pl.from_arrow(pa.concat_tables(out)).select(golden.columns)
    assert got.height == golden.height == 196
    assert got.to_dicts() == golden.to_dicts()
