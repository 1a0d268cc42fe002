"""MMBench dev (Chinese): the English card's layout, ending in ``\\n请直接回答选项字母。``; scored
like the English card: VLMEvalKit's circular evaluation with ``can_infer`` exact matching
(``pipeline/evaluators/mmbench.py``)."""
from __future__ import annotations

from pipeline.benchmarks.base import MCQ_ANSWER_CN
from pipeline.benchmarks.mmbench import MMBench


class MMBenchCN(MMBench):
    name = "mmbench_cn"
    config = "cn"
    suffix = MCQ_ANSWER_CN
