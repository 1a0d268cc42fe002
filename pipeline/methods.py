"""The one registry of visual-token selection methods: what each needs and which options it takes.

    METHODS["icctp"].needs          # frozenset({"cls_attention", "noun_centers"})
    check_method("icctp", {"alpha": 0.3})   # ValueError naming the option, the value and what is allowed

Every entry names the function that implements it; its ``params`` are exactly that function's
keyword options (a test holds them equal to the real signature), each with its allowed range, so
a manifest is checked completely before any work starts. ``needs`` says which inputs the adapter
must compute for the method:

- ``cls_attention``: the vision tower's CLS→patch attention (B, n);
- ``noun_centers``: noun-phrase centers of the question in the LLM embedding space (B, K, d);
- ``seeds``: one seed per sample (drawn from the prompt and the image, independent of the batch);
- ``tower_states``: the method acts on the vision tower's output before the projector, per tower pass
  (``pipeline.model.vision.TowerStates``: the selected layer's hidden states, keys and per-head CLS
  attention, the last layer's keys and CLS query, all from the one tower pass);
- ``merging_encoder``: the method runs inside the vision tower (ToMe), which the adapter then runs
  with merging instead of the stock pass;
- ``llm_layers``: the method prunes inside the LLM (FastV, DART, SparseVLM): its function is a
  pruner class of ``icctp.layer_pruners`` (called with the budget and the LLM's layer count), which
  declares its layers and what it needs there; the visual tokens enter the LLM unpruned.

To add a method: write its function (see docs/extending.md for the signature each kind of method
has), then add one ``Method`` here. ``cls`` is an alias of ``fastervlm``. Functions are named by
module and attribute and imported on demand, so this module imports nothing from the model adapter.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

NEEDS = frozenset({"cls_attention", "noun_centers", "seeds", "tower_states", "merging_encoder", "llm_layers"})


@dataclass(frozen=True)
class Param:
    """One keyword option of a method: its type and the values it may take.

    ``low``/``high`` bound numbers (``*_open`` excludes the bound); ``choices`` lists the allowed
    strings; ``nullable`` allows ``None`` (the function then derives a value). ``kind=list``: a
    non-empty, strictly increasing list of ints, each within ``low``/``high``.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[str, ...] | None = None
    nullable: bool = False

    def allowed(self) -> str:
        """The allowed values in words, e.g. ``a float in (0, 1)``."""
        if self.kind is bool:
            return "true or false" + (" or null" if self.nullable else "")
        if self.kind is list:
            item = Param(int, self.low, self.high).allowed()
            return f"a non-empty, strictly increasing list, each {item}" + (" or null" if self.nullable else "")
        if self.choices:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = f"{'an int' if self.kind is int else 'a float'}"
            if self.low is not None or self.high is not None:
                lo = "-inf" if self.low is None else f"{self.low:g}"
                hi = "inf" if self.high is None else f"{self.high:g}"
                left = "(" if self.low_open or self.low is None else "["
                right = ")" if self.high_open or self.high is None else "]"
                text += f" in {left}{lo}, {hi}{right}"
        return text + (" or null" if self.nullable else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.nullable
        if self.kind is bool:
            return isinstance(value, bool)
        if self.kind is list:
            item = Param(int, self.low, self.high)
            return (isinstance(value, (list, tuple)) and len(value) > 0 and all(item.accepts(v) for v in value)
                    and all(a < b for a, b in zip(value, value[1:])))
        if self.choices is not None:
            return value in self.choices
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False
        if self.kind is int and not isinstance(value, int):
            return False
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))


@dataclass(frozen=True)
class Method:
    """A selection method: its implementing function, its options and the inputs it needs."""

    name: str
    function: Callable[[], Callable]  # returns the implementing function (imported on demand)
    params: dict[str, Param] = field(default_factory=dict)
    needs: frozenset[str] = frozenset()

    @property
    def prunes(self) -> bool:
        """False for the unpruned model (``full``): budgets do not apply to it."""
        return self.name != "full"

    @property
    def in_llm(self) -> bool:
        """True when the method prunes inside the LLM (visual tokens enter it unpruned)."""
        return "llm_layers" in self.needs


def _baseline(name: str) -> Callable[[], Callable]:
    def load():
        from icctp import baselines

        return getattr(baselines, name)

    return load


def _model(module: str, name: str) -> Callable[[], Callable]:
    def load():
        import importlib

        return getattr(importlib.import_module(f"pipeline.model.{module}"), name)

    return load


def _pruner(name: str) -> Callable[[], Callable]:
    def load():
        from icctp import layer_pruners

        return getattr(layer_pruners, name)

    return load


_UNIT_OPEN = Param(float, 0.0, 1.0, low_open=True, high_open=True)
_UNIT = Param(float, 0.0, 1.0)
_PRUMERGE = {"adaptive": Param(bool), "ratio": Param(float, 0.0, 1.0, low_open=True, nullable=True)}
_MODE = Param(str, choices=("kept", "equivalent"))
_IN_LLM = frozenset({"llm_layers"})

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("full", _baseline("select_full")),
        Method("random", _baseline("select_random"), needs=frozenset({"seeds"})),
        Method("cls", _baseline("select_cls"), needs=frozenset({"cls_attention"})),
        Method("fastervlm", _baseline("select_cls"), needs=frozenset({"cls_attention"})),
        Method("visionzip", _model("tower_methods", "visionzip"), {"dominant_share": _UNIT},
               needs=frozenset({"tower_states"})),
        Method("visionzip_proj", _baseline("select_visionzip"), {"dominant_ratio": _UNIT},
               needs=frozenset({"cls_attention"})),
        Method("tome", _model("tome", "merged_visual_tokens"), needs=frozenset({"merging_encoder"})),
        Method("prumerge_plus", _model("tower_methods", "prumerge_plus"), _PRUMERGE, needs=frozenset({"tower_states"})),
        Method("prumerge", _model("tower_methods", "prumerge"), _PRUMERGE, needs=frozenset({"tower_states"})),
        Method("dart_pre", _baseline("select_dart_pre"), {"n_pivots": Param(int, 1, nullable=True)},
               needs=frozenset({"cls_attention"})),
        Method("icctp", _baseline("select_icctp"),
               {"rho_g": _UNIT_OPEN, "alpha": _UNIT, "allocation": Param(str, choices=("exact", "paper")),
                "rho_c": Param(float, 0.0, 1.0, low_open=True, nullable=True)},
               needs=frozenset({"cls_attention", "noun_centers"})),
        Method("fastv", _pruner("FastVPruner"), {"K": Param(int, 1), "budget_mode": _MODE}, needs=_IN_LLM),
        Method("dart", _pruner("DARTPruner"),
               {"K": Param(int, 1), "pivot_image": Param(int, 1), "pivot_text": Param(int, 1), "budget_mode": _MODE},
               needs=_IN_LLM),
        Method("sparsevlm", _pruner("SparseVLMPruner"), {"layers": Param(list, 0), "budget_mode": _MODE},
               needs=_IN_LLM),
    )
}


def get_method(name: str) -> Method:
    """The registered method ``name``; ``ValueError`` listing the known names otherwise."""
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}") from None


def check_method(name: str, params: dict[str, Any]) -> Method:
    """The method ``name`` after checking ``params`` against its options; ``ValueError`` otherwise.

    The message names the option, the bad value and what is allowed.
    """
    method = get_method(name)
    for key, value in params.items():
        if key not in method.params:
            allowed = ", ".join(method.params) or "none"
            raise ValueError(f"method {name!r} has no option {key!r}; its options: {allowed}")
        if not method.params[key].accepts(value):
            raise ValueError(f"{name}.{key} = {value!r} is out of range; allowed: {method.params[key].allowed()}")
    return method
