"""The dependencies point one way: the method registry names functions and imports nothing from the
model adapter; the adapter imports nothing from the Ray stages."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def test_method_registry_imports_nothing_from_the_adapter():
    assert not {m for m in _imports(ROOT / "pipeline" / "methods.py") if m.startswith("pipeline.model")}


def test_adapter_imports_nothing_from_the_stages():
    for path in (ROOT / "pipeline" / "model").glob("*.py"):
        assert not {m for m in _imports(path) if m.startswith("pipeline.stages")}, path.name


def test_icctp_imports_neither_ray_nor_the_pipeline():
    for path in (ROOT / "icctp").glob("*.py"):
        assert not {m for m in _imports(path) if m.split(".")[0] in ("ray", "pipeline")}, path.name
