"""Input shards' image files: each image of a shard stored once, fetched by key where it is decoded.

Layout of a prepared benchmark (written by ``pipeline.stages.prepare.write_shard``)::

    inputs/benchmark=B/shard-00000.parquet          question rows (``INPUT_SCHEMA``): no image bytes,
                                                    ``image_sha256`` names the row's image
    inputs/benchmark=B/images/images-00000.parquet  ``IMAGES_SCHEMA``: each distinct image of that shard once,
                                                    in order of first use, row groups of ``ROW_GROUP_IMAGES``

Why this layout:

- the chain reads only question files, so image bytes never pass through read, repartition, the
  resume filter or the nouns stage; the preprocess stage fetches the images of its batch itself;
- the key is the sha256 of the encoded bytes, not the dataset's ``image_id``: ids can be missing or
  reused for another picture, while the hash names exactly the bytes (the same picture under two ids
  is stored once), and it is what a shard's digest already covered, so fingerprints are unchanged;
- a shard's questions never reach another shard's images, and a shard closes only between two
  images, so the questions of a batch need a few adjacent rows of one or two image files; small row
  groups let ``ImageStore`` read just those;
- the image file sits in ``images/`` as ``images-<shard number>``, so everything that lists a
  benchmark's shards (``shard-*.parquet``, ``*.parquet``, ``inputs/**/shard-*.parquet``) still sees
  question files only, and a question row finds its image file from the path of its shard, which
  Ray Data's reader attaches (``read_parquet(include_paths=True)``, column ``path``); no absolute
  path is stored, so a run directory can move. The preprocess actors read the image files where
  they run, so on a cluster the run directory is shared storage, as it already is for Ray Data's
  read tasks and the writer.

Question tables with an inline ``image`` column (run directories prepared before this layout, the
synthetic runs of ``pipeline.fixtures``) are still read as they are.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

IMAGES_DIR = "images"
ROW_GROUP_IMAGES = 8  # ~1.3 MB per row group with COCO-sized JPEGs
KEY = "image_sha256"
PATH = "path"  # the shard file a row was read from (Ray Data's ``include_paths``)


def images_path(shard: str | Path) -> Path:
    """The image file of the question shard ``shard``."""
    shard = Path(shard)
    return shard.parent / IMAGES_DIR / shard.name.replace("shard-", "images-", 1)


def read_shard(shard: str | Path) -> pa.Table:
    """The question rows of ``shard`` with the ``path`` column Ray Data's reader adds, as the chain sees them."""
    table = pq.read_table(shard)
    return table.append_column(PATH, pa.array([str(shard)] * table.num_rows, pa.string()))


def read_images(shard: str | Path) -> dict[str, bytes]:
    """All images of ``shard``'s image file: key → encoded bytes, in file order."""
    table = pq.read_table(images_path(shard))
    return dict(zip(table.column(KEY).to_pylist(), table.column("image").to_pylist()))


class _ImageFile:
    """One image file: its keys' places (row group, row) read once; row groups read on demand."""

    def __init__(self, path: Path):
        self.path = path
        self.file = pq.ParquetFile(path)
        keys = iter(self.file.read(columns=[KEY]).column(KEY).to_pylist())
        self.place: dict[str, tuple[int, int]] = {}
        for group in range(self.file.num_row_groups):
            for row in range(self.file.metadata.row_group(group).num_rows):
                self.place[next(keys)] = (group, row)
        self.groups: dict[int, list[bytes]] = {}

    def get(self, keys: list[str]) -> list[bytes]:
        missing = [k for k in keys if k not in self.place]
        if missing:
            raise ValueError(f"{self.path} holds no image {missing[0]} (the shard and its image file disagree: "
                             "delete the benchmark's prepared inputs to prepare it again)")
        todo = sorted({self.place[k][0] for k in keys} - set(self.groups))
        for group in todo:
            self.groups[group] = self.file.read_row_group(group, columns=["image"]).column("image").to_pylist()
        return [self.groups[self.place[k][0]][self.place[k][1]] for k in keys]


class ImageStore:
    """Encoded images by (shard, key) for an actor: reads only the row groups its batches need, and
    keeps the ``keep`` image files it used last (their index and the row groups read so far), so
    consecutive batches of a shard read its image file once between them."""

    def __init__(self, keep: int = 2):
        self.keep = keep
        self.files: OrderedDict[str, _ImageFile] = OrderedDict()
        self.row_groups_read = 0

    def fetch(self, shard: str, keys: list[str | None]) -> list[bytes | None]:
        """The encoded bytes of ``keys`` (None stays None: the row has no image) from ``shard``'s image file."""
        wanted = [k for k in keys if k is not None]
        if not wanted:
            return [None] * len(keys)
        file = self.files.pop(shard, None) or _ImageFile(images_path(shard))
        self.files[shard] = file
        while len(self.files) > self.keep:
            self.files.popitem(last=False)
        before = len(file.groups)
        found = dict(zip(wanted, file.get(wanted)))
        self.row_groups_read += len(file.groups) - before
        return [None if k is None else found[k] for k in keys]

    def images(self, batch: pa.Table) -> list[bytes | None]:
        """The encoded image of each row of ``batch``: its inline ``image`` column, else fetched by
        ``image_sha256`` from the image file of its shard (``path``)."""
        if "image" in batch.column_names:
            return batch.column("image").to_pylist()
        keys, shards = batch.column(KEY).to_pylist(), batch.column(PATH).to_pylist()
        out: list[bytes | None] = [None] * len(keys)
        for shard in dict.fromkeys(shards):
            rows = [i for i, s in enumerate(shards) if s == shard]
            for i, data in zip(rows, self.fetch(shard, [keys[i] for i in rows])):
                out[i] = data
        return out


def sample_images(shards: list[Path], sample_ids: list[str]) -> dict[str, bytes | None]:
    """Encoded image bytes per sample id found in the question shards ``shards`` (for reports)."""
    if not shards:
        return {}
    inline = "image" in pq.read_schema(shards[0]).names
    columns = ["sample_id", "image"] if inline else ["sample_id", KEY]
    found = (pl.scan_parquet(shards, include_file_paths=PATH).filter(pl.col("sample_id").is_in(sample_ids))
             .select(*columns, PATH).collect())
    table = found.to_arrow()
    return dict(zip(found["sample_id"].to_list(), ImageStore(keep=1).images(table)))
