"""preprocess: input rows → prompts tokenized and pixels ready for the tower, on CPU actors.

A callable class for ``map_batches`` (``PreprocessStage``): per batch it fetches the encoded images
of its rows by key from their shards' image files (``pipeline.stages.shard_images.ImageStore``: only
the row groups holding them, each image file's index and row groups kept while the actor works on
that shard), then runs ``pipeline.model.inputs.Preprocessor.prepare`` (input checks, image
decoding, the family's image processor — LLaVA-1.5 resize/crop/normalize, LLaVA-NeXT
any-resolution tiling — once per distinct image, chat rendering, tokenization, icctp's center token
groups), so that the model actor only encodes, selects, assembles and generates. A row that cannot
run (undecodable image, empty prompt or question) gets ``error`` here and is carried to the model
stage, which writes it as an error row.

How pixel arrays travel: ``pixel_values`` is a *dictionary-encoded* Arrow column
(``dictionary<int32, large_binary>``): each distinct image of the batch is stored once in the
dictionary, as the raw bytes of its C-contiguous (P, 3, S, S) tensor in the model's dtype
(``pixel_dtype``; bfloat16 has no NumPy type, bytes carry it unchanged), and each row holds only an
index (null on error rows). A per-row tensor column would copy an image's pixels into every
question of it (VQAv2 asks ~5.3 questions per image, LLaVA-NeXT images are up to 5 grids of
336² × 3 values), and a "pixels in the first row of each image" scheme breaks as soon as Ray Data
cuts batches at other rows than this stage did. Arrow keeps the dictionary through slicing, IPC
between actors and concatenation (it unifies dictionaries), so any batch the model stage receives
holds the pixels of every row it contains; a slice may carry a few unreferenced entries.

Added columns (``image_sha256`` and ``path``, or an inline ``image``, are dropped; ``noun_phrases``, the texts of
the ``noun_spans``, is added): ``error``, ``image_key``,
``pixel_values``, ``pixel_shape`` [P, 3, S, S], ``pixel_dtype``, ``image_size`` [height, width],
``text_ids``, ``image_pos``, ``seed``, ``center_ids``, ``center_source``, ``center_error``.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import torch

from pipeline.model.inputs import PreparedBatch, PreparedSample, Preprocessor
from pipeline.model.visual import ImagePixels
from pipeline.stages.shard_images import KEY, PATH, ImageStore

COLUMNS = {
    "error": pa.string(),
    "image_key": pa.string(),
    "pixel_values": pa.dictionary(pa.int32(), pa.large_binary()),
    "pixel_shape": pa.list_(pa.int32()),
    "pixel_dtype": pa.string(),
    "image_size": pa.list_(pa.int32()),
    "text_ids": pa.list_(pa.int32()),
    "image_pos": pa.int32(),
    "seed": pa.int64(),
    "center_ids": pa.list_(pa.list_(pa.int32())),
    "center_source": pa.string(),
    "center_error": pa.string(),
}


class PreprocessStage:
    """``Preprocessor`` of the checkpoint at ``model_path``; pixels in ``dtype`` (the model's)."""

    def __init__(self, model_path: str, dtype: str):
        self.preprocessor = Preprocessor.from_pretrained(model_path, getattr(torch, dtype))
        self.store = ImageStore()

    def __call__(self, batch: pa.Table) -> pa.Table:
        """``batch``: question rows with ``image_sha256`` and ``path`` (or an inline ``image``), ``prompt``,
        ``question``, ``noun_spans``."""
        columns = {name: batch.column(name).to_pylist() for name in ("prompt", "question", "noun_spans")}
        columns["image"] = self.store.images(batch)
        samples = [dict(zip(columns, values)) for values in zip(*columns.values())]
        prepared = self.preprocessor.prepare(samples, with_centers=True)
        return to_arrow(batch.drop_columns([c for c in ("image", KEY, PATH) if c in batch.column_names]), prepared)


def to_arrow(batch: pa.Table, prepared: PreparedBatch) -> pa.Table:
    """``batch`` with ``noun_phrases`` replaced by the prepared phrases and the ``COLUMNS`` added."""
    samples = prepared.samples
    keys = list(prepared.images)
    slot = {key: i for i, key in enumerate(keys)}
    pixels = [prepared.images[k].pixel_values.contiguous() for k in keys]
    dictionary = pa.array([p.view(torch.uint8).numpy().tobytes() for p in pixels], pa.large_binary())
    indices = pa.array([None if s.error else slot[s.image_key] for s in samples], pa.int32())
    ok = [s.error is None for s in samples]
    values = {
        "error": [s.error for s in samples],
        "image_key": [s.image_key if good else None for s, good in zip(samples, ok)],
        "pixel_values": pa.DictionaryArray.from_arrays(indices, dictionary),
        "pixel_shape": [list(prepared.images[s.image_key].pixel_values.shape) if good else None
                        for s, good in zip(samples, ok)],
        "pixel_dtype": [str(prepared.images[s.image_key].pixel_values.dtype).removeprefix("torch.") if good else None
                        for s, good in zip(samples, ok)],
        "image_size": [list(prepared.images[s.image_key].image_size) if good else None
                       for s, good in zip(samples, ok)],
        "text_ids": [s.text_ids or None for s in samples],
        "image_pos": [s.image_pos if s.text_ids else None for s in samples],
        "seed": [s.seed for s in samples],
        "center_ids": [s.center_ids for s in samples],
        "center_source": [s.center_source for s in samples],
        "center_error": [s.center_error for s in samples],
    }
    phrases = pa.array([s.phrases for s in samples], pa.list_(pa.string()))
    if "noun_phrases" in batch.column_names:
        batch = batch.drop_columns(["noun_phrases"])
    batch = batch.append_column("noun_phrases", phrases)
    for name, kind in COLUMNS.items():
        column = values[name]
        batch = batch.append_column(name, column if isinstance(column, pa.Array) else pa.array(column, kind))
    return batch


def from_arrow(batch: pa.Table) -> PreparedBatch:
    """The ``PreparedBatch`` a ``PreprocessStage`` output (or any slice or concatenation of it) holds."""
    cols = {name: batch.column(name).to_pylist() for name in COLUMNS if name != "pixel_values"}
    phrases = batch.column("noun_phrases").to_pylist()
    pixels = batch.column("pixel_values").combine_chunks()
    dictionary, indices = pixels.dictionary, pixels.indices.to_pylist()
    samples, images = [], {}
    for i in range(batch.num_rows):
        error, key = cols["error"][i], cols["image_key"][i]
        samples.append(PreparedSample(
            error=error, image_key=key, text_ids=cols["text_ids"][i] or [],
            image_pos=-1 if cols["image_pos"][i] is None else cols["image_pos"][i], seed=cols["seed"][i],
            phrases=phrases[i] or [], center_ids=cols["center_ids"][i], center_source=cols["center_source"][i],
            center_error=cols["center_error"][i]))
        if error is None and key not in images:
            raw = np.frombuffer(dictionary[indices[i]].as_buffer(), dtype=np.uint8).copy()
            tensor = torch.from_numpy(raw).view(getattr(torch, cols["pixel_dtype"][i])).view(cols["pixel_shape"][i])
            images[key] = ImagePixels(key, tensor, tuple(cols["image_size"][i]))
    return PreparedBatch(samples, images)
