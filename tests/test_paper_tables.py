"""The paper's Tables 1-3 as data (checked against the paper text), the table manifests, and the
"Versus the paper" comparison on synthetic runs shaped like each table."""
from __future__ import annotations

import importlib.util
import os
import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from test_plots import assert_png

from pipeline.fixtures.synthetic_run import write_synthetic_run
from pipeline.manifest import load_manifest
from pipeline.report import write_report
from pipeline.report.paper import (
    ACC,
    PAPER_BENCHMARKS,
    PAPER_METHODS,
    PAPER_TABLES,
    TABLE_MODELS,
    compare_with_paper,
    read_paper_tables,
    summary,
)
from pipeline.report.writer import load_tables

ROOT = Path(__file__).resolve().parents[1]
TEN = tuple(PAPER_BENCHMARKS.values())
FIVE = ("vqav2", "gqa", "textvqa", "pope", "mme")
MANIFESTS = {1: "table1_llava15_7b", 2: "table2_llava_next_7b", 3: "table3_llava15_13b"}


def paper_text() -> Path | None:
    """The paper's Markdown: $ICCTP_PAPER, else shared/paper/icctp.md beside the repository or
    beside one of its parents."""
    if os.environ.get("ICCTP_PAPER"):
        return Path(os.environ["ICCTP_PAPER"])
    for parent in ROOT.parents:
        path = parent / "shared" / "paper" / "icctp.md"
        if path.is_file():
            return path
    return None


def printed_tables(text: str) -> dict[int, list[tuple[str, str, list[tuple[str, str]]]]]:
    """Table number -> rows (section header, method, [(column, cell)]) parsed from the paper's
    tab-separated tables (a header line ``Method\\t...``, rows, a blank line, the caption)."""
    lines = text.splitlines()
    out = {}
    for i, line in enumerate(lines):
        if not line.startswith("Method\t"):
            continue
        columns = line.split("\t")[1:]
        j, rows, section = i + 1, [], None
        while lines[j].strip():
            cells = lines[j].split("\t")
            if "Tokens" in cells[0] and all(not c for c in cells[1:]):
                section = cells[0]
            else:
                assert len(cells) == len(columns) + 1, lines[j]
                rows.append((section, cells[0], list(zip(columns, cells[1:]))))
            j += 1
        caption = next(x for x in lines[j:] if x.startswith("Table "))
        out[int(re.match(r"Table (\d+):", caption).group(1))] = rows
    return out


def test_data_file_holds_every_row_of_the_three_tables_as_printed():
    path = paper_text()
    if path is None:
        pytest.skip("the paper text (shared/paper/icctp.md beside the repository, or $ICCTP_PAPER) is not here")
    printed = printed_tables(path.read_text())
    assert sorted(printed) == [1, 2, 3]
    data = pl.read_csv(PAPER_TABLES, comment_prefix="#", infer_schema=False)
    assert data.height == sum(len(r) * len(r[0][2]) for r in printed.values())  # 242 + 78 + 72
    for table, rows in printed.items():
        mine = data.filter(pl.col("table") == str(table))
        for section, method, cells in rows:
            tokens, pruned = re.match(r"(?:All )?(\d+) Tokens \((?:100%|\$\\downarrow ([\d.]+)\\%\$)\)", section).groups()
            got = mine.filter((pl.col("method") == method) & (pl.col("tokens") == tokens))
            assert got["pruned"].unique().to_list() == [pruned or "0"], (table, method, tokens)
            assert list(got.select("benchmark", "value").iter_rows()) == cells, (table, method, tokens)
    assert "Source: the paper text" in PAPER_TABLES.read_text().splitlines()[1]


def test_reader_maps_methods_budgets_and_benchmarks():
    paper = read_paper_tables()
    assert paper.group_by("table").len().sort("table")["len"].to_list() == [242, 78, 72]
    budgets = {t: sorted(set(paper.filter(pl.col("table") == t)["budget"].to_list()), reverse=True) for t in (1, 2, 3)}
    assert budgets == {1: [576, 128, 64, 32], 2: [576, 128, 64, 32], 3: [576, 144, 58, 29]}
    assert sorted(set(paper.filter(pl.col("table") == 2)["tokens"].to_list())) == [160, 320, 640, 2880]
    assert set(paper["model_key"].to_list()) == set(TABLE_MODELS.values())
    assert set(paper.filter(pl.col("paper_method") != "full")["variant"].to_list()) <= set(PAPER_METHODS.values())
    full = paper.filter(pl.col("paper_method") == "full")  # the unpruned row of each table: 11 + 6 + 6 cells
    assert full.height == 23 and full["variant"].null_count() == 23 and set(full["budget"].to_list()) == {576}
    assert full["method"].unique().sort().to_list() == sorted(TABLE_MODELS)
    pope = paper.filter((pl.col("table") == 2) & (pl.col("method") == "VisionZip") & (pl.col("benchmark") == "pope")
                        & (pl.col("budget") == 64))
    assert pope.select("printed", "value").row(0) == ("75", 75.0)


def test_the_papers_acc_is_the_mean_of_its_cells_with_mme_over_20():
    """The printed Acc. of every row is the plain mean of its benchmark cells (MME / 2000 x 100),
    to its printed precision: the report's aggregate is the paper's."""
    paper = read_paper_tables()
    cells = paper.filter(pl.col("benchmark") != ACC).with_columns(
        pl.when(pl.col("benchmark") == "mme").then(pl.col("value") / 20).otherwise(pl.col("value")).alias("pct"))
    means = cells.group_by("table", "method", "budget").agg(pl.col("pct").mean())
    acc = paper.filter(pl.col("benchmark") == ACC).join(means, on=["table", "method", "budget"])
    assert acc.height == 22 + 13 + 12  # every printed row
    assert (acc["pct"] - acc["value"]).abs().max() <= 0.05 + 1e-9


@pytest.mark.parametrize("table", [1, 2, 3])
def test_table_manifest_mirrors_its_table(table):
    paper = read_paper_tables().filter(pl.col("table") == table)
    path = ROOT / "manifests" / "paper" / f"{MANIFESTS[table]}.yaml"
    m = load_manifest(path)
    raw = yaml.safe_load(path.read_text())
    model_key = paper["model_key"][0]
    assert {"llava-1.5-7b": "llava-1.5-7b-hf", "llava-next-7b": "llava-v1.6-vicuna-7b-hf",
            "llava-1.5-13b": "llava-1.5-13b-hf"}[model_key] in m.model.path
    assert set(m.benchmarks) == set(paper.filter(pl.col("benchmark") != ACC)["benchmark"].to_list())
    assert sorted(m.budgets, reverse=True) == sorted(set(paper["budget"].to_list()), reverse=True)
    assert m.generation.max_new_tokens == 128
    long = {b for b in ("sqa_img", "mmbench", "mmbench_cn", "mmvet") if b in m.benchmarks}
    assert {b for b, n in m.max_new_tokens().items() if n == 1024} == long
    labels = {spec.name for spec in m.methods}
    wanted = set(paper.filter(pl.col("paper_method") != "full")["variant"].to_list())
    text = path.read_text()
    for label in sorted(wanted - labels):  # every table method not run is listed in the comment block
        assert f"{{method: {label}}}" in text, label
    assert labels - {"full"} <= wanted and "full" in labels and len(raw["methods"]) == len(labels)


def table_run(tmp_path, table: int, **kw) -> Path:
    shapes = {
        1: dict(benchmarks=TEN, methods=("full", "fastv", "dart", "visionzip", "icctp"), budgets=(576, 128, 64, 32)),
        2: dict(benchmarks=FIVE, methods=("full", "fastv", "visionzip", "icctp", "random"), budgets=(576, 128, 64, 32),
                model="llava-hf/llava-v1.6-vicuna-7b-hf", unscored=()),
        3: dict(benchmarks=FIVE, methods=("full", "fastv", "fastervlm", "icctp"), budgets=(576, 144, 58, 29),
                model="llava-hf/llava-1.5-13b-hf", unscored=()),
    }
    return write_synthetic_run(tmp_path / f"table{table}", n_samples=3, **{**shapes[table], **kw})


def report_lines(run: Path) -> list[str]:
    text = write_report(run).read_text()
    return text.split("## Versus the paper\n", 1)[1].split("\n## ", 1)[0].splitlines()


@pytest.mark.slow  # a whole report of a ten-benchmark run, figures included
def test_table1_run_beside_the_paper(tmp_path):
    run = table_run(tmp_path, 1)
    lines = report_lines(run)
    # keep(icctp, 64) = 1 - 0.12 x (1 - 64/576) = 0.89333: vqav2 78 -> 69.68 vs 73.0; MME 1510 -> 1348.93 vs 1382.7;
    # Acc. over the 9 scored benchmarks (mmvet has no judge): full 599.5 / 9 = 66.611 -> 59.506 vs 59.8;
    # retention 89.33 vs 59.8 / 63.1 = 94.77
    assert ("| ICCTP (Ours) | 69.7 / 73.0 (-3.3) | 55.4 / 55.6 (-0.2) | 44.7 / 52.5 (-7.8) | 60.7 / 68.9 (-8.2) "
            "| 51.8 / 55.5 (-3.7) | 76.8 / 82.8 (-6.0) | 1348.9 / 1382.7 (-33.8) | 57.2 / 60.3 (-3.1) "
            "| 51.8 / 54.6 (-2.8) | not run / 25.9 | 59.5 / 59.8 (-0.3) | 89.3 / 94.8 (-5.4) |") in lines
    assert ("| LLaVA-1.5-7B | 78.0 / 78.5 (-0.5) | 62.0 / 62.0 (+0.0) | 50.0 / 50.0 (+0.0) | 68.0 / 66.8 (+1.2) "
            "| 58.0 / 58.2 (-0.2) | 86.0 / 85.9 (+0.1) | 1510.0 / 1510.7 (-0.7) | 64.0 / 64.3 (-0.3) "
            "| 58.0 / 58.3 (-0.3) | not run / 31.1 | 66.6 / 63.1 (+3.5) | 100.0 / 100.0 (+0.0) |") in lines
    tome = [x for x in lines if x.startswith("| ToMe (ICLR23) |")]
    assert len(tome) == 3 and tome[2] == ("| ToMe (ICLR23) | not run / 46.8 | not run / 43.6 | not run / 51.3 "
                                          "| not run / 41.4 | not run / 38.3 | not run / 39.0 | not run / 828.4 "
                                          "| not run / 31.6 | not run / 28.1 | not run / 17.3 | not run / 37.9 "
                                          "| not run / 60.1 |")
    sections = [x.split(" |")[0] for x in lines if x.startswith("| **")]
    assert sections == ["| **576 tokens (unpruned)**", "| **128 tokens (-77.8%)**", "| **64 tokens (-88.9%)**",
                        "| **32 tokens (-94.4%)**"]
    assert sum(x.startswith("| ") for x in lines) == 1 + 4 + 1 + 7 * 3  # header, sections, full, 7 methods x 3
    notes = [x.split(". ", 1)[1] for x in lines if re.match(r"\d+\. ", x)]
    assert notes == [
        "vqav2: the paper's score is test-dev (VQA server), this run's is the `validation` split.",
        "vizwiz: the paper's score is test (VizWiz server), this run's is the `val` split.",
        "pope: the paper scores 8,910 questions, this run 3 (lmms-lab/POPE has 9,000).",
        "FastV, DART prune inside the LLM: the paper's budgets for them count equivalent tokens (the mean visual "
        "tokens over all LLM layers, SparseVLM's convention); a run's budget for an in-LLM method may count them "
        "differently (its method options and `n_kept` say how).",
        "Acc.: the paper's is the mean over its 10 benchmarks; ours is the mean over those the run scored, so the "
        "two are not comparable where the run lacks some.",
        "not run: ToMe, SparseVLM, PruMerge+ (the run has no variant labelled `tome`, `sparsevlm`, `prumerge_plus`).",
    ]
    assert "![ours_vs_paper](plots/ours_vs_paper.png)" in lines
    assert_png(run / "plots" / "ours_vs_paper.png")


def test_table1_cells_and_summary_values(tmp_path):
    comp = load_tables(table_run(tmp_path, 1)).paper
    assert comp.table == 1 and comp.not_run == ["ToMe", "SparseVLM", "PruMerge+"] and comp.extra == []
    cells = comp.cells
    assert cells.height == 242 and cells["ours"].null_count() == 3 * 3 * 11 + 4 * 3 + 1  # 3 methods absent; mmvet
    cell = cells.filter((pl.col("paper_method") == "DART") & (pl.col("budget") == 32) & (pl.col("benchmark") == "mme"))
    keep = 1 - 0.15 * (1 - 32 / 576)
    assert cell.select("paper", "ours", "diff", "ours_pct").row(0) == pytest.approx(
        (1273.3, 1510 * keep, 1510 * keep - 1273.3, 1510 * keep / 20))
    line = summary(comp)
    assert line.startswith("versus Table 1 (LLaVA-1.5-7B): mean |ours - paper| in points (MME / 20): full 0.29, ")
    diffs = comp.differences().filter(pl.col("paper_method") == "full")
    assert diffs.height == 9 and (diffs["ours_pct"] - diffs["paper_pct"]).abs().mean() == pytest.approx(
        (0.5 + 0 + 0 + 1.2 + 0.2 + 0.1 + 0.7 / 20 + 0.3 + 0.3) / 9)
    assert "largest: pope/FastV@32 +29.1" in line  # 86 x (1 - 0.3 x 544/576) = 61.63 vs 32.5


@pytest.mark.slow  # a whole report, figures included
def test_table2_next_run_names_the_papers_token_counts(tmp_path):
    lines = report_lines(table_run(tmp_path, 2))
    assert [x.split(" |")[0] for x in lines if x.startswith("| **")] == [
        "| **2880 tokens (unpruned)**", "| **640 tokens (-77.8%)**", "| **320 tokens (-88.9%)**",
        "| **160 tokens (-94.4%)**"]
    assert lines[lines.index("") + 1].startswith("Table 2 of the ICCTP paper (LLaVA-NeXT-7B).")
    # icctp at budget 64 (320 of 2880): keep 0.89333; Acc. (78 + 62 + 58 + 86 + 75.5) / 5 x keep = 64.23 vs 68.8
    assert ("| ICCTP (Ours) | 69.7 / 72.8 (-3.1) | 55.4 / 60.7 (-5.3) | 51.8 / 50.4 (+1.4) | 76.8 / 85.9 (-9.1) "
            "| 1348.9 / 1481.4 (-132.5) | 64.2 / 68.8 (-4.6) | 89.3 / 94.1 (-4.8) |") in lines
    notes = [x.split(". ", 1)[1] for x in lines if re.match(r"\d+\. ", x)]
    assert notes[0].startswith("vqav2: ") and notes[1].startswith("pope: ") and notes[2].startswith("FastV prunes inside the LLM: ")
    assert notes[3:] == ["not run: SparseVLM (the run has no variant labelled `sparsevlm`).",
                         "Also in the run, without a row in the table: random@128, random@64, random@32."]


def test_table3_fastervlm_row_is_the_fastervlm_variant(tmp_path):
    comp = load_tables(table_run(tmp_path, 3)).paper
    faster = comp.cells.filter((pl.col("paper_method") == "FasterVLM") & (pl.col("benchmark") == "vqav2"))
    keep = {k: 1 - 0.2 * (1 - k / 576) for k in (144, 58, 29)}
    assert faster.select("budget", "variant").rows() == [(k, "fastervlm") for k in (144, 58, 29)]
    assert faster["ours"].to_list() == pytest.approx([78 * keep[k] for k in (144, 58, 29)])
    sparse = comp.cells.filter(pl.col("paper_method") == "SparseVLM")
    assert sorted(set(sparse["budget"].to_list())) == [58, 144] and sparse["ours"].null_count() == sparse.height
    assert comp.not_run == ["SparseVLM"] and not comp.partial_acc


def test_no_section_without_a_matching_table(tmp_path):
    toy = write_synthetic_run(tmp_path / "toy", benchmarks=("vqav2", "pope"), methods=("full", "icctp"),
                              budgets=(576, 64), n_samples=2, model="fixture:toyworld")
    assert "Versus the paper" not in write_report(toy).read_text()
    other_budget = write_synthetic_run(tmp_path / "b192", benchmarks=("vqav2",), methods=("full", "icctp"),
                                       budgets=(576, 192), n_samples=2)
    assert compare_with_paper(load_tables(other_budget).head, load_tables(other_budget).info) is None


def test_compare_job_prints_the_comparison(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("job_compare", ROOT / "jobs" / "compare.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    run = table_run(tmp_path, 3)
    assert job.main([str(run), "--paper"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "# table3 versus the paper" and "## Versus the paper" in out
    assert out[-1].startswith("versus Table 3 (LLaVA-1.5-13B): mean |ours - paper| in points (MME / 20): full ")
    assert "| **58 tokens (-90%)** |" in "\n".join(out)
    toy = write_synthetic_run(tmp_path / "toy", benchmarks=("vqav2",), methods=("full", "icctp"),
                              budgets=(576, 64), n_samples=2, model="fixture:toyworld")
    assert job.main([str(toy), "--paper"]) == 2
    assert "no paper table matches" in capsys.readouterr().err
