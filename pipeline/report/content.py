"""What a report shows, independent of its format: a title, run facts and sections of blocks.

:func:`pipeline.report.writer.build_report` computes a :class:`Report` once from a run directory;
:mod:`pipeline.report.render_md` and :mod:`pipeline.report.render_html` write it as
``report.md`` and ``report.html``. Text blocks use two inline marks only, ```code``` and
``**bold**``, which both renderers understand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import polars as pl


@dataclass
class Text:
    """A paragraph."""

    text: str


@dataclass
class Items:
    """A list of short paragraphs (numbered when ``ordered``), under an optional ``label`` line."""

    items: list[str]
    ordered: bool = False
    label: str | None = None


@dataclass
class Table:
    """A table: ``digits`` sets decimals per numeric column (``default_digits`` otherwise).

    ``shade``: a column of percentages (retention) the HTML report colours by value.
    ``right``: text columns aligned like numbers. ``sortable``: False for a table whose row
    order carries meaning (section rows), which the HTML report then does not let a click reorder.
    """

    frame: pl.DataFrame
    digits: dict[str, int] = field(default_factory=dict)
    default_digits: int = 4
    shade: str | None = None
    right: tuple[str, ...] = ()
    sortable: bool = True


@dataclass
class Image:
    """A picture file of the run (``path`` relative to the run directory)."""

    path: str
    alt: str


Block = Text | Items | Table | Image


@dataclass
class Section:
    """Blocks under a heading of ``level`` (2 or 3); ``title`` None: no heading."""

    title: str | None
    blocks: list[Block]
    level: int = 2


@dataclass
class Report:
    """A whole report: ``facts`` are (name, value) lines under the title; ``root`` is the run
    directory that image paths are relative to."""

    title: str
    facts: list[tuple[str, str]]
    sections: list[Section]
    root: Path

    def tables(self) -> list[Table]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Table)]

    def images(self) -> list[Image]:
        return [b for s in self.sections for b in s.blocks if isinstance(b, Image)]
