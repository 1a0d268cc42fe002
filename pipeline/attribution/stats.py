"""Dataset-level statistics of CIBA attributions: does text attribution sit on nouns, and does image
attribution sit on what a pruning method keeps?

Per question (punctuation left out, questions with an error or no attribution dropped), with a word's
attribution ``a_w`` its raw capacity (nats, summed over its pieces):

- share of a word class C: ``sum_{w in C} a_w / sum_w a_w``; its base rate: ``|C| / |words|``;
- top-word rate: 1 when the most attributed word is in C (chance: the base rate);
- position baseline: the share C would get if a word's attribution depended only on its relative
  position in the question (5 bins of ``k / n``): each bin's mean of ``a_w / mean_w a_w`` over all
  questions, summed over C's positions, normalised per question;
- image: evidence multiple ``(attribution on evidence_patches / total) / (|evidence| / n)``, and per
  pruning variant the overlap ``|kept ∩ top-k(attribution)| / k`` with k the number kept (chance k / n).

Dataset values are macro means over questions; an enrichment is the ratio of two macro means. Every
value has a percentile bootstrap 95% interval over questions (``bootstrap`` resamples, seed 0).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from pipeline.attribution.words import NOUN_UPOS

POSITION_BINS = 5
POS_ORDER = ("NOUN", "PROPN", "ADJ", "VERB", "AUX", "ADP", "DET", "PRON", "NUM", "ADV", "CCONJ", "PART", "SCONJ",
             "INTJ", "X")


@dataclass
class Estimate:
    """A macro mean (or ratio of macro means) with its bootstrap 95% interval."""

    value: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def bootstrap_indices(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n) question indices drawn with replacement."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def estimate(values: np.ndarray, idx: np.ndarray, over: np.ndarray | None = None) -> Estimate:
    """Macro mean of ``values`` (or ``mean(values) / mean(over)``) with its interval from ``idx``."""
    values = np.asarray(values, float)
    if over is None:
        point, boots = values.mean(), values[idx].mean(1)
    else:  # a resample where the class never occurs has no ratio: it is left out
        over = np.asarray(over, float)
        denominators = over[idx].mean(1)
        point = values.mean() / over.mean()
        boots = np.divide(values[idx].mean(1), denominators, out=np.full(len(idx), np.nan), where=denominators > 0)
    low, high = np.nanpercentile(boots, [2.5, 97.5])
    return Estimate(float(point), float(low), float(high))


def word_table(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per (question, word) without punctuation: ``qid`` (question number), ``k`` and ``n``
    (position and word count), ``pos``, ``noun``, ``in_np``, ``a`` (attribution), ``rel`` (a / mean a)."""
    words = (rows.filter(pl.col("error").is_null()).with_row_index("qid").select("qid", "words").explode("words")
             .unnest("words").filter(pl.col("pos") != "PUNCT").drop_nulls("attribution"))
    words = words.with_columns(k=pl.int_range(pl.len()).over("qid"), n=pl.len().over("qid"),
                               total=pl.col("attribution").sum().over("qid"))
    words = words.filter(pl.col("total") > 0)
    return words.select(
        "qid", "k", "n", "pos", pl.col("pos").is_in(list(NOUN_UPOS)).alias("noun"), "in_np",
        pl.col("attribution").alias("a"), (pl.col("attribution") * pl.col("n") / pl.col("total")).alias("rel"),
        (pl.col("k") * POSITION_BINS // pl.col("n")).alias("bin"),
    )


def question_table(words: pl.DataFrame, classes: dict[str, pl.Expr]) -> pl.DataFrame:
    """Per question, for each class C (a boolean word expression): ``C_share``, ``C_base``, ``C_top``."""
    aggs = []
    for name, member in classes.items():
        aggs += [(pl.col("a").filter(member).sum() / pl.col("a").sum()).alias(f"{name}_share"),
                 member.mean().cast(pl.Float64).alias(f"{name}_base"),
                 member.sort_by(pl.col("a"), descending=True).first().cast(pl.Float64).alias(f"{name}_top")]
    return words.group_by("qid", maintain_order=True).agg(aggs).fill_null(0.0)


def position_share(words: pl.DataFrame, member: pl.Expr) -> np.ndarray:
    """Per question, the share of class ``member`` predicted from word positions alone."""
    profile = words.group_by("bin").agg(pl.col("rel").mean().alias("p"))
    joined = words.join(profile, on="bin", how="left")
    per_q = joined.group_by("qid", maintain_order=True).agg(
        (pl.col("p").filter(member).sum() / pl.col("p").sum()).alias("share")).fill_null(0.0)
    return per_q["share"].to_numpy()


@dataclass
class TextStats:
    """Text-side estimates for one set of questions; ``rows``: class -> {share, base, enrichment, top,
    position}; ``pos``: universal POS -> {share, base, enrichment}."""

    n: int
    classes: dict[str, dict[str, Estimate]]
    pos: dict[str, dict[str, Estimate]]


def text_stats(rows: pl.DataFrame, resamples: int = 1000) -> TextStats | None:
    """Noun and noun-phrase statistics of attribution rows (one space, one benchmark); None when empty."""
    words = word_table(rows)
    if words.is_empty():
        return None
    classes = {"noun": pl.col("noun"), "noun phrase": pl.col("in_np")}
    per_q = question_table(words, classes)
    idx = bootstrap_indices(per_q.height, resamples)
    out = {}
    for name, member in classes.items():
        share, base = per_q[f"{name}_share"].to_numpy(), per_q[f"{name}_base"].to_numpy()
        out[name] = {"share": estimate(share, idx), "base": estimate(base, idx),
                     "enrichment": estimate(share, idx, base), "top": estimate(per_q[f"{name}_top"].to_numpy(), idx),
                     "position": estimate(position_share(words, member), idx)}
    present = [p for p in POS_ORDER if p in set(words["pos"].to_list())]
    per_pos = question_table(words, {p: pl.col("pos") == p for p in present})
    pos = {}
    for p in present:
        share, base = per_pos[f"{p}_share"].to_numpy(), per_pos[f"{p}_base"].to_numpy()
        pos[p] = {"share": estimate(share, idx), "base": estimate(base, idx), "enrichment": estimate(share, idx, base)}
    return TextStats(per_q.height, out, pos)


def evidence_multiple(attribution: list[float], evidence: list[int]) -> float:
    """(share of attribution on the evidence tokens) / (their share of tokens)."""
    a = np.asarray(attribution, float)
    return float(a[evidence].sum() / a.sum() / (len(evidence) / len(a)))


def topk_overlap(attribution: list[float], kept: list[int]) -> float:
    """|kept ∩ the k most attributed tokens| / k, k = len(kept) (ties: the lower index first)."""
    a = np.asarray(attribution, float)
    top = np.argsort(-a, kind="stable")[: len(kept)]
    return len(set(top.tolist()) & set(kept)) / len(kept)


@dataclass
class ImageStats:
    """Image-side estimates: evidence multiple and top-1-on-evidence rate (questions with evidence),
    and per pruning variant ``label@budget`` its overlap with the top-k attributed tokens and chance."""

    n: int
    n_evidence: int
    evidence: Estimate | None
    top_on_evidence: Estimate | None
    overlap: dict[str, tuple[Estimate, float]]


def image_stats(rows: pl.DataFrame, resamples: int = 1000) -> ImageStats | None:
    ok = rows.filter(pl.col("error").is_null() & pl.col("image_attribution").is_not_null())
    if ok.is_empty():
        return None
    ev_rows = ok.filter(pl.col("evidence_patches").list.len() > 0)
    evidence = top = None
    if ev_rows.height:
        pairs = list(zip(ev_rows["image_attribution"].to_list(), ev_rows["evidence_patches"].to_list()))
        idx = bootstrap_indices(len(pairs), resamples)
        evidence = estimate(np.array([evidence_multiple(a, e) for a, e in pairs]), idx)
        top = estimate(np.array([float(int(np.argmax(a)) in set(e)) for a, e in pairs]), idx)
    overlap = {}
    per_variant: dict[str, list[tuple[float, float]]] = {}
    for attribution, kept in zip(ok["image_attribution"].to_list(), ok["kept"].to_list()):
        for entry in kept or []:
            key = f"{entry['variant']}@{entry['budget']}"
            per_variant.setdefault(key, []).append(
                (topk_overlap(attribution, entry["indices"]), len(entry["indices"]) / len(attribution)))
    for key, values in per_variant.items():
        got = np.array(values)
        overlap[key] = (estimate(got[:, 0], bootstrap_indices(len(got), resamples)), float(got[:, 1].mean()))
    return ImageStats(ok.height, ev_rows.height, evidence, top, overlap)
