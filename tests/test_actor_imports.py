"""The actors that only move rows (the write stage, the resume filter) import neither torch nor ``datasets``:
every run starts them in fresh processes, which pay for their imports (torch alone: ~1.5 s of CPU each)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from raytools import REPO


@pytest.mark.slow
def test_row_moving_actor_modules_import_neither_torch_nor_datasets():
    code = ("import sys, pipeline.stages.write, pipeline.stages.resume; "
            "print([m for m in ('torch', 'datasets') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, PYTHONPATH=str(REPO)), cwd=REPO,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_schemas_timing_columns_are_the_models_steps_and_the_rest():
    """``pipeline.stages.schema`` names the timing columns itself (importing the model's names would import torch)."""
    from pipeline.model.timing import STEP_TIMINGS
    from pipeline.stages.schema import TIMING_COLUMNS

    assert TIMING_COLUMNS == (*STEP_TIMINGS, "other_ms")
