"""What every benchmark card shares: schema check, row -> sample, loading, prompt pieces.

A card (one module per benchmark) is mostly data: the default HF id / config / split, the
columns it reads with their type family (or the families it accepts), columns it reads when a
mirror has them, the column that names a row and the one that names its image, the headline
metric; code only where the benchmark truly differs (``prompt``, ``targets``, ``score``).
A pinned dataset commit (``revision``) is passed to ``datasets.load_dataset`` as is.

A sample (one per dataset row) is the common schema every later stage reads::

    sample_id  str         unique within the benchmark
    image      bytes|None  the encoded image exactly as stored in the dataset (never decoded here)
    image_id   str         same for all questions of one image
    question   str|None    the raw question (noun phrases are taken from it)
    prompt     str         the user turn after "<image>\\n", without the chat template
    targets    str         JSON of the benchmark-native ground truth needed to score
    evidence_patches list[int]|None  patch indices of the asked object, when the dataset records them

A row whose question or image is empty or missing still becomes a sample: the model stage records
the error on its prediction row. Only a schema problem raises, before any model work.
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import datasets
import polars as pl
import pyarrow as pa

SHORT_ANSWER = "\nAnswer the question using a single word or phrase."
MCQ_ANSWER = "\nAnswer with the option's letter from the given choices directly."
MCQ_ANSWER_CN = "\n请直接回答选项字母。"
LETTERS = "ABCDEFGHIJ"

# column type families a card can require
STRING, INT, BOOL, IMAGE = "string", "int", "bool", "image"
STRINGS, STRUCTS = "list<string>", "list<struct>"


class SchemaError(ValueError):
    """A dataset lacks a column a benchmark reads, or holds it with the wrong type."""

    def __init__(self, benchmark: str, problems: dict[str, str]):
        self.benchmark, self.problems = benchmark, problems
        detail = "; ".join(f"column {col!r} {why}" for col, why in problems.items())
        super().__init__(f"benchmark {benchmark!r}: {detail}")


def type_family(feature: Any) -> str:
    """The type family of a ``datasets`` feature: string, int, float, bool, image, list<...>, struct."""
    if isinstance(feature, datasets.Image):
        return IMAGE
    if isinstance(feature, datasets.ClassLabel):
        return INT
    if isinstance(feature, datasets.Value):
        dtype = feature.dtype
        if dtype in ("string", "large_string"):
            return STRING
        if dtype.startswith(("int", "uint")):
            return INT
        if dtype.startswith("float"):
            return "float"
        return {"bool": BOOL}.get(dtype, dtype)
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        return f"list<{type_family(feature.feature)}>"
    if isinstance(feature, dict):
        # an image column read without HF metadata is the struct<bytes, path> it is stored as
        if isinstance(feature.get("bytes"), datasets.Value) and feature["bytes"].dtype == "binary":
            return IMAGE
        return "struct"
    return type(feature).__name__


def check_columns(benchmark: str, schema: datasets.Features | pa.Schema | Mapping | None,
                  columns: Mapping[str, str | tuple[str, ...]], table: str = "",
                  optional: Mapping[str, str | tuple[str, ...]] | None = None) -> None:
    """Raise ``SchemaError`` unless ``schema`` has each of ``columns`` with its type family (one of
    them, for a tuple) and each ``optional`` column it has with its family."""
    where = f" of the {table} table" if table else ""
    if schema is None:
        raise SchemaError(benchmark, {"*": f"unknown: the dataset{where} declares no features"})
    features = as_features(schema)
    problems = {}
    wanted = {**{c: f for c, f in (optional or {}).items() if c in features}, **columns}
    for column, family in wanted.items():
        families = (family,) if isinstance(family, str) else family
        if column not in features:
            problems[column] = f"is missing{where} (columns: {sorted(features)})"
        elif (found := type_family(features[column])) not in families:
            problems[column] = f"{where.strip()} has type {found}, expected {' or '.join(families)}".strip()
    if problems:
        raise SchemaError(benchmark, problems)


def as_features(schema: datasets.Features | pa.Schema | Mapping) -> Mapping[str, Any]:
    if isinstance(schema, pa.Schema):
        return datasets.Features.from_arrow_schema(schema)
    return schema


def image_bytes(value: Any) -> bytes | None:
    """Encoded bytes of an ``Image(decode=False)`` cell (``{"bytes", "path"}``), raw bytes, or None."""
    if value is None or isinstance(value, bytes):
        return value
    if value.get("bytes") is not None:
        return value["bytes"]
    if value.get("path"):
        return Path(value["path"]).read_bytes()
    return None


def bytes_id(data: bytes | None) -> str:
    """A content id for an image without one in the dataset (``"none"`` when there is no image)."""
    return hashlib.sha256(data).hexdigest()[:16] if data is not None else "none"


def present(value: Any) -> bool:
    """False for None, NaN, empty/blank strings and the literal ``"nan"`` (how pandas-exported TSVs mark gaps)."""
    if value is None or (isinstance(value, float) and value != value):
        return False
    return not (isinstance(value, str) and value.strip().lower() in ("", "nan"))


def options_block(options: list[tuple[str, str]]) -> str:
    """``"\\nA. first\\nB. second"`` for ``[(letter, text), ...]``."""
    return "".join(f"\n{letter}. {text}" for letter, text in options)


def resolve_split(data_files: Any, split: str | None, default: str) -> tuple[Any, str]:
    """``(data_files as a split mapping, split)``; with local files the split is their only key."""
    if data_files is None:
        return None, split or default
    files = dict(data_files) if isinstance(data_files, Mapping) else {"train": data_files}
    if split is None:
        if len(files) != 1:
            raise ValueError(f"data_files has splits {sorted(files)}: name one with split=")
        split = next(iter(files))
    if split not in files:
        raise ValueError(f"split {split!r} not in data_files (splits: {sorted(files)})")
    return files, split


def open_split(hf_id: str, config: str | None, split: str, data_files: Any, streaming: bool,
               revision: str | None = None):
    """The split as a ``datasets`` (Iterable)Dataset: local Parquet files when given, else the hub
    (at ``revision``, a commit / tag / branch of the dataset repository, when given)."""
    if data_files is not None:
        return datasets.load_dataset("parquet", data_files=data_files, split=split, streaming=streaming)
    return datasets.load_dataset(hf_id, config, split=split, streaming=streaming, revision=revision)


def grouped_order(keys: list[str]) -> list[int] | None:
    """Row order that makes rows with equal keys adjacent (first appearance order, stable);
    None when they already are."""
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    order = [i for rows in groups.values() for i in rows]
    return None if order == list(range(len(keys))) else order


CARDS: dict[str, type] = {}  # card name -> class, filled as the card modules are imported


class Benchmark:
    """Base of the benchmark cards. Instances are cheap; ``with_source`` overrides the HF source.

    A subclass that sets ``name`` registers itself: a new benchmark is one card module in
    ``pipeline/benchmarks/`` (imported by the package) plus its fixture builder.
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in CARDS and CARDS[cls.name] is not cls:
                raise ValueError(f"benchmark card {cls.name!r} is defined twice: {CARDS[cls.name]} and {cls}")
            CARDS[cls.name] = cls
    hf_id: str
    config: str | None = None
    split: str
    columns: ClassVar[dict[str, str | tuple[str, ...]]]  # column -> type family (or families) it must have
    optional_columns: ClassVar[dict[str, str]] = {}  # read when the dataset has them
    id_column: ClassVar[str | None] = None  # sample_id; None -> the row's position in the split
    image_id_column: ClassVar[str | None] = None  # image_id (and grouping key); None -> hash of the bytes
    image_column: ClassVar[str] = "image"
    headline: ClassVar[str]

    def __init__(self, hf_id: str | None = None, config: str | None = None, split: str | None = None):
        self.hf_id = hf_id or type(self).hf_id
        self.config = config if config is not None else type(self).config
        self.split = split or type(self).split

    def with_source(self, hf_id: str | None = None, config: str | None = None,
                    split: str | None = None) -> Benchmark:
        """A copy reading another mirror / config / split (the manifest's override)."""
        card = copy.copy(self)
        card.hf_id = hf_id or self.hf_id
        card.config = config if config is not None else self.config
        card.split = split or self.split
        return card

    def __repr__(self) -> str:
        return f"{type(self).__name__}(hf_id={self.hf_id!r}, config={self.config!r}, split={self.split!r})"

    # -- schema -------------------------------------------------------------------------------
    def validate(self, schema: datasets.Features | pa.Schema | Mapping | None) -> None:
        """Raise ``SchemaError`` (naming benchmark and column) unless every required column is there
        with its type family."""
        check_columns(self.name, schema, self.columns, optional=self.optional_columns)

    # -- row -> sample ------------------------------------------------------------------------
    def prompt(self, row: Mapping) -> str:
        raise NotImplementedError

    def targets(self, row: Mapping) -> dict:
        raise NotImplementedError

    def sample_id(self, row: Mapping, index: int | None) -> str:
        if self.id_column is not None:
            return str(row[self.id_column])
        if index is None:
            raise ValueError(f"benchmark {self.name!r} has no id column: to_sample needs the row index")
        return str(index)

    def image_id(self, row: Mapping, image: bytes | None) -> str:
        if self.image_id_column is not None and self.image_id_column in row:
            return str(row[self.image_id_column])
        return bytes_id(image)

    def to_sample(self, row: Mapping, index: int | None = None) -> dict:
        """The common-schema sample of one dataset row (``index``: its position in the split)."""
        image = image_bytes(row.get(self.image_column))
        return {
            "sample_id": self.sample_id(row, index),
            "image": image,
            "image_id": self.image_id(row, image),
            "question": row.get("question"),
            "prompt": self.prompt(row),
            "targets": json.dumps(self.targets(row), ensure_ascii=False),
            "evidence_patches": row.get("evidence_patches"),
        }

    # -- loading ------------------------------------------------------------------------------
    def load_rows(self, *, hf_id: str | None = None, config: str | None = None, split: str | None = None,
                  data_files: Any = None, streaming: bool = False,
                  revision: str | None = None) -> Iterator[tuple[int, dict]]:
        """``(position in the split, row)`` with the image left encoded, after validating the schema.

        In-memory datasets are reordered so that rows of one image are adjacent (first appearance
        order, stable); a streamed dataset keeps its own order.
        """
        files, split = resolve_split(data_files, split, self.split)
        ds = open_split(hf_id or self.hf_id, config if config is not None else self.config, split, files, streaming,
                        revision)
        self.validate(ds.features)
        yield from self._encoded_rows(ds, streaming)

    def _encoded_rows(self, ds, streaming: bool) -> Iterator[tuple[int, dict]]:
        if isinstance(ds.features[self.image_column], datasets.Image):
            ds = ds.cast_column(self.image_column, datasets.Image(decode=False))
        order = None
        if not streaming and self.image_id_column in ds.features:
            keys = ds.select_columns([self.image_id_column]).to_list()
            order = grouped_order([self.image_id(row, None) for row in keys])
        if order is None:
            yield from enumerate(ds)
        else:
            yield from zip(order, ds.select(order))

    # -- scoring ------------------------------------------------------------------------------
    def score(self, df: pl.DataFrame) -> dict[str, float]:
        """Metrics of a prediction frame ``[sample_id, prediction, error, targets]`` (fractions in
        [0, 1] unless the metric says otherwise); error rows count as wrong."""
        raise NotImplementedError


#: the prediction, null on error rows (every evaluator scores a null prediction as wrong)
ANSWERED = pl.when(pl.col("error").is_null()).then(pl.col("prediction").cast(pl.String)).alias("prediction")


def with_targets(df: pl.DataFrame, dtype: pl.Struct) -> pl.DataFrame:
    """``[sample_id, prediction, <targets fields>]``: the prediction nulled on error rows and the
    JSON ``targets`` decoded with ``dtype`` and unnested."""
    return df.select("sample_id", ANSWERED, pl.col("targets").str.json_decode(dtype)).unnest("targets")


def vqa_accuracy_score(df: pl.DataFrame, scorer: str = "textvqa") -> dict[str, float]:
    """``{"accuracy": mean VQA accuracy}`` from the annotators' ``answers`` in the targets, by the
    official rule of ``scorer``: ``"textvqa"`` (``evaluators.vqa``), ``"vqav2"`` or ``"vizwiz"``
    (``evaluators.vqa_eval``).

    A split without answers (VQAv2 test-dev, VizWiz test: scored by the EvalAI server from the
    ``submission`` files) is not scored here: ``{}``.
    """
    from pipeline.evaluators.vqa import vqa_accuracy
    from pipeline.evaluators.vqa_eval import vizwiz_accuracy, vqav2_accuracy

    accuracy = {"textvqa": vqa_accuracy, "vqav2": vqav2_accuracy, "vizwiz": vizwiz_accuracy}[scorer]
    t = with_targets(df, pl.Struct({"answers": pl.List(pl.String)}))
    if not t["answers"].list.len().fill_null(0).gt(0).any():
        return {}
    scores = accuracy(t["prediction"].to_list(), t["answers"].to_list())
    return {"accuracy": sum(scores) / len(scores)}
