"""Schemas of the tables a run writes: input shards, prediction rows (Arrow) and metrics (polars)."""
from __future__ import annotations

import polars as pl
import pyarrow as pa

# Model-stage output column (not written): out-of-memory splits of the batch, counted on its first row.
OOM_SPLITS = "oom_splits"
# Per row, ms: the model's four steps (``pipeline.model.timing.STEP_TIMINGS``) and the model actor's time outside them.
TIMING_COLUMNS = ("vision_ms", "select_ms", "prefill_ms", "decode_ms", "other_ms")
# Noun phrases as character spans into the question (``icctp.nouns.Phrase``), written by the nouns stage.
NOUN_SPANS = pa.list_(pa.struct([("text", pa.string()), ("start", pa.int32()), ("end", pa.int32())]))

# An input shard's question rows; the image bytes live once per shard in its image file (IMAGES_SCHEMA).
INPUT_SCHEMA = pa.schema(
    [
        ("benchmark", pa.string()),
        ("sample_id", pa.string()),
        ("image_sha256", pa.string()),  # hex sha256 of the encoded image bytes: the key into the image file; null if missing
        ("image_id", pa.string()),
        ("question", pa.string()),
        ("prompt", pa.string()),
        ("targets", pa.string()),  # JSON, benchmark-native ground truth
        ("evidence_patches", pa.list_(pa.int32())),  # patches of the asked object, when the dataset has them
    ]
)

# An input shard's image file (``pipeline.stages.shard_images``): each distinct image of the shard once.
IMAGES_SCHEMA = pa.schema(
    [
        ("image_sha256", pa.string()),
        ("image", pa.binary()),  # encoded image bytes as stored in the dataset
    ]
)

PREDICTION_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("benchmark", pa.string()),
        ("sample_id", pa.string()),
        ("image_id", pa.string()),
        ("variant", pa.string()),  # the manifest's label: names the variant in every output
        ("method", pa.string()),  # the selection algorithm (pipeline/methods.py)
        ("budget", pa.int32()),
        ("question", pa.string()),
        ("prompt", pa.string()),
        ("prediction", pa.string()),
        ("error", pa.string()),
        ("noun_phrases", pa.list_(pa.string())),  # phrase texts, question order
        ("noun_lang", pa.string()),  # extractor the phrases came from: "en" (spaCy) | "zh" (jieba)
        ("center_source", pa.string()),
        ("n_visual", pa.int32()),
        ("n_kept", pa.int32()),  # visual tokens after the last pruning layer (merged ones included)
        ("tokens_equiv", pa.float64()),  # visual tokens averaged over the decoder layers
        ("budget_mode", pa.string()),  # in-LLM methods: what the budget meant, "kept" | "equivalent"; else null
        ("layer_tokens", pa.list_(pa.int32())),  # in-LLM methods: visual tokens of each decoder layer; else null
        ("n_text", pa.int32()),
        ("kept_indices", pa.list_(pa.int32())),
        ("kept_clusters", pa.list_(pa.int32())),
        ("targets", pa.string()),
        ("evidence_patches", pa.list_(pa.int32())),
        ("vision_ms", pa.float64()),
        ("select_ms", pa.float64()),
        ("prefill_ms", pa.float64()),
        ("decode_ms", pa.float64()),
        ("other_ms", pa.float64()),  # the model actor's batch time outside the four steps above, per row
        ("peak_memory_mb", pa.float64()),  # CUDA peak allocated during the row's batch; null on CPU
    ]
)

METRICS_SCHEMA = {
    "benchmark": pl.String, "variant": pl.String, "method": pl.String, "budget": pl.Int64, "metric": pl.String,
    "value": pl.Float64, "n": pl.Int64, "n_errors": pl.Int64,
}
