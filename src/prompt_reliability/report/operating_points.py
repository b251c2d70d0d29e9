"""REPORT.md's "Recommended operating points": the lock-fixed thresholds, averaged over evaluation pairs."""

from __future__ import annotations

import polars as pl

from prompt_reliability.base.tables import markdown_section, to_markdown

TITLE = "Recommended operating points"


def operating_points_section(frame: pl.DataFrame | None) -> str:
    if frame is None:
        return markdown_section(TITLE, "The operating_points table was not produced in this run.")
    native = frame.filter(pl.col("prevalence") == "native")
    summary = native.group_by("score", "target", "target_value", maintain_order=True).agg(
        pl.len().alias("pairs"), pl.col("recall").mean().alias("mean_recall"), pl.col("fpr").mean().alias("mean_fpr"),
        pl.col("precision").mean().alias("mean_precision"), pl.col("flag_rate").mean().alias("mean_flag_rate"),
        ((pl.col("target") == "recall") & (pl.col("recall") >= pl.col("target_value"))
         | (pl.col("target") == "fpr") & (pl.col("fpr") <= pl.col("target_value"))).sum().alias("pairs_meeting_target"),
    ).sort("target", "target_value", "score")
    text = ("Thresholds are fixed on the lock split and evaluated unchanged on each evaluation pair. Recommended: "
            "the **mean score** with the per-model threshold of your target from `tables/operating_points.csv` "
            "(its columns `threshold`, `recall`, `fpr`, `precision` per pair and prevalence); below, averages over "
            "pairs at native prevalence for the mean and the selected prompt, and how many pairs still meet the "
            "target on the evaluation split.\n")
    return markdown_section(TITLE, text, to_markdown(summary))
