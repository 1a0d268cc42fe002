"""ICCTP-Eval pipeline: benchmarks, model adapter, Ray Data stages, evaluators, reports."""
