"""scripts/gpu_check.py: the --tiny CPU run prints its table, and its staged path is the adapter's."""
from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_check.py"
sys.path.insert(0, str(SCRIPT.parent))

import gpu_check  # noqa: E402


pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_table(fixtures_root) -> list[list[str]]:
    """Cells of the Markdown table rows printed by ``gpu_check.py --tiny`` (header and rule dropped)."""
    threads, out = torch.get_num_threads(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            gpu_check.main(["--tiny"])
    finally:
        torch.set_num_threads(threads)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:]]


def test_tiny_table_has_a_row_per_method_and_budget(tiny_table):
    pairs = [(row[0], int(row[1])) for row in tiny_table]
    assert pairs == [(m, b) for m in gpu_check.METHODS for b in gpu_check.BUDGETS]


def test_tiny_table_kept_counts_are_exact(tiny_table):
    for method, budget, kept, *_ in tiny_table:
        expected = 576 if method == "full" else min(int(budget), 576)
        assert int(kept) == expected, (method, budget, kept)


def test_tiny_table_timings_are_numbers(tiny_table):
    for row in tiny_table:
        vision, select, prefill, generate = (float(cell) for cell in row[3:7])
        assert vision > 0 and select >= 0 and prefill > 0 and generate > 0, row
        assert row[7] == "n/a (cpu)"
        assert 0 <= float(row[8].rstrip("%")) <= 100, row


@pytest.fixture(scope="module")
def tiny_vlm(fixtures_root):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield gpu_check.build_vlm(True, torch.device("cpu"), torch.float32)
    torch.set_num_threads(threads)


@pytest.mark.parametrize("method", ["icctp", "cls"])
def test_staged_path_equals_vlm_generate(tiny_vlm, method):
    """The stages gpu_check times give the adapter's kept indices and greedy answers."""
    vlm = tiny_vlm
    samples = gpu_check.make_samples(3)
    prepared = gpu_check.prepare(vlm, samples)
    staged = gpu_check.run_once(vlm, prepared, method, 64, 4)
    outs = vlm.generate(samples, method=method, budget=64, max_new_tokens=4)
    visuals = gpu_check.llava.visual_tokens(vlm.model, vlm.processor, prepared.images)
    kept = gpu_check.kept_indices(method, 64, visuals, prepared)
    assert [out["kept_indices"] for out in outs] == [k.tolist() for k in kept]
    answers = []
    for tokens in staged["tokens"].tolist():
        ids = tokens[: tokens.index(vlm.eos_id)] if vlm.eos_id in tokens else tokens
        answers.append(vlm.tokenizer.decode(ids, skip_special_tokens=True).strip())
    assert [out["prediction"] for out in outs] == answers
    assert any(answers)
