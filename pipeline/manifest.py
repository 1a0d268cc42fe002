"""Run manifests: which model, benchmarks, pruning methods and budgets a run evaluates.

A manifest is YAML validated by pydantic (unknown keys are errors that name the key)::

    name: tiny
    model: {path: "fixture:llava15"}           # a local dir, a hub id, or fixture:<kind>
    benchmarks:
      vqav2: {data_files: "fixture:vqav2"}      # or {hf_id: ..., config: ..., split: ...}
      mmvet: {hf_id: lmms-lab/MMVet, judge: "my_graders:gpt4_judge", max_new_tokens: 1024}
      mme: {hf_id: lmms-lab/MME, revision: <dataset commit>}   # pin the dataset version
      mmbench_cn_en: {benchmark: mmbench_cn, nouns: en}   # Chinese questions through the English extractor
    methods:
      - {method: full}
      - {method: icctp, params: {rho_g: 0.6, alpha: 0.3}}
      - {label: icctp-rho_g0.4, method: icctp, params: {rho_g: 0.4}}
    budgets: [576, 64]

``full`` is budget independent: it runs once and is reported at ``REFERENCE_BUDGET`` (576,
the LLaVA-1.5 visual-token count). Pruning methods run at every budget below the reference; a
budget at or above it is the unpruned model and is reported as ``full``.
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from icctp.budget import REFERENCE_TOKENS
from pipeline.methods import METHODS, check_method

REFERENCE_BUDGET = REFERENCE_TOKENS  # full runs once here; a budget at or above it is unpruned
FIXTURE_PREFIX = "fixture:"


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file and the bad key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(_Strict):
    path: str = Field(description="local directory, HF hub id, or fixture:<llava15|llava_next>")
    dtype: str | None = Field(None, description="float32 | bfloat16 | float16; default: float16 on GPU, float32 on CPU")


class BenchmarkSource(_Strict):
    benchmark: str | None = Field(None, description="benchmark card to use; default: the entry's own name")
    hf_id: str | None = None
    config: str | None = None
    split: str | None = None
    data_files: str | dict[str, str] | None = Field(None, description="Parquet file(s) or fixture:<name>")
    streaming: bool = False
    revision: str | None = Field(None, description="dataset commit (or tag/branch) to read from the hub; pins the data")
    judge: str | None = Field(None, description="MM-Vet grader 'module:callable' (question, answer, prediction) -> [0, 1]")
    max_new_tokens: int | None = Field(None, ge=1, description="generation limit here; default: generation.max_new_tokens")
    nouns: Literal["auto", "en", "zh"] = Field(
        "auto", description="noun-phrase extractor: auto (per question: Chinese when mostly CJK), en (spaCy), zh (jieba)")


class MethodSpec(_Strict):
    method: str = Field(description=f"one of {', '.join(METHODS)} (pipeline/methods.py)")
    label: str | None = Field(None, description="the variant's name in outputs; default: the method name")
    params: dict[str, Any] = Field(default_factory=dict, description="the method's options, checked against its registry entry")
    budgets: list[int] | None = Field(None, description="this method's budgets; default: the manifest's `budgets` "
                                      "(e.g. the budgets a baseline's paper reports)")

    @property
    def name(self) -> str:
        """The variant label (defaults to the method name)."""
        return self.label or self.method

    @field_validator("budgets")
    @classmethod
    def _method_budgets_positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (not v or any(b < 1 for b in v)):
            raise ValueError(f"budgets must be a non-empty list of integers >= 1, got {v}")
        return v

    @field_validator("label")
    @classmethod
    def _label_is_path_safe(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+", v):
            raise ValueError(f"label {v!r} may only contain letters, digits and _ . + -")
        return v

    @model_validator(mode="after")
    def _known_method_and_options(self) -> MethodSpec:
        check_method(self.method, self.params)
        if self.label in METHODS and self.label != self.method:
            raise ValueError(f"label {self.label!r} names another method; choose a label that is not one of "
                             f"{', '.join(METHODS)}")
        return self


@dataclass(frozen=True)
class Variant:
    """One (method, budget) pair a run evaluates.

    ``label`` names it in every output (the ``variant`` column, partition directories, report
    rows); ``method`` is the algorithm (``pipeline.methods``) with its ``params``.
    """

    label: str
    method: str
    budget: int
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """``label@budget``: identifies the variant's rows within a benchmark."""
        return f"{self.label}@{self.budget}"


class Generation(_Strict):
    max_new_tokens: int = Field(16, ge=1)


class Compute(_Strict):
    batch_size: int = Field(16, ge=1, description="samples per model batch")
    max_batch_tokens: int | None = Field(None, ge=1, description="tokens per language-model batch (rows x longest "
                                         "prompt, kept visual tokens included); None: batch_size alone bounds it")
    vlm_actors: int = Field(1, ge=1, description="model replicas (one GPU each on a GPU cluster)")
    nouns_actors: int = Field(1, ge=1)
    num_gpus: float = Field(0, ge=0, description="GPUs per model actor; 0 = CPU")
    vlm_resources: dict[str, float] = Field(default_factory=dict, description="custom Ray resources per model "
                                            "actor (e.g. a node label or an accelerator type)")
    vlm_num_cpus: float = Field(1.0, gt=0)
    nouns_num_cpus: float = Field(0.25, gt=0)
    preprocess_actors: int | None = Field(None, ge=1, description="image/text preprocessing actors; "
                                          "default: autoscale from 1 to a quarter of the cluster's CPUs")
    preprocess_num_cpus: float = Field(0.5, gt=0)
    shard_rows: int = Field(64, ge=1, description="rows per input shard (never splits one image's rows)")
    block_rows: int = Field(32, ge=1, description="rows per Ray block: how much work a crash can lose")
    stall_timeout_s: float = Field(600, gt=0, description="after a node is lost, seconds without a written "
                                   "prediction before the run stops with an error naming it (pipeline.watch)")


class SharedSpaceSpec(_Strict):
    sigma: float | Literal["rms"] = Field("rms", description="noise std; rms: each sample's feature RMS "
                                          "(LM embeddings are far from unit scale)")
    temperature: float | None = Field(0.03, gt=0, description="question-to-image attention pooling of the clean "
                                      "image; null: the plain mean")


class ClipSpaceSpec(_Strict):
    path: str = Field(description="CLIPModel directory or hub id (the LLaVA tower's CLIP), or fixture:clip")
    image_layer: int | None = Field(None, ge=0, description="0-based vision block whose output is bottlenecked; "
                                    "default 3/4 of the depth")
    text_layer: int | None = Field(None, ge=0, description="0-based text block; default 3/4 of the depth")
    sigma: float | Literal["rms"] = Field(1.0, description="noise std; 1 is the official code's")


class AttributionSpec(_Strict):
    """The attribution job's settings (jobs/attribute.py); bottleneck defaults are the official M2IB ones."""

    spaces: list[Literal["shared", "clip"]] = Field(["shared"], min_length=1)
    beta_image: float = Field(0.1, ge=0)
    beta_text: float = Field(0.1, ge=0)
    alpha0: float = 5.0
    steps: int = Field(10, ge=1)
    lr: float = Field(1.0, gt=0)
    n_noise: int = Field(10, ge=1)
    shared: SharedSpaceSpec = SharedSpaceSpec()
    clip: ClipSpaceSpec | None = None
    control: bool = Field(True, description="also attribute each question with another question's image")
    chunk: int = Field(16, ge=1, description="questions per bottleneck batch")
    figures: int = Field(4, ge=0)
    bootstrap: int = Field(1000, ge=100)

    @model_validator(mode="after")
    def _clip_needs_a_model(self) -> AttributionSpec:
        if "clip" in self.spaces and self.clip is None:
            raise ValueError("spaces includes clip: set attribution.clip.path")
        if len(set(self.spaces)) != len(self.spaces):
            raise ValueError(f"spaces repeats a space: {self.spaces}")
        return self


class Manifest(_Strict):
    name: str
    model: ModelSpec
    benchmarks: dict[str, BenchmarkSource]
    methods: list[MethodSpec]
    budgets: list[int]
    generation: Generation = Generation()
    compute: Compute = Compute()
    tolerances: dict[str, Any] = Field(default_factory=dict, description="regression tolerances (jobs/compare.py)")
    attribution: AttributionSpec | None = Field(None, description="CIBA attribution settings (jobs/attribute.py)")

    @field_validator("budgets")
    @classmethod
    def _budgets_positive(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError(f"budgets must be a non-empty list of integers >= 1, got {v}")
        return sorted(set(v), reverse=True)

    @model_validator(mode="after")
    def _labels_unique(self) -> Manifest:
        names = [m.name for m in self.methods]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"method labels must be unique; repeated: {sorted(dup)} (set `label:`)")
        if not self.benchmarks:
            raise ValueError("benchmarks: at least one benchmark is required")
        return self

    @model_validator(mode="after")
    def _known_benchmarks_and_fixtures(self) -> Manifest:
        from pipeline.benchmarks import BENCHMARKS
        from pipeline.fixtures import MODEL_KINDS, dataset_names

        if self.model.path.startswith(FIXTURE_PREFIX) and self.model.path[len(FIXTURE_PREFIX):] not in MODEL_KINDS:
            raise ValueError(f"model.path {self.model.path!r}: unknown fixture model; allowed: "
                             f"{', '.join(FIXTURE_PREFIX + k for k in MODEL_KINDS)}")
        for entry, src in self.benchmarks.items():
            card = src.benchmark or entry
            if card not in BENCHMARKS:
                raise ValueError(f"benchmarks.{entry}: unknown benchmark {card!r}; allowed: {', '.join(BENCHMARKS)}")
            if src.judge is not None:
                if not hasattr(BENCHMARKS[card], "judge"):
                    raise ValueError(f"benchmarks.{entry}.judge: benchmark {card!r} is not graded by a judge")
                load_callable(src.judge, f"benchmarks.{entry}.judge")
            files = src.data_files
            if isinstance(files, str) and files.startswith(FIXTURE_PREFIX) and \
                    files[len(FIXTURE_PREFIX):] not in (*BENCHMARKS, *dataset_names()):
                raise ValueError(f"benchmarks.{entry}.data_files {files!r}: unknown fixture dataset; allowed: "
                                 f"{', '.join(FIXTURE_PREFIX + n for n in (*BENCHMARKS, *dataset_names()))}")
        return self

    @model_validator(mode="after")
    def _options_fit_budgets(self) -> Manifest:
        pruned = [b for b in self.budgets if b < REFERENCE_BUDGET]
        for i, m in enumerate(self.methods):
            pivots = m.params.get("n_pivots")
            if m.method == "dart_pre" and pivots is not None and pruned and pivots > min(pruned):
                raise ValueError(f"methods.{i}.params.n_pivots = {pivots} exceeds the smallest budget "
                                 f"{min(pruned)}; allowed: 1..{min(pruned)}")
        return self

    def restrict(self, *, budgets: list[int] | None = None, methods: list[str] | None = None,
                 benchmarks: list[str] | None = None, compute: dict[str, Any] | None = None) -> Manifest:
        """A copy narrowed or overridden from the command line; unknown names are errors."""
        data = self.model_dump()
        if budgets is not None:  # the command line's budgets apply to every method
            data["budgets"] = budgets
            for m in data["methods"]:
                m["budgets"] = None
        if methods:
            unknown = sorted(set(methods) - {m.name for m in self.methods})
            if unknown:
                raise ManifestError(f"--methods: {unknown} not in the manifest ({[m.name for m in self.methods]})")
            data["methods"] = [m for m in data["methods"] if (m["label"] or m["method"]) in methods]
        if benchmarks:
            unknown = sorted(set(benchmarks) - set(self.benchmarks))
            if unknown:
                raise ManifestError(f"--benchmarks: {unknown} not in the manifest ({sorted(self.benchmarks)})")
            data["benchmarks"] = {k: v for k, v in data["benchmarks"].items() if k in benchmarks}
        data["compute"].update({k: v for k, v in (compute or {}).items() if v is not None})
        try:
            return Manifest.model_validate(data)
        except ValidationError as e:
            raise ManifestError(_describe(e, "command line")) from None

    def max_new_tokens(self) -> dict[str, int]:
        """Generation limit per benchmark entry (its own, else ``generation.max_new_tokens``)."""
        return {name: src.max_new_tokens or self.generation.max_new_tokens for name, src in self.benchmarks.items()}

    def variants(self) -> list[Variant]:
        """The variants to run: ``full`` once at the reference, pruning methods below it."""
        out = []
        for m in self.methods:
            budgets = [b for b in (m.budgets or self.budgets) if b < REFERENCE_BUDGET] if METHODS[m.method].prunes \
                else [REFERENCE_BUDGET]
            out.extend(Variant(m.name, m.method, b, dict(m.params)) for b in budgets)
        return out


def load_callable(spec: str, where: str):
    """The object ``module:attribute`` names; ``ValueError`` naming ``where`` when it cannot be loaded."""
    module, _, attr = spec.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError, ValueError) as e:
        raise ValueError(f"{where}: cannot load {spec!r} ({e})") from None


def load_manifest(path: str | Path, overrides: dict[str, Any] | None = None) -> Manifest:
    """Read and validate a manifest, applying top-level ``overrides`` (e.g. budgets from the CLI)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ManifestError(f"manifest not found: {path}") from None
    except yaml.YAMLError as e:
        raise ManifestError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ManifestError(f"{path}: expected a mapping at the top level")
    raw.update({k: v for k, v in (overrides or {}).items() if v is not None})
    try:
        return Manifest.model_validate(raw)
    except ValidationError as e:
        raise ManifestError(_describe(e, str(path))) from None


def _describe(error: ValidationError, source: str) -> str:
    """One message per problem, each naming the field, the bad value and what is allowed."""
    lines = [f"{source}: invalid manifest"]
    for err in error.errors():
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        got = "" if err["type"] == "value_error" else f" (got {err['input']!r})"
        lines.append(f"  {where + ': ' if where else ''}{msg}{got}")
    return "\n".join(lines)
