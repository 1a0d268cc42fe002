"""bench_scale: the VQAv2-sized synthesis, and a small kill-and-resume run with the stand-in model stage."""
from __future__ import annotations

import io
import json
import subprocess
import sys

import polars as pl
import pyarrow.parquet as pq
import pytest
from datasets import Features
from PIL import Image
from raytools import REPO, ray_env, short_tmpdir

sys.path.insert(0, str(REPO / "scripts"))

from bench_scale import VQAV2_IMAGES, VQAV2_QUESTIONS, questions_per_image, synthesize  # noqa: E402

from pipeline.fixtures.datasets import VQAV2_FEATURES  # noqa: E402


def test_vqav2_validation_size_is_five_or_six_questions_per_image():
    counts = questions_per_image(VQAV2_QUESTIONS, VQAV2_IMAGES)
    assert sum(counts) == 214_354 and len(counts) == 40_504
    assert counts.count(6) == 11_834 and counts.count(5) == 28_670


def test_synthesized_split_has_the_vqav2_schema_and_adjacent_images(tmp_path):
    path = tmp_path / "v.parquet"
    n_images = synthesize(path, 130, chunk_images=7)
    table = pq.read_table(path)
    assert Features.from_arrow_schema(table.schema) == VQAV2_FEATURES
    assert n_images == round(130 * VQAV2_IMAGES / VQAV2_QUESTIONS) == 25
    df = pl.from_arrow(table.drop_columns(["image"]))
    assert df.height == 130 and df["question_id"].n_unique() == 130
    runs = df["image_id"].rle()
    assert runs.len() == 25 and sorted(runs.struct.field("len").value_counts()["len"].to_list()) == [5, 6]
    assert (df["answers"].list.len() == 10).all()


def test_real_image_mode_writes_coco_sized_jpegs(tmp_path):
    path = tmp_path / "v.parquet"
    n_images = synthesize(path, 11, real_images=True)
    rows = pq.read_table(path, columns=["image_id", "image"]).to_pylist()
    images = {r["image_id"]: r["image"]["bytes"] for r in rows}
    assert n_images == len(images) == 2 and len(rows) == 11
    for data in images.values():
        with Image.open(io.BytesIO(data)) as image:
            assert (image.format, image.size) == ("JPEG", (640, 480))
        assert 120_000 < len(data) < 200_000  # COCO val2014 averages ~160 KB


@pytest.mark.slow
@pytest.mark.bench
@pytest.mark.timeout(1200)  # two jobs, each starting Ray and its actors
def test_small_run_killed_and_resumed_loses_and_duplicates_nothing(tmp_path):
    tmp = short_tmpdir()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "bench_scale.py"), "--questions", "300",
                           "--block-rows", "16", "--ms-per-question", "20", "--out", str(tmp_path)],
                          env=ray_env(tmp), cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    r = json.loads((tmp_path / "bench_scale.json").read_text())
    assert (r["lost"], r["duplicated"], r["prediction_rows"]) == (0, 0, 300)
    kill, resume = r["kill"], r["resume"]
    assert 150 <= resume["rows_done_before"] < 300 and resume["rows_written"] == resume["rows_todo"]
    assert resume["rows_done_before"] + resume["rows_todo"] == 300
    names = [op["name"] for op in resume["operators"]]
    assert any("NounStage" in n for n in names) and any("StandInModelStage" in n for n in names)
    preds = pl.read_parquet(tmp_path / "run" / "predictions", hive_partitioning=False)
    assert preds.height == 300 and (preds["prediction"] == "yes").all()
    metrics = pl.read_parquet(tmp_path / "run" / "metrics.parquet")
    assert metrics["n"].unique().to_list() == [300] and kill["prepare_s"] > 0
    assert "| rows lost / duplicated | 0 / 0 |" in proc.stdout
