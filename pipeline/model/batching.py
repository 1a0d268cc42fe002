"""Token-bounded model batches: split a batch's rows into chunks whose padded size fits a token budget."""
from __future__ import annotations


def token_chunks(lengths: list[int], max_tokens: int | None) -> list[list[int]]:
    """Row indices per chunk for rows of ``lengths`` tokens (prompt + kept visual tokens each).

    ``max_tokens`` None: one chunk, rows in input order. Otherwise rows are taken longest first
    (ties in input order) and a chunk grows while ``rows × its longest row`` — the left-padded
    tensor the language model runs on, an upper bound of the rows' summed tokens — stays within
    ``max_tokens``; a row longer than the bound runs alone. Sorting keeps rows of like length
    together, so padding stays small.
    """
    if max_tokens is None:
        return [list(range(len(lengths)))] if lengths else []
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    chunks: list[list[int]] = []
    for i in order:
        if chunks and (len(chunks[-1]) + 1) * lengths[chunks[-1][0]] <= max_tokens:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks
