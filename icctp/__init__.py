"""ICCTP and baseline visual-token selection as batched, pure-torch functions (no Ray, no IO)."""

from icctp.llm_pruning import (
    SPARSEVLM_SCHEDULE,
    dart_keep,
    fastv_equivalent_R,
    fastv_keep,
    sparsevlm_raters,
    sparsevlm_recycle,
    sparsevlm_select,
)

__all__ = ["SPARSEVLM_SCHEDULE", "dart_keep", "fastv_equivalent_R", "fastv_keep", "sparsevlm_raters",
           "sparsevlm_recycle", "sparsevlm_select"]
