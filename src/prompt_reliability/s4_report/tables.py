"""Cross-pair tables: per-pair Parquet pieces become one CSV and a Markdown rendering."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from prompt_reliability.s0_base import io


def label_pair(table: pl.DataFrame, model: str, dataset: str, split: str | None = None) -> pl.DataFrame:
    """A per-pair piece with ``model``, ``dataset`` (and ``split``, unless the table has it) as first columns."""
    labels = [pl.lit(model).alias("model"), pl.lit(dataset).alias("dataset")]
    if split is not None:
        labels.append(pl.lit(split).alias("split"))
    return table.select(*labels, pl.all())


def assemble_table(pieces: Sequence[str | Path], csv_path: str | Path, md_path: str | Path | None = None, title: str = "") -> pl.DataFrame:
    """Concatenate per-pair tables (in the given order) and write CSV (+ Markdown)."""
    table = pl.concat([pl.read_parquet(p) for p in pieces], how="diagonal_relaxed")
    return write_table(table, csv_path, md_path, title)


def write_table(table: pl.DataFrame, csv_path: str | Path, md_path: str | Path | None = None, title: str = "") -> pl.DataFrame:
    """Write one table as CSV (+ Markdown), atomically."""
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
