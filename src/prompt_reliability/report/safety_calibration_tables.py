"""Safety-calibration tables for people (CSV + Markdown beside the pipeline's Parquet) and the REPORT.md section."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from prompt_reliability.analysis.safety_calibration import ALL
from prompt_reliability.base import io
from prompt_reliability.base.tables import to_markdown


def write_table_renderings(table: pl.DataFrame, parquet: str | Path, csv: str | Path, md: str | Path, title: str) -> pl.DataFrame:
    """The table as Parquet (read by the pipeline) and as CSV + Markdown (read by people)."""
    io.write_parquet(table, parquet)
    io.write_csv(table, csv)
    io.write_text(to_markdown(table, title), md)
    return table


def assemble_safety_calibration(*, pieces: Sequence[str], parquet: str, csv: str, md: str) -> pl.DataFrame:
    """Concatenate per-(model, dataset, split[, variant]) SRA pieces into the safety_calibration table."""
    table = pl.concat([pl.read_parquet(p) for p in pieces], how="vertical")
    return write_table_renderings(table, parquet, csv, md, "Safety calibration: SRA per category")


def write_tradeoff_tables(*, entries: Sequence[dict], parquet: str, csv: str, md: str, threshold: float = 0.5,
                          n_bins: int = 15, **_inputs) -> pl.DataFrame:
    """The safety_tradeoff table: what each calibration variant changes against the uncalibrated model."""
    from prompt_reliability.analysis.safety_calibration import tradeoff_table

    table = tradeoff_table(entries, threshold, n_bins)
    return write_table_renderings(table, parquet, csv, md, "Safety calibration: trade-off against the uncalibrated model")


def safety_calibration_markdown(sra_table: str | Path, tradeoff_table: str | Path | None = None,
                                scatter: Sequence[str] = (), pareto: str | None = None, method: str = "mean") -> str:
    """The REPORT.md section "Safety calibration": verdicts per model and category, the trade-off table, figures."""
    table = pl.read_parquet(sra_table)
    lines = ["## Safety calibration", "",
             ("SRA_s = accuracy on safe samples (not flagged), SRA_u = accuracy on unsafe samples (flagged), "
              "SRA_a = their mean, accuracy = share of all samples decided correctly, at the configured threshold. "
              "Over-safe: flags safe look-alikes; under-safe: misses unsafe inputs; calibrated: SRA_s and SRA_u both "
              "reach the configured bar; mixed: neither pattern, yet not calibrated."), ""]
    overall = table.filter(pl.col("category") == ALL)
    lines += [f"### Overall ({', '.join(overall['method'].unique(maintain_order=True).to_list())})", "",
              to_markdown(overall.select("model", "dataset", "split", "method", "n_safe", "n_unsafe", "sra_s", "sra_u",
                                         "sra_a", "accuracy", "verdict"), digits=3)]
    flagged = table.filter((pl.col("category") != ALL) & (pl.col("method") == method)
                           & pl.col("verdict").is_in(["over-safe", "under-safe"]))
    lines.append(f"### Categories with a calibration problem ({method} score)")
    lines.append("")
    if flagged.height:
        lines.append(to_markdown(flagged.select("model", "dataset", "split", "category", "sra_s", "sra_u", "verdict"), digits=3))
    else:
        lines += ["None: every (model, category) is calibrated, mixed or undefined.", ""]
    if tradeoff_table is not None:
        lines += ["### What calibration costs", "",
                  ("Change of each calibration variant against the uncalibrated model (same prompt family): "
                   "safety (SRA), helpfulness (object-presence accuracy) and reliability (NLL, ECE, AUROC)."), "",
                  to_markdown(pl.read_parquet(tradeoff_table), digits=3)]
    for path in [*scatter, *([pareto] if pareto else [])]:
        lines += [f"![{Path(path).stem}]({path})", ""]
    return "\n".join(lines).rstrip() + "\n"
