"""gpu_check measures in the dtype of the manifest it imitates: float16 for every paper manifest."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import gpu_check  # noqa: E402


@pytest.mark.parametrize("name", ["llava15_7b_paper", "llava15_13b_paper", "llava_next_7b_paper"])
def test_paper_manifests_run_fp16(name):
    assert gpu_check.manifest_dtype(ROOT / "manifests" / f"{name}.yaml") == torch.float16


def test_dtype_follows_the_manifest(tmp_path):
    text = (ROOT / "manifests" / "llava15_7b_paper.yaml").read_text().replace("dtype: float16", "dtype: bfloat16")
    assert "bfloat16" in text
    (tmp_path / "m.yaml").write_text(text)
    assert gpu_check.manifest_dtype(tmp_path / "m.yaml") == torch.bfloat16
