"""ICCTP and baseline visual-token selection as batched, pure-torch functions (no Ray, no IO).

The vision-side baselines in their official semantics are exported here: ``visionzip_compress``
(VisionZip), ``tome_merge`` / ``tome_attention`` / ``tome_parse_r`` (ToMe), ``prumerge_plus`` /
``prumerge`` (PruMerge+, PruMerge).
"""
from icctp.prumerge import prumerge, prumerge_plus
from icctp.tome import tome_attention, tome_merge, tome_parse_r, tome_schedule
from icctp.visionzip import visionzip_compress

__all__ = ["prumerge", "prumerge_plus", "tome_attention", "tome_merge", "tome_parse_r", "tome_schedule",
           "visionzip_compress"]
