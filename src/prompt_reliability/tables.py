"""Cross-pair tables: per-pair Parquet pieces become one CSV and a Markdown rendering."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from . import io


def assemble_table(pieces: Sequence[str | Path], csv_path: str | Path, md_path: str | Path | None = None, title: str = "") -> pl.DataFrame:
    """Concatenate per-pair tables (in the given order) and write CSV (+ Markdown)."""
    table = pl.concat([pl.read_parquet(p) for p in pieces], how="diagonal_relaxed")
    io.write_csv(table, csv_path)
    if md_path is not None:
        io.write_text(to_markdown(table, title), md_path)
    return table


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
