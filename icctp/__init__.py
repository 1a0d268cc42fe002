"""ICCTP and baseline visual-token selection as batched, pure-torch functions (no Ray, no IO).

The paper's baselines in their official semantics are exported here: ``visionzip_compress``
(VisionZip), ``tome_merge`` / ``tome_attention`` / ``tome_parse_r`` (ToMe), ``prumerge_plus`` /
``prumerge`` (PruMerge+, PruMerge), ``fastv_keep`` / ``fastv_equivalent_R`` (FastV), ``dart_keep``
(DART), ``sparsevlm_raters`` / ``sparsevlm_select`` / ``sparsevlm_recycle`` / ``SPARSEVLM_SCHEDULE``
(SparseVLM).
"""
from icctp.llm_pruning import (
    SPARSEVLM_SCHEDULE,
    dart_keep,
    fastv_equivalent_R,
    fastv_keep,
    sparsevlm_raters,
    sparsevlm_recycle,
    sparsevlm_select,
)
from icctp.prumerge import prumerge, prumerge_plus
from icctp.tome import tome_attention, tome_merge, tome_parse_r, tome_schedule
from icctp.visionzip import visionzip_compress

__all__ = ["SPARSEVLM_SCHEDULE", "dart_keep", "fastv_equivalent_R", "fastv_keep", "prumerge", "prumerge_plus",
           "sparsevlm_raters", "sparsevlm_recycle", "sparsevlm_select", "tome_attention", "tome_merge", "tome_parse_r",
           "tome_schedule", "visionzip_compress"]
