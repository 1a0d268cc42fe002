"""Resume planning: per input shard finished / untouched / partial, with exact pending keys per row."""
from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.manifest import Variant
from pipeline.stages.resume import PendingFilter, plan_resume
from pipeline.stages.write import partition_dir

VARIANTS = [Variant("full", "full", 576), Variant("icctp", "icctp", 64)]
KEYS = ["full@576", "icctp@64"]


def write_shard(path, bench, ids):
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"benchmark": [bench] * len(ids), "sample_id": ids}), path)
    return path


def write_part(root, bench, label, budget, ids, name):
    out = partition_dir(root, bench, label, budget)
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"benchmark": [bench] * len(ids), "sample_id": ids, "variant": [label] * len(ids),
                             "budget": pa.array([budget] * len(ids), pa.int32())}), out / f"part-{name}.parquet")
    return out


def run_dir(tmp_path):
    """pope: shard 0 finished, shard 1 partial, shard 2 untouched; vqav2 (same ids as pope): shard 0 partial."""
    inputs = tmp_path / "inputs"
    shards = [write_shard(inputs / "benchmark=pope" / "shard-00000.parquet", "pope", ["1", "2", "3", "4"]),
              write_shard(inputs / "benchmark=pope" / "shard-00001.parquet", "pope", ["5", "6", "7", "8"]),
              write_shard(inputs / "benchmark=pope" / "shard-00002.parquet", "pope", ["9", "10"]),
              write_shard(inputs / "benchmark=vqav2" / "shard-00000.parquet", "vqav2", ["1", "2", "3"])]
    preds = tmp_path / "predictions"
    write_part(preds, "pope", "full", 576, ["1", "2", "3", "4", "5", "6"], "a")
    write_part(preds, "pope", "full", 576, ["7", "8"], "b")
    write_part(preds, "pope", "full", 576, ["7"], "c")  # the same row twice counts once
    out = write_part(preds, "pope", "icctp", 64, ["1", "2", "3", "4", "5"], "a")
    (out / ".part-d.parquet.tmp").write_bytes(b"half a file")
    write_part(preds, "pope", "random", 64, ["9", "10"], "a")  # a variant this run does not have
    write_part(preds, "vqav2", "full", 576, ["1"], "a")
    return shards, preds


def test_plan_skips_finished_shards_and_lists_pending_keys_of_partial_shards_only(tmp_path):
    shards, preds = run_dir(tmp_path)
    plan = plan_resume(shards, preds, VARIANTS)
    assert plan.shards == [str(shards[1]), str(shards[2]), str(shards[3])]
    assert (plan.n_finished_shards, plan.n_partial_shards) == (1, 2)
    assert (plan.rows_done, plan.rows_todo) == (14, 12)  # 13 inputs × 2 variants = 26
    assert plan.pending == {
        ("pope", "5"): [], ("pope", "6"): ["icctp@64"], ("pope", "7"): ["icctp@64"], ("pope", "8"): ["icctp@64"],
        ("vqav2", "1"): ["icctp@64"], ("vqav2", "2"): KEYS, ("vqav2", "3"): KEYS,
    }
    assert not list(preds.rglob(".*.tmp"))


def test_fresh_run_reads_every_shard_without_a_filter(tmp_path):
    shards, _ = run_dir(tmp_path)
    plan = plan_resume(shards, tmp_path / "no-predictions", VARIANTS)
    assert plan.shards == [str(s) for s in shards] and plan.pending == {}
    assert (plan.n_finished_shards, plan.n_partial_shards, plan.rows_done, plan.rows_todo) == (0, 0, 0, 26)


def test_finished_run_has_nothing_left(tmp_path):
    shards, preds = run_dir(tmp_path)
    write_part(preds, "pope", "icctp", 64, ["6", "7", "8", "9", "10"], "e")
    write_part(preds, "pope", "full", 576, ["9", "10"], "e")
    write_part(preds, "vqav2", "full", 576, ["2", "3"], "e")
    write_part(preds, "vqav2", "icctp", 64, ["1", "2", "3"], "e")
    plan = plan_resume(shards, preds, VARIANTS)
    assert plan.shards == [] and plan.pending == {}
    assert (plan.n_finished_shards, plan.rows_done, plan.rows_todo) == (4, 26, 0)


def test_pending_filter_applies_the_plan_and_passes_untouched_rows_whole(tmp_path):
    shards, preds = run_dir(tmp_path)
    plan = plan_resume(shards, preds, VARIANTS)
    batch = pa.table({"benchmark": ["pope", "pope", "pope", "vqav2", "vqav2"], "sample_id": ["5", "6", "9", "1", "2"]})
    out = PendingFilter(plan.pending, KEYS)(batch)
    assert out["sample_id"].to_pylist() == ["6", "9", "1", "2"]
    assert out["pending"].to_pylist() == [["icctp@64"], KEYS, ["icctp@64"], KEYS]
