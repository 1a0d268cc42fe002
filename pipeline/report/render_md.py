"""``report.md``: a :class:`pipeline.report.content.Report` as GitHub Markdown."""
from __future__ import annotations

from pipeline.report.content import Image, Items, Report, Table, Text
from pipeline.report.tables import to_markdown


def block_markdown(block) -> list[str]:
    if isinstance(block, Text):
        return [block.text, ""]
    if isinstance(block, Items):
        head = [block.label, ""] if block.label else []
        marks = [f"{i}." if block.ordered else "-" for i in range(1, len(block.items) + 1)]
        return head + [f"{m} {item}" for m, item in zip(marks, block.items)] + [""]
    if isinstance(block, Table):
        return [to_markdown(block.frame, block.digits, block.default_digits), ""]
    if isinstance(block, Image):
        return [f"![{block.alt}]({block.path})", ""]
    raise TypeError(f"unknown report block {type(block).__name__}")


def render_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    lines += [f"- {name}: `{value}`" for name, value in report.facts]
    lines.append("")
    for section in report.sections:
        if section.title:
            lines += [f"{'#' * section.level} {section.title}", ""]
        for block in section.blocks:
            lines += block_markdown(block)
    return "\n".join(lines).rstrip() + "\n"
