"""Input shards store each image once and the preprocess stage fetches its batch's images by key."""
from __future__ import annotations

import hashlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.benchmarks import fixture_data_files, iter_samples
from pipeline.manifest import BenchmarkSource
from pipeline.stages.prepare import image_key, prepare_benchmark, write_shard
from pipeline.stages.shard_images import KEY, PATH, ROW_GROUP_IMAGES, ImageStore, images_path, read_images, read_shard


def prepared(tmp_path, shard_rows=16):
    out = tmp_path / "vqav2"
    prepare_benchmark("vqav2", BenchmarkSource(data_files="fixture:vqav2"), out, shard_rows=shard_rows)
    return sorted(out.glob("shard-*.parquet"))


def test_a_shard_stores_each_image_once_and_its_questions_no_image_bytes(tmp_path, fixtures_root):
    shards = prepared(tmp_path)
    source = {str(s["sample_id"]): s["image"] for s in iter_samples("vqav2", data_files=fixture_data_files("vqav2"))}
    assert len(shards) > 1
    for shard in shards:
        questions = pq.read_table(shard)
        assert not any(pa.types.is_binary(f.type) for f in questions.schema)  # no image bytes in the question file
        images = pq.read_table(images_path(shard))
        assert images.num_rows == len(set(questions.column("image_id").to_pylist())) \
            == len(set(questions.column(KEY).to_pylist()))
        stored = read_images(shard)
        assert all(hashlib.sha256(data).hexdigest() == key for key, data in stored.items())
        for row in questions.to_pylist():  # every question finds exactly the bytes its source row had
            assert stored[row[KEY]] == source[row["sample_id"]]
        assert all(pq.ParquetFile(images_path(shard)).metadata.row_group(g).num_rows <= ROW_GROUP_IMAGES
                   for g in range(pq.ParquetFile(images_path(shard)).num_row_groups))


def test_the_store_reads_only_the_row_groups_a_batch_needs_and_each_once(tmp_path):
    images = {image_key(bytes([i]) * 10): bytes([i]) * 10 for i in range(3 * ROW_GROUP_IMAGES)}
    keys = list(images)
    rows = [{"sample_id": str(i), KEY: k} for i, k in enumerate(keys)] + [{"sample_id": "none", KEY: None}]
    write_shard(tmp_path, 0, rows, images)
    write_shard(tmp_path, 1, [{"sample_id": "x", KEY: keys[0]}], {keys[0]: images[keys[0]]})
    first, second = str(tmp_path / "shard-00000.parquet"), str(tmp_path / "shard-00001.parquet")
    store = ImageStore()
    assert store.fetch(first, [keys[1], None, keys[0]]) == [images[keys[1]], None, images[keys[0]]]
    assert store.row_groups_read == 1
    batch = pa.table({KEY: [keys[ROW_GROUP_IMAGES - 1], keys[ROW_GROUP_IMAGES], keys[0]],
                      PATH: [first, first, second]})
    assert store.images(batch) == [images[keys[ROW_GROUP_IMAGES - 1]], images[keys[ROW_GROUP_IMAGES]], images[keys[0]]]
    assert store.row_groups_read == 3  # the second group of the first file, the only group of the second
    store.fetch(first, keys[:2 * ROW_GROUP_IMAGES])
    assert store.row_groups_read == 3  # both groups of the first file were still kept
    with pytest.raises(ValueError, match="holds no image"):
        store.fetch(first, [image_key(b"another picture")])


@pytest.mark.slow
def test_preprocess_from_the_image_files_equals_preprocess_from_inline_images(tmp_path, fixtures_root):
    from pipeline.fixtures import tiny_model_path
    from pipeline.stages.nouns import NounStage
    from pipeline.stages.preprocess import PreprocessStage

    shards = prepared(tmp_path, shard_rows=6)[:3]
    questions = NounStage()(pa.concat_tables([read_shard(s) for s in shards]))
    inline_images = [read_images(p)[k] for k, p in zip(questions.column(KEY).to_pylist(), questions.column(PATH).to_pylist())]
    inline = questions.drop_columns([KEY, PATH]).append_column("image", pa.array(inline_images, pa.binary()))
    stage = PreprocessStage(str(tiny_model_path("llava15")), "float32")
    n_groups = sum(pq.ParquetFile(images_path(s)).num_row_groups for s in shards)
    for start in range(0, questions.num_rows, 5):  # batches that straddle shards, as Ray Data cuts them
        by_key = stage(questions.slice(start, 5))
        assert by_key.equals(stage(inline.slice(start, 5)))
        assert KEY not in by_key.column_names and PATH not in by_key.column_names
    assert stage.store.row_groups_read == n_groups  # each image file read once by this actor
