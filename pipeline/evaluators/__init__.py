"""Scoring of benchmark predictions in polars (vectorized expressions over whole columns).

Modules: ``vqa`` (EvalAI answer processing, VQA accuracy: VQAv2, VizWiz, TextVQA),
``exact_match`` (GQA), ``pope``, ``mme``, ``mcq`` (ScienceQA-IMG, MMBench circular),
``judge`` (MM-Vet, scored only with a judge), ``frame`` (input checks).

Conventions: a null prediction is an error row and is scored as wrong; evaluators never drop a
row and raise ``ValueError`` naming the evaluator and column on malformed input. Accuracy-like
values are fractions in [0, 1]; MME scores are MME points. Aggregating evaluators return metrics
only: the caller counts ``n`` (rows) and ``n_errors`` (error rows).
"""
