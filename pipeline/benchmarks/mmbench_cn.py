"""MMBench dev (Chinese): the English card's layout, ending in ``\\n请直接回答选项字母。``."""
from __future__ import annotations

from pipeline.benchmarks.base import MCQ_ANSWER_CN
from pipeline.benchmarks.mmbench import MMBench


class MMBenchCN(MMBench):
    name = "mmbench_cn"
    config = "cn"
    suffix = MCQ_ANSWER_CN
