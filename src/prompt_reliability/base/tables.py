"""Tables: typed Parquet for the pipeline, CSV and Markdown renderings for people.

Per-pair pieces and assembled tables are Parquet, and only Parquet is read back by the
pipeline (column types survive: a split named ``2024`` stays a string). The CSV and Markdown files
next to each assembled table are written from the same frame and never read again.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from prompt_reliability.base import io

PAIR = ("model", "dataset", "split")


def label_pair(table: pl.DataFrame, model: str, dataset: str, split: str | None = None) -> pl.DataFrame:
    """A per-pair piece with ``model``, ``dataset`` (and ``split``, unless the table has it) as first columns."""
    labels = [pl.lit(model).alias("model"), pl.lit(dataset).alias("dataset")]
    if split is not None:
        labels.append(pl.lit(split).alias("split"))
    return table.select(*labels, pl.all())


def write_table(frame: pl.DataFrame, table: str | Path, csv: str | Path | None = None, md: str | Path | None = None,
                title: str = "") -> pl.DataFrame:
    """Write ``frame`` as Parquet (read by the pipeline) and, for people, as CSV and Markdown; each atomically."""
    io.write_parquet(frame, table)
    if csv is not None:
        io.write_csv(frame, csv)
    if md is not None:
        io.write_text(to_markdown(frame, title or Path(table).stem), md)
    return frame


def assemble_table(*, pieces: Sequence[str | Path], table: str | Path, csv: str | Path, md: str | Path,
                   title: str = "") -> pl.DataFrame:
    """Concatenate per-pair pieces (in the given order) into one table (+ CSV and Markdown)."""
    frame = pl.concat([pl.read_parquet(p) for p in pieces], how="diagonal_relaxed")
    return write_table(frame, table, csv, md, title)


def to_markdown(table: pl.DataFrame, title: str = "", digits: int = 4) -> str:
    """A GitHub-flavoured Markdown table; floats rounded to ``digits``."""
    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return "nan" if value != value else f"{value:.{digits}f}"
        return str(value)

    lines = [f"# {title}", ""] if title else []
    lines.append("| " + " | ".join(table.columns) + " |")
    lines.append("|" + "|".join("---" for _ in table.columns) + "|")
    lines.extend("| " + " | ".join(cell(v) for v in row) + " |" for row in table.iter_rows())
    return "\n".join(lines) + "\n"


def to_html(table: pl.DataFrame, title: str = "", digits: int = 4) -> str:
    """A standalone HTML page with the table (floats rounded to ``digits``), for the HTML report, which
    shows HTML files in the page (a CSV is only offered for download)."""
    from html import escape

    def cell(value) -> str:
        if value is None:
            return ""
        if isinstance(value, float):
            return "nan" if value != value else f"{value:.{digits}f}"
        return escape(str(value))

    numeric = [dtype.is_numeric() for dtype in table.dtypes]
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    body = "\n".join("<tr>" + "".join(f'<td class="{"num" if n else "txt"}">{cell(v)}</td>' for v, n in zip(row, numeric))
                     + "</tr>" for row in table.iter_rows())
    style = ("body{font-family:sans-serif;font-size:13px;margin:8px}table{border-collapse:collapse}"
             "th,td{border:1px solid #ccc;padding:2px 6px}th{background:#f3f3f3;position:sticky;top:0}"
             "td.num{text-align:right;font-variant-numeric:tabular-nums}")
    caption = f"<h3>{escape(title)}</h3><p>{table.height} rows</p>" if title else ""
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escape(title)}</title><style>{style}</style>'
            f"</head><body>{caption}<table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></body></html>\n")


def write_html_table(*, table: str | Path, html: str | Path, title: str = "") -> None:
    """Rule ``<table>_html``: the table's HTML rendering (from its Parquet file) for the HTML report."""
    io.write_text(to_html(pl.read_parquet(table), title or Path(table).stem), html)


def markdown_section(title: str, *blocks: str) -> str:
    """A ``## title`` section of REPORT.md: the non-empty blocks, each ending in one newline, a blank line apart."""
    return "\n".join([f"## {title}", "", *[b.rstrip("\n") + "\n" for b in blocks if b]])
