"""write: prediction rows → ``predictions/benchmark=*/variant=*/budget=*/part-*.parquet``.

Each (benchmark, variant, budget) group of a block becomes one file, written atomically (temp
file + rename) under a name derived from its content (the sorted sample ids), so a retried
task rewrites the same file instead of adding a duplicate, and a killed run leaves only
complete files behind (plus temp files that ``resume.remove_temp_files`` deletes). The model
stage's ``oom_splits`` column is not written: its sum goes to the block's first summary row.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from pipeline.stages.atomic import write_atomic
from pipeline.stages.schema import OOM_SPLITS

SUMMARY_SCHEMA = pa.schema(
    [("benchmark", pa.string()), ("variant", pa.string()), ("budget", pa.int32()),
     ("n", pa.int64()), ("n_errors", pa.int64()), ("path", pa.string()), (OOM_SPLITS, pa.int64())]
)


def partition_dir(root: Path, benchmark: str, variant: str, budget: int) -> Path:
    return root / f"benchmark={benchmark}" / f"variant={variant}" / f"budget={budget}"


class WriteStage:
    """Writes one block of prediction rows; returns one summary row per file written."""

    def __init__(self, predictions_dir: str):
        self.root = Path(predictions_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        summary = []
        splits = 0
        if OOM_SPLITS in batch.column_names:
            splits = pc.sum(batch[OOM_SPLITS]).as_py() or 0
            batch = batch.drop_columns([OOM_SPLITS])
        keys = batch.select(["benchmark", "variant", "budget"]).to_pylist()
        for key in sorted({tuple(k.values()) for k in keys}):
            benchmark, variant, budget = key
            mask = pc.and_(
                pc.and_(pc.equal(batch["benchmark"], benchmark), pc.equal(batch["variant"], variant)),
                pc.equal(batch["budget"], budget),
            )
            part = batch.filter(mask).sort_by("sample_id")
            ids = "\x1f".join(part.column("sample_id").to_pylist())
            name = f"part-{hashlib.sha1(ids.encode()).hexdigest()[:16]}.parquet"
            out = partition_dir(self.root, benchmark, variant, budget)
            out.mkdir(parents=True, exist_ok=True)
            write_atomic(part, out / name)
            summary.append({"benchmark": benchmark, "variant": variant, "budget": budget, "n": part.num_rows,
                            "n_errors": part.num_rows - part["error"].null_count, "path": str(out / name),
                            OOM_SPLITS: 0 if summary else splits})
        return pa.Table.from_pylist(summary, schema=SUMMARY_SCHEMA)
