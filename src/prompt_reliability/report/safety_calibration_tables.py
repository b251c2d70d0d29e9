"""Safety-calibration tables for people (CSV + Markdown beside the pipeline's Parquet) and the REPORT.md section."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from prompt_reliability.analysis.safety_calibration import ALL
from prompt_reliability.base.tables import to_markdown, write_table


def assemble_safety_calibration(*, pieces: Sequence[str], table: str, csv: str, md: str) -> pl.DataFrame:
    """Concatenate per-(model, dataset, split[, variant]) SRA pieces into the safety_calibration table."""
    frame = pl.concat([pl.read_parquet(p) for p in pieces], how="vertical")
    return write_table(frame, table, csv, md, "Safety calibration: SRA per category")


def write_tradeoff_tables(*, entries: Sequence[dict], table: str, csv: str, md: str, threshold: float = 0.5,
                          n_bins: int = 15, **_inputs) -> pl.DataFrame:
    """The safety_tradeoff table: what each calibration variant changes against the uncalibrated model."""
    from prompt_reliability.analysis.safety_calibration import tradeoff_table

    return write_table(tradeoff_table(entries, threshold, n_bins), table, csv, md,
                       "Safety calibration: trade-off against the uncalibrated model")


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
