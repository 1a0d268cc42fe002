"""Run manifests: which model, benchmarks, pruning methods and budgets a run evaluates.

A manifest is YAML validated by pydantic (unknown keys are errors that name the key)::

    name: tiny
    model: {path: "fixture:llava15"}           # a local dir, a hub id, or fixture:<kind>
    benchmarks:
      vqav2: {data_files: "fixture:vqav2"}      # or {hf_id: ..., config: ..., split: ...}
      mmvet: {hf_id: lmms-lab/MMVet, judge: "my_graders:gpt4_judge"}   # MM-Vet needs a judge
      mmbench_cn_en: {benchmark: mmbench_cn, nouns: en}   # Chinese questions through the English extractor
    methods:
      - {method: full}
      - {method: icctp, params: {rho_g: 0.6, alpha: 0.3}}
      - {label: icctp-rho_g0.4, method: icctp, params: {rho_g: 0.4}}
    budgets: [576, 64]

``full`` is budget independent: it runs once and is reported at ``reference_budget`` (576,
the LLaVA-1.5 visual-token count). Pruning methods run at every budget below the reference; a
budget at or above it is the unpruned model and is reported as ``full``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REFERENCE_BUDGET = 576
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
    judge: str | None = Field(None, description="MM-Vet grader 'module:callable' (question, answer, prediction) -> [0, 1]")
    nouns: Literal["auto", "en", "zh"] = Field(
        "auto", description="noun-phrase extractor: auto (per question: Chinese when mostly CJK), en (spaCy), zh (jieba)")


class MethodSpec(_Strict):
    method: str
    label: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)

    @property
    def name(self) -> str:
        """The label written to the ``method`` column (defaults to the method name)."""
        return self.label or self.method

    @field_validator("label")
    @classmethod
    def _label_is_path_safe(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9_.+-]+", v):
            raise ValueError(f"label {v!r} may only contain letters, digits and _ . + -")
        return v


class Generation(_Strict):
    max_new_tokens: int = Field(16, ge=1)


class Compute(_Strict):
    batch_size: int = Field(16, ge=1, description="samples per model batch")
    vlm_actors: int = Field(1, ge=1, description="model replicas (one GPU each on a GPU cluster)")
    nouns_actors: int = Field(1, ge=1)
    num_gpus: float = Field(0, ge=0, description="GPUs per model actor; 0 = CPU")
    vlm_num_cpus: float = Field(1.0, gt=0)
    nouns_num_cpus: float = Field(0.25, gt=0)
    shard_rows: int = Field(64, ge=1, description="rows per input shard (never splits one image's rows)")
    block_rows: int = Field(32, ge=1, description="rows per Ray block: how much work a crash can lose")


class Manifest(_Strict):
    name: str
    model: ModelSpec
    benchmarks: dict[str, BenchmarkSource]
    methods: list[MethodSpec]
    budgets: list[int]
    generation: Generation = Generation()
    compute: Compute = Compute()
    tolerances: dict[str, Any] = Field(default_factory=dict, description="regression tolerances (jobs/compare.py)")

    @field_validator("budgets")
    @classmethod
    def _budgets_positive(cls, v: list[int]) -> list[int]:
        if not v or any(b < 1 for b in v):
            raise ValueError(f"budgets must be a non-empty list of integers >= 1, got {v}")
        return sorted(set(v), reverse=True)

    @model_validator(mode="after")
    def _labels_unique(self) -> "Manifest":
        names = [m.name for m in self.methods]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"method labels must be unique; repeated: {sorted(dup)} (set `label:`)")
        if not self.benchmarks:
            raise ValueError("benchmarks: at least one benchmark is required")
        return self

    def restrict(self, *, budgets: list[int] | None = None, methods: list[str] | None = None,
                 benchmarks: list[str] | None = None, compute: dict[str, Any] | None = None) -> "Manifest":
        """A copy narrowed or overridden from the command line; unknown names are errors."""
        data = self.model_dump()
        if budgets:
            data["budgets"] = budgets
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
            raise ManifestError(str(e)) from None

    def variants(self) -> list[tuple[MethodSpec, int]]:
        """(method, budget) pairs to run: ``full`` once at the reference, pruning below it."""
        out = []
        for m in self.methods:
            if m.method == "full":
                out.append((m, REFERENCE_BUDGET))
            else:
                out.extend((m, b) for b in self.budgets if b < REFERENCE_BUDGET)
        return out


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
        lines = [f"{path}: invalid manifest"]
        for err in e.errors():
            where = ".".join(str(p) for p in err["loc"]) or "(top level)"
            lines.append(f"  {where}: {err['msg']}")
        raise ManifestError("\n".join(lines)) from None
