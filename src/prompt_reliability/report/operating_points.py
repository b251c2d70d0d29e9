"""REPORT.md's "Recommended operating points": the lock-fixed thresholds, averaged over evaluation pairs.

The recommendation is the mean score's guaranteed threshold (``kind = guaranteed`` in the table:
its target holds on new data with probability >= ``confidence`` over the lock sample); the section
says what the guarantee costs against the point estimate, per target: FPR for a recall target,
recall for an FPR target, averaged over pairs at native prevalence.
"""

from __future__ import annotations

import polars as pl

from prompt_reliability.base.tables import markdown_section, to_markdown

TITLE = "Recommended operating points"


def _meets() -> pl.Expr:
    return ((pl.col("target") == "recall") & (pl.col("recall") >= pl.col("target_value"))
            | (pl.col("target") == "fpr") & (pl.col("fpr") <= pl.col("target_value")))


def operating_points_summary(frame: pl.DataFrame) -> pl.DataFrame:
    """Per (score, target, kind) at native prevalence: pairs, mean recall / FPR / precision / flag rate and the
    pairs whose evaluation split meets the target."""
    native = frame.filter(pl.col("prevalence") == "native")
    keys = ["score", "target", "target_value", *(["kind"] if "kind" in frame.columns else [])]
    return native.group_by(keys, maintain_order=True).agg(
        pl.len().alias("pairs"), pl.col("threshold").is_not_null().sum().alias("pairs_with_threshold"),
        pl.col("recall").mean().alias("mean_recall"), pl.col("fpr").mean().alias("mean_fpr"),
        pl.col("precision").mean().alias("mean_precision"), pl.col("flag_rate").mean().alias("mean_flag_rate"),
        _meets().sum().alias("pairs_meeting_target"),
    ).sort("target", "target_value", "score", maintain_order=True)


def guarantee_costs(summary: pl.DataFrame, score: str = "mean") -> list[str]:
    """One sentence per target: the guaranteed threshold's cost against the point estimate for ``score``."""
    sentences = []
    rows = summary.filter(pl.col("score") == score)
    for (target, value), group in rows.group_by("target", "target_value", maintain_order=True):
        kinds = {r["kind"]: r for r in group.iter_rows(named=True)}
        point, guaranteed = kinds.get("point"), kinds.get("guaranteed")
        if not point or not guaranteed:
            continue
        if not guaranteed["pairs_with_threshold"]:
            sentences.append(f"- {target} {value:g}: the lock split is too small for the guarantee (no threshold).")
            continue
        other, name = ("mean_fpr", "FPR") if target == "recall" else ("mean_recall", "recall")
        sentences.append(
            f"- {target} {'>=' if target == 'recall' else '<='} {value:g}: met on {guaranteed['pairs_meeting_target']}"
            f"/{guaranteed['pairs']} pairs with the guaranteed threshold vs {point['pairs_meeting_target']}"
            f"/{point['pairs']} with the point estimate; it costs {name} "
            f"{point[other]:.3f} -> {guaranteed[other]:.3f} on average.")
    return sentences


def operating_points_section(frame: pl.DataFrame | None) -> str:
    if frame is None:
        return markdown_section(TITLE, "The operating_points table was not produced in this run.")
    summary = operating_points_summary(frame)
    if "kind" in frame.columns and (frame["kind"] == "guaranteed").any():
        confidence = frame.filter(pl.col("kind") == "guaranteed")["confidence"].drop_nulls()
        level = f"{confidence[0]:.0%}" if len(confidence) else "1 - delta"
        text = (f"Recommended: the **mean score** with its **guaranteed threshold** (`kind = guaranteed` in "
                f"`tables/operating_points.csv`): fixed on the lock split so that the recall or FPR target holds on "
                f"new data from the lock split's distribution with probability >= {level} over the lock sample "
                "(Learn-then-Test with the exact binomial tail; `analysis.operating_points.delta`). The point "
                "estimate (`kind = point`) meets its target on the lock split itself and so, on new data, only about "
                "half the time. What the guarantee costs, for the mean score, averaged over evaluation pairs at "
                "native prevalence:\n\n" + "\n".join(guarantee_costs(summary)) + "\n\n"
                "A distribution shift between the lock split and an evaluation split is outside the guarantee: the "
                "counts of pairs meeting the target show it. Below, every score, target and kind.\n")
    else:
        text = ("Thresholds are fixed on the lock split and evaluated unchanged on each evaluation pair. Recommended: "
                "the **mean score** with the per-model threshold of your target from `tables/operating_points.csv` "
                "(its columns `threshold`, `recall`, `fpr`, `precision` per pair and prevalence); below, averages over "
                "pairs at native prevalence for the mean and the selected prompt, and how many pairs still meet the "
                "target on the evaluation split.\n")
    return markdown_section(TITLE, text, to_markdown(summary))
