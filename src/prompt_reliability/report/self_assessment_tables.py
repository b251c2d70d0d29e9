"""Self-assessment tables for people and the pipeline: Parquet + CSV + Markdown, and the REPORT.md section.

Rule entry points over :mod:`prompt_reliability.analysis.self_assessment_scores` and
:mod:`prompt_reliability.analysis.metric_stability` (which compute; this module writes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl

from prompt_reliability.analysis import metric_stability
from prompt_reliability.analysis.self_assessment_scores import TYPES, combine_scores
from prompt_reliability.base import tables


def _write(result: pl.DataFrame, table: str, csv: str, md: str, title: str) -> pl.DataFrame:
    return tables.write_table(result, table, csv, md, title)


def write_self_assessment_table(pieces: Sequence[str], table: str, csv: str, md: str) -> pl.DataFrame:
    """Rule ``self_assessment_table``: ``self_assessment.parquet`` (read by the pipeline) + CSV and Markdown."""
    return _write(combine_scores(pieces), table, csv, md, "Self-assessment (UnSAF): answer types and UnF1")


def write_ranking_stability(reliability: Sequence[str], self_assessment: str, table: str, csv: str, md: str) -> pl.DataFrame:
    """Rule ``metric_stability``: footrule of every metric between every pair of datasets."""
    return _write(metric_stability.ranking_stability_from_files(reliability, self_assessment), table, csv, md,
                  "Ranking stability across datasets (Spearman's footrule)")


def write_sample_size(matrices: Sequence[str], locks: Sequence[str], answers: Sequence[str], table: str, csv: str, md: str,
                      *, pairs: Sequence[Mapping[str, str]], runs: Sequence[Mapping[str, str]],
                      stability: Mapping[str, Any], analysis: Mapping[str, Any]) -> pl.DataFrame:
    """Rule ``metric_sample_size``: coefficient of variation over seeded subsamples."""
    result = metric_stability.sample_size_from_files(matrices, locks, answers, pairs=pairs, runs=runs, stability=stability,
                                                     analysis=analysis)
    return _write(result, table, csv, md, "Sample-size robustness: coefficient of variation over subsamples")


def self_assessment_markdown(table: pl.DataFrame, stability: pl.DataFrame | None = None,
                             sample_size: pl.DataFrame | None = None) -> str:
    """A REPORT.md section for the self-assessment table (the lead wires it into the report).

    ``stability`` (``metric_stability`` table) adds the mean / max footrule per metric;
    ``sample_size`` (``metric_sample_size`` table) the mean CV per metric at each n.
    """
    lines = ["## Self-assessment (UnSAF)", ""]
    if table.height == 0:
        return "\n".join(lines + ["No self-assessment runs in this configuration.", ""])
    # parse counts are per (model, dataset, setting), repeated on each variant's row
    runs = table.unique(["model", "dataset", "setting"], keep="first", maintain_order=True)
    parsed, unparseable = int(runs["n_questions"].sum()), int(runs["n_unparseable"].sum())
    lines += [
        ("Each model wrote answerable and unanswerable questions about each image, then answered them in a fresh "
         "conversation or replied *unanswerable*. TA / FA: answered an answerable / unanswerable question; TU / FU: "
         "abstained on an unanswerable / answerable one. Audacity = TA / (TA + FA), timidity = TA / (TA + FU), UnF1 "
         "their harmonic mean (0 when a denominator is 0)."),
        "",
        (f"Parsed questions: {parsed} of {parsed + unparseable} requested ({unparseable} unparseable; "
         f"{int(table['n_empty'].sum())} empty replies left out of the four types)."),
        "",
    ]
    body = tables.to_markdown(table.select("model", "dataset", "setting", "variant", "n_questions", "n_unparseable",
                                           *TYPES, "audacity", "timidity", "unf1"))
    text = "\n".join(lines) + body
    if stability is not None:
        text += "\n### Ranking stability across datasets (Spearman's footrule, lower = more stable)\n\n"
        if stability.height:
            summary = stability.group_by("metric", maintain_order=True).agg(
                pl.len().alias("dataset_pairs"), pl.col("footrule").mean().alias("mean_footrule"),
                pl.col("footrule").max().alias("max_footrule_seen"), pl.col("max_footrule").max().alias("max_possible"))
            text += tables.to_markdown(summary)
        else:
            text += "Needs at least two datasets with the same models; none in this run.\n"
    if sample_size is not None and sample_size.height:
        text += "\n### Sample-size robustness (mean coefficient of variation over models and datasets)\n\n"
        wide = (sample_size.group_by("metric", "n", maintain_order=True).agg(pl.col("cv").mean())
                .sort("n").pivot(on="n", index="metric", values="cv"))
        text += tables.to_markdown(wide.rename({c: f"n={c}" for c in wide.columns if c != "metric"}))
    return text
