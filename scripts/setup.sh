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
# headless Chromium for the browser tests (pytest -m browser): the Debian package, where apt-get can run
if [ -z "${ICCTP_NO_BROWSER:-}" ] && ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: apt-get could not install chromium; the browser tests will be skipped"
  else
    echo "setup: no Chromium and no root apt-get; install the Debian package chromium to run the browser tests"
  fi
fi
# the report's CJK font: Noto Sans SC Regular cut once from the packaged variable font (pipeline/report/fonts.py)
.venv/bin/python -c "from pipeline.report.fonts import cjk_font_file; print(f'setup: CJK font {cjk_font_file()}')"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch, transformers, ray; print(f"torch {torch.__version__}, transformers {transformers.__version__}, ray {ray.__version__}")'))"
