"""Stage clocks that wait for the accelerator, so each stage's time is its own.

CUDA kernels run asynchronously: without a synchronize, a stage's wall time holds only its kernel
launches and the work lands in whichever later stage first waits for a result.
"""
from __future__ import annotations

import time

import torch

STEP_TIMINGS = ("vision_ms", "select_ms", "prefill_ms", "decode_ms")  # the model's four steps, per row, ms


def now_ms(device: torch.device | str) -> float:
    """``time.perf_counter()`` in ms, after the queued work of ``device`` (if CUDA) has finished."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() * 1000.0
