"""Arrow schemas of the two tables a run writes: input shards and prediction rows."""
from __future__ import annotations

import pyarrow as pa

INPUT_SCHEMA = pa.schema(
    [
        ("benchmark", pa.string()),
        ("sample_id", pa.string()),
        ("image", pa.binary()),  # encoded image bytes as stored in the dataset; null if missing
        ("image_id", pa.string()),
        ("question", pa.string()),
        ("prompt", pa.string()),
        ("targets", pa.string()),  # JSON, benchmark-native ground truth
        ("evidence_patches", pa.list_(pa.int32())),  # patches of the asked object, when the dataset has them
    ]
)

PREDICTION_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("benchmark", pa.string()),
        ("sample_id", pa.string()),
        ("image_id", pa.string()),
        ("method", pa.string()),
        ("budget", pa.int32()),
        ("question", pa.string()),
        ("prompt", pa.string()),
        ("prediction", pa.string()),
        ("error", pa.string()),
        ("noun_phrases", pa.list_(pa.string())),
        ("center_source", pa.string()),
        ("n_visual", pa.int32()),
        ("n_kept", pa.int32()),
        ("n_text", pa.int32()),
        ("kept_indices", pa.list_(pa.int32())),
        ("kept_clusters", pa.list_(pa.int32())),
        ("targets", pa.string()),
        ("evidence_patches", pa.list_(pa.int32())),
        ("vision_ms", pa.float64()),
        ("select_ms", pa.float64()),
        ("prefill_ms", pa.float64()),
        ("decode_ms", pa.float64()),
        ("peak_memory_mb", pa.float64()),  # CUDA peak allocated during the row's batch; null on CPU
    ]
)
