"""Scoring of benchmark predictions in polars (vectorized expressions over whole columns).

Modules: ``vqa`` (EvalAI answer processing, VQA accuracy: TextVQA), ``vqa_eval`` (VQAv2 and
VizWiz as their servers score), ``exact_match`` (GQA), ``pope``, ``mme``, ``mcq`` (ScienceQA-IMG),
``mmbench`` (VLMEvalKit circular evaluation), ``judge`` (MM-Vet, scored only with a judge),
``frame`` (input checks). Each module names the official scorer it equals.

Conventions: a null prediction is an error row and is scored as wrong; evaluators never drop a
row and raise ``ValueError`` naming the evaluator and column on malformed input. Accuracy-like
values are fractions in [0, 1]; MME scores are MME points. Aggregating evaluators return metrics
only: the caller counts ``n`` (rows) and ``n_errors`` (error rows).
"""
