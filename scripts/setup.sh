#!/usr/bin/env bash
# Create .venv/ at the repo root and install the project (editable, with the dev extra).
# Idempotent: re-running only installs what changed. Offline except for the package registry.
# On a machine without an NVIDIA GPU the CPU torch wheel (torch==2.13.0) is installed first,
# so no resolver ever pulls a multi-GB CUDA build. GPU users: install your CUDA torch into
# .venv first (or set ICCTP_TORCH_SPEC), the range in pyproject.toml accepts it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q "${ICCTP_TORCH_SPEC:-torch}"
  else
    .venv/bin/python -m pip install -q "${ICCTP_TORCH_SPEC:-torch==2.13.0}"
  fi
fi
.venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
# the report's CJK font: Noto Sans SC Regular cut once from the packaged variable font (pipeline/report/fonts.py)
.venv/bin/python -c "from pipeline.report.fonts import cjk_font_file; print(f'setup: CJK font {cjk_font_file()}')"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers, ray; print(f"torch {torch.__version__}, transformers {transformers.__version__}, ray {ray.__version__}")'))"
