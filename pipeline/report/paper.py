"""The paper's Tables 1-3 as data, and a run's numbers beside them.

``data/icctp_tables.csv`` holds every cell of the ICCTP paper's Tables 1 (LLaVA-1.5-7B), 2
(LLaVA-NeXT-7B) and 3 (LLaVA-1.5-13B) as printed, one row per cell (the "Acc." column included).
:func:`read_paper_tables` adds what a comparison needs: the run's benchmark entry of each column
(:data:`PAPER_BENCHMARKS`), the variant label of each method (:data:`PAPER_METHODS`; the unpruned
model's row is the variant whose method is ``full``) and the run budget of each section (visual
tokens per 576: LLaVA-NeXT's 640 of 2880 is budget 128).

A run matches a table when its model is the table's (``efficiency.flops_model``) and it ran at
least one of the table's pruned budgets; :func:`compare_with_paper` then lines up every paper
cell with the run's headline value in points (MME: perception points), marking the cells the run
has no value for as not run.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from pipeline.manifest import REFERENCE_BUDGET
from pipeline.report.efficiency import flops_model
from pipeline.report.headline import MME, aggregate_percent, point_scale
from pipeline.report.tables import FULL

PAPER_TABLES = Path(__file__).resolve().parent / "data" / "icctp_tables.csv"
ACC = "Acc."

# paper column -> the benchmark entry (and card) of this project
PAPER_BENCHMARKS = {"VQAv2": "vqav2", "GQA": "gqa", "VizWiz": "vizwiz", "SQAIMG": "sqa_img", "TextVQA": "textvqa",
                    "POPE": "pope", "MME": "mme", "MMB": "mmbench", "MMBCN": "mmbench_cn", "MMVet": "mmvet"}
# paper method (its printed name without the venue) -> the variant label a run gives it
PAPER_METHODS = {"ToMe": "tome", "FastV": "fastv", "SparseVLM": "sparsevlm", "PruMerge+": "prumerge_plus",
                 "DART": "dart", "VisionZip": "visionzip", "FasterVLM": "fastervlm", "ICCTP": "icctp"}
# the paper's baselines that prune inside the LLM (their budgets count equivalent tokens, see the footnote)
IN_LLM = ("FastV", "SparseVLM", "DART")
# the unpruned model's row of each table -> the name efficiency.flops_model gives the run's model id
TABLE_MODELS = {"LLaVA-1.5-7B": "llava-1.5-7b", "LLaVA-NeXT-7B": "llava-next-7b", "LLaVA-1.5-13B": "llava-1.5-13b"}
PAPER_SPLITS = {"vqav2": "test-dev (VQA server)", "vizwiz": "test (VizWiz server)"}
PAPER_POPE_QUESTIONS = 8910
NOT_RUN = "not run"


def method_name(printed: str) -> str:
    """``"ToMe (ICLR23)"`` -> ``"ToMe"``, ``"ICCTP (Ours)"`` -> ``"ICCTP"``."""
    return re.sub(r"\s*\(.*\)$", "", printed)


def read_paper_tables(path: Path = PAPER_TABLES) -> pl.DataFrame:
    """One row per printed cell.

    Columns: table, model (printed), model_key (``flops_model`` name), tokens, pruned (%), method
    (printed), paper_method (``full`` for the unpruned row), variant (label, null for ``full``),
    budget (run budget, per 576 tokens), column (printed), benchmark (entry, ``Acc.`` for the
    aggregate), printed (the cell's text), value (float).
    """
    raw = pl.read_csv(path, comment_prefix="#", schema_overrides={"value": pl.String, "pruned": pl.String})
    raw = raw.rename({"benchmark": "column", "value": "printed"})
    unknown = sorted(set(raw["column"].to_list()) - set(PAPER_BENCHMARKS) - {ACC})
    if unknown:
        raise ValueError(f"{path}: unknown benchmark column(s) {unknown}")
    full_tokens = raw.filter(pl.col("pruned") == "0").group_by("table").agg(pl.col("tokens").first().alias("_all"))
    out = raw.join(full_tokens, on="table").with_columns(
        pl.col("model").replace_strict(TABLE_MODELS).alias("model_key"),
        pl.col("pruned").cast(pl.Float64),
        pl.when(pl.col("pruned") == "0").then(pl.lit(FULL))
        .otherwise(pl.col("method").map_elements(method_name, return_dtype=pl.String)).alias("paper_method"),
        (pl.col("tokens") * REFERENCE_BUDGET / pl.col("_all")).round().cast(pl.Int64).alias("budget"),
        pl.col("column").replace(PAPER_BENCHMARKS).alias("benchmark"),
        pl.col("printed").cast(pl.Float64).alias("value"),
    ).with_columns(pl.col("paper_method").replace_strict(PAPER_METHODS, default=None).alias("variant"))
    missing = sorted(set(out.filter(pl.col("variant").is_null() & (pl.col("paper_method") != FULL))
                         ["paper_method"].to_list()))
    if missing:
        raise ValueError(f"{path}: method(s) {missing} have no entry in PAPER_METHODS")
    return out.select("table", "model", "model_key", "tokens", "pruned", "method", "paper_method", "variant",
                      "budget", "column", "benchmark", "printed", "value")


def matching_table(paper: pl.DataFrame, run_info: dict, budgets: list[int]) -> int | None:
    """The table whose model is the run's and that has a pruned budget the run ran, else None."""
    model = flops_model(run_info)
    if model is None:
        return None
    for (table,), rows in paper.filter(pl.col("model_key") == model).group_by("table", maintain_order=True):
        if set(rows.filter(pl.col("pruned") > 0)["budget"].to_list()) & set(budgets):
            return int(table)
    return None


@dataclass
class PaperComparison:
    """A run beside one paper table.

    ``cells``: one row per printed cell of the table (the "Acc." column included), in its order:
    budget, tokens, pruned, method (printed), paper_method, variant (the run's label or null),
    column, benchmark, paper, ours (null: not run), diff (ours - paper), and for the plot
    paper_pct / ours_pct (MME as perception / 2000 x 100). ``retention``: per method x budget,
    paper and ours Acc. as % of the unpruned Acc.
    """

    table: int
    model: str
    cells: pl.DataFrame
    retention: pl.DataFrame
    not_run: list[str]  # paper methods the run has no variant for
    extra: list[str]  # run variant@budget the table has no row for
    partial_acc: bool  # some row's Acc. is over fewer benchmarks than the paper's
    notes: list[str] = field(default_factory=list)

    def differences(self) -> pl.DataFrame:
        """The benchmark cells (no Acc.) with both values."""
        return self.cells.filter((pl.col("benchmark") != ACC) & pl.col("ours").is_not_null())


def run_variants(head: pl.DataFrame) -> dict[str, str]:
    """Paper method -> the run's variant label (``full``: the variant whose method is ``full``)."""
    out = {}
    labels = set(head["variant"].to_list())
    unpruned = head.filter(pl.col("method") == FULL)["variant"].unique().sort().to_list()
    if unpruned:
        out[FULL] = unpruned[0]
    out.update({m: v for m, v in PAPER_METHODS.items() if v in labels})
    return out


def our_acc(head: pl.DataFrame, variant: str, budget: int, benchmarks: list[str]) -> tuple[float | None, int]:
    """Mean headline percent over ``benchmarks`` of one variant x budget, and how many it had."""
    rows = head.filter((pl.col("variant") == variant) & (pl.col("budget") == budget)
                       & pl.col("benchmark").is_in(benchmarks) & pl.col("percent").is_not_null())
    return (rows["percent"].mean() if rows.height else None), rows.height


def compare_with_paper(head: pl.DataFrame, run_info: dict, cards: dict[str, str] | None = None,
                       paper: pl.DataFrame | None = None) -> PaperComparison | None:
    """The run's headline values (:func:`pipeline.report.tables.headline_metrics`) beside the
    matching paper table; None when no table matches."""
    paper = read_paper_tables() if paper is None else paper
    cards = cards or {}
    table = matching_table(paper, run_info, head["budget"].unique().to_list())
    if table is None:
        return None
    rows = paper.filter(pl.col("table") == table)
    variants = run_variants(head)
    scale = {b: point_scale(cards.get(b, b)) for b in rows["benchmark"].unique()}
    ours_of = {(v, k, b): val * scale[b] for b, v, k, val in head.select("benchmark", "variant", "budget", "value")
               .iter_rows() if val is not None and b in scale}
    bench_cols = rows.filter(pl.col("benchmark") != ACC)["benchmark"].unique(maintain_order=True).to_list()
    ours, partial = [], False
    for method, budget, bench in rows.select("paper_method", "budget", "benchmark").iter_rows():
        label = variants.get(method)
        if label is None:
            ours.append(None)
        elif bench == ACC:
            acc, have = our_acc(head, label, budget, bench_cols)
            partial |= acc is not None and have < len(bench_cols)
            ours.append(acc)
        else:
            ours.append(ours_of.get((label, budget, bench)))
    to_pct = _percent(cards)
    cells = rows.rename({"value": "paper"}).with_columns(
        pl.Series("ours", ours, pl.Float64),
        pl.col("paper_method").replace_strict(variants, default=None).alias("variant"),
    ).with_columns(
        (pl.col("ours") - pl.col("paper")).alias("diff"),
        pl.struct("benchmark", pl.col("paper").alias("v")).map_elements(to_pct, return_dtype=pl.Float64)
        .alias("paper_pct"),
        pl.struct("benchmark", pl.col("ours").alias("v")).map_elements(to_pct, return_dtype=pl.Float64)
        .alias("ours_pct"))
    cells = cells.select("budget", "tokens", "pruned", "method", "paper_method", "variant", "column", "benchmark",
                         "paper", "ours", "diff", "paper_pct", "ours_pct")
    not_run = [m for m in rows["paper_method"].unique(maintain_order=True).to_list() if m not in variants]
    table_budgets = set(rows["budget"].to_list())
    have_rows = set(rows.select("paper_method", "budget").iter_rows())
    by_label = {v: m for m, v in variants.items()}
    extra = [f"{v}@{k}" for v, k in head.select("variant", "budget").unique().sort("variant", "budget",
                                                                               descending=[False, True]).iter_rows()
             if k in table_budgets and (by_label.get(v), k) not in have_rows]
    comp = PaperComparison(table, rows["model"][0], cells, retention_table(cells), not_run, extra, partial)
    comp.notes = footnotes(comp, head, run_info)
    return comp


def _percent(cards: dict[str, str]):
    """Row {benchmark, v} (points) -> the Acc. scale (MME perception / 2000 x 100)."""
    def convert(row):
        bench, value = row["benchmark"], row["v"]
        if value is None or bench == ACC:
            return value
        card = cards.get(bench, bench)
        metric = "perception" if card == MME else "headline"
        return aggregate_percent(card, metric, value / point_scale(card))
    return convert


def retention_table(cells: pl.DataFrame) -> pl.DataFrame:
    """Per paper row (method x budget): paper and ours Acc. as % of the unpruned Acc. of each."""
    acc = cells.filter(pl.col("benchmark") == ACC)
    full = acc.filter(pl.col("paper_method") == FULL).row(0, named=True)

    def ratio(value, base):
        return None if value is None or base is None or base == 0 else value / base * 100.0

    return acc.select("budget", "method", "paper_method").with_columns(
        pl.Series("paper", [ratio(v, full["paper"]) for v in acc["paper"]], pl.Float64),
        pl.Series("ours", [ratio(v, full["ours"]) for v in acc["ours"]], pl.Float64))


def footnotes(comp: PaperComparison, head: pl.DataFrame, run_info: dict) -> list[str]:
    """Why some of the run's numbers are not comparable with the paper's by construction."""
    run = comp.cells.filter(pl.col("ours").is_not_null())
    ran = set(run["benchmark"].to_list())
    entries = ((run_info.get("manifest") or {}).get("benchmarks") or {})
    notes = []
    for bench in ("vqav2", "vizwiz"):
        if bench in ran:
            split = (entries.get(bench) or {}).get("split") or _card_split(bench)
            notes.append(f"{bench}: the paper's score is {PAPER_SPLITS[bench]}, this run's is the `{split}` split.")
    if "pope" in ran:
        n = head.filter(pl.col("benchmark") == "pope")["n"].max()
        notes.append(f"pope: the paper scores {PAPER_POPE_QUESTIONS:,} questions, this run {n:,} "
                     "(lmms-lab/POPE has 9,000).")
    in_llm = [m for m in IN_LLM if m in set(run["paper_method"].to_list())]
    if in_llm:
        verb = "prunes" if len(in_llm) == 1 else "prune"
        notes.append(f"{', '.join(in_llm)} {verb} inside the LLM: the paper's budgets for them count equivalent tokens "
                     "(the mean visual tokens over all LLM layers, SparseVLM's convention); a run's budget for an "
                     "in-LLM method may count them differently (its method options and `n_kept` say how).")
    if comp.partial_acc:
        n = comp.cells.filter(pl.col("benchmark") != ACC)["benchmark"].n_unique()
        notes.append(f"Acc.: the paper's is the mean over its {n} benchmarks; ours is the mean over those the run "
                     "scored, so the two are not comparable where the run lacks some.")
    if comp.not_run:
        labels = ", ".join(f"`{PAPER_METHODS[m]}`" for m in comp.not_run)
        notes.append(f"not run: {', '.join(comp.not_run)} (the run has no variant labelled {labels}).")
    if comp.extra:
        notes.append(f"Also in the run, without a row in the table: {', '.join(comp.extra)}.")
    return notes


def _card_split(bench: str) -> str:
    from pipeline.benchmarks import BENCHMARKS

    return BENCHMARKS[bench].split


def cell_text(ours: float | None, paper: float, digits: int = 1) -> str:
    """``"ours / paper (diff)"``; ``"not run / paper"`` without our value."""
    if ours is None or (isinstance(ours, float) and math.isnan(ours)):
        return f"{NOT_RUN} / {paper:.{digits}f}"
    return f"{ours:.{digits}f} / {paper:.{digits}f} ({ours - paper:+.{digits}f})"


def layout(comp: PaperComparison) -> pl.DataFrame:
    """The paper's layout as strings: a header row per budget section, a row per paper method,
    a column per benchmark (``ours / paper (diff)``), Acc. and retention."""
    cells, columns = comp.cells, comp.cells["column"].unique(maintain_order=True).to_list()
    keep = {(m, k): (p, o) for k, m, p, o in comp.retention.select("budget", "paper_method", "paper", "ours")
            .iter_rows()}
    out = []
    for (budget, tokens, pruned), section in cells.group_by("budget", "tokens", "pruned", maintain_order=True):
        title = f"{tokens} tokens (unpruned)" if pruned == 0 else f"{tokens} tokens (-{pruned:g}%)"
        out.append({"method": f"**{title}**", **{c: "" for c in columns}, "retention": ""})
        for (method, paper_method), row in section.group_by("method", "paper_method", maintain_order=True):
            values = {c: cell_text(o, p, 1) for c, p, o in row.select("column", "paper", "ours").iter_rows()}
            p, o = keep[(paper_method, budget)]
            values["retention"] = cell_text(o, p, 1)
            out.append({"method": method, **values})
    return pl.DataFrame(out, schema={c: pl.String for c in ["method", *columns, "retention"]})


def summary(comp: PaperComparison, largest: int = 3) -> str:
    """One line: mean |diff| per paper method (Acc. scale, MME / 20) and the largest differences."""
    diffs = comp.differences().with_columns((pl.col("ours_pct") - pl.col("paper_pct")).alias("d"))
    if diffs.is_empty():
        return f"versus Table {comp.table} ({comp.model}): no cell of the table was run"
    per = (diffs.group_by("paper_method", maintain_order=True).agg(pl.col("d").abs().mean().alias("mad")))
    means = ", ".join(f"{m} {v:.2f}" for m, v in per.iter_rows())
    top = diffs.sort(pl.col("d").abs(), descending=True).head(largest)
    worst = ", ".join(f"{b}/{m}@{k} {d:+.1f}" for b, m, k, d in top.select("benchmark", "paper_method", "budget", "d")
                      .iter_rows())
    return (f"versus Table {comp.table} ({comp.model}): mean |ours - paper| in points (MME / 20): {means}; "
            f"largest: {worst}")
