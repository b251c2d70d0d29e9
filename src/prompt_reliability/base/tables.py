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


def markdown_section(title: str, *blocks: str) -> str:
    """A ``## title`` section of REPORT.md: the non-empty blocks, each ending in one newline, a blank line apart."""
    return "\n".join([f"## {title}", "", *[b.rstrip("\n") + "\n" for b in blocks if b]])
