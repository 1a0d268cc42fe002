"""Regression tolerances: how far a metric may fall, in absolute points, before compare fails.

Read from a YAML file holding either the fields below at top level or under a ``tolerances:``
key (so a manifest can carry them); every field has a default::

    tolerances:
      default: 0.5              # points, any metric without its own entry
      metrics:                  # "metric" or "benchmark/metric" -> points
        perception: 10.0
        mme/cognition: 10.0
      max_lost_rows: 0          # rows a benchmark x method x budget may lose
      max_new_errors: 0         # error rows it may gain
"""
from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Tolerances(BaseModel):
    """Tolerances in points (see :func:`pipeline.report.headline.point_scale`)."""

    model_config = ConfigDict(extra="forbid")

    default: float = Field(0.5, ge=0)
    metrics: dict[str, float] = Field(default_factory=lambda: {"perception": 10.0, "cognition": 10.0})
    max_lost_rows: int = Field(0, ge=0)
    max_new_errors: int = Field(0, ge=0)

    def for_metric(self, benchmark: str, metric: str) -> float:
        """The tolerance of ``benchmark``'s ``metric``: ``benchmark/metric``, then ``metric``,
        then ``default``."""
        for key in (f"{benchmark}/{metric}", metric):
            if key in self.metrics:
                return self.metrics[key]
        return self.default


def load_tolerances(path: Path | None) -> Tolerances:
    """Tolerances from ``path`` (defaults when None); errors name the file and the bad key."""
    if path is None:
        return Tolerances()
    path = Path(path)
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping, got {type(data).__name__}")
    section = data.get("tolerances", data)
    if section is None:
        return Tolerances()
    try:
        return Tolerances.model_validate(section)
    except ValidationError as exc:
        raise ValueError(f"{path}: invalid tolerances: {exc}") from exc


def run_tolerances(run_info: dict) -> Tolerances | None:
    """The ``tolerances`` section of the manifest recorded in ``run.json`` (None when empty)."""
    section = (run_info.get("manifest") or {}).get("tolerances")
    if not section:
        return None
    try:
        return Tolerances.model_validate(section)
    except ValidationError as exc:
        raise ValueError(f"run.json manifest: invalid tolerances: {exc}") from exc
