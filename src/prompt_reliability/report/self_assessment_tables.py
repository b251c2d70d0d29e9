"""Self-assessment tables for people and the pipeline: Parquet + CSV + Markdown, and the REPORT.md section.

Rule entry points over :mod:`prompt_reliability.analysis.self_assessment_scores` and
:mod:`prompt_reliability.analysis.metric_stability` (which compute; this module writes).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
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


def write_ranking_stability(reliability: Sequence[str], self_assessment: str, table: str, csv: str, md: str,
                            models: Sequence[str] | None = None) -> pl.DataFrame:
    """Rule ``metric_stability``: footrule of every metric between every pair of datasets."""
    return _write(metric_stability.ranking_stability_from_files(reliability, self_assessment, models), table, csv, md,
                  "Ranking stability across datasets (Spearman's footrule)")


def write_sample_size(matrices: Sequence[str], locks: Sequence[str], answers: Sequence[str], table: str, csv: str, md: str,
                      *, pairs: Sequence[Mapping[str, str]], runs: Sequence[Mapping[str, str]],
                      stability: Mapping[str, Any], analysis: Mapping[str, Any], tasks: Sequence[str] = (),
                      task_runs: Sequence[Mapping[str, str]] = (), imported: Sequence[str] = ()) -> pl.DataFrame:
    """Rule ``metric_sample_size``: coefficient of variation over seeded subsamples."""
    result = metric_stability.sample_size_from_files(matrices, locks, answers, pairs=pairs, runs=runs, stability=stability,
                                                     analysis=analysis, tasks=tasks, task_runs=task_runs,
                                                     imported=imported)
    return _write(result, table, csv, md, "Sample-size robustness: coefficient of variation over subsamples")


FIGURE_VIEWS = (  # file stem -> what the paper calls it
    ("answer_types", "Answer types per model and setting"),
    ("metric_stability", "Fig. 2: Spearman's footrule between datasets, UnF1 against the conventional metrics"),
    ("metric_sample_size", "Fig. 3: coefficient of variation against sample size, UnF1 against ECE"),
    ("instruction_tuning", "Fig. 4: instruction-tuned against base models"),
    ("prompt_variants", "Fig. 5: prompt variants on the timidity-audacity axis"),
    ("scale", "Fig. 6: accuracy against UnF1, bubble size = model size"),
)


def self_assessment_markdown(table: pl.DataFrame, stability: pl.DataFrame | None = None,
                             sample_size: pl.DataFrame | None = None, findings: pl.DataFrame | None = None,
                             figures: Sequence[str] = ()) -> str:
    """The REPORT.md section of the self-assessment: parse rates, undefined rows, the table, the paper's views.

    ``stability`` (``metric_stability`` table) adds the mean / max footrule per metric; ``sample_size``
    (``metric_sample_size`` table) the mean CV per metric at each n; ``findings`` the recomputed findings;
    ``figures`` (paths relative to REPORT.md) are shown in the paper's order.
    """
    lines = ["## Self-assessment (UnSAF)", ""]
    if table.height == 0:
        return "\n".join(lines + ["No self-assessment runs in this configuration.", ""])
    # parse counts are per (model, dataset, setting), repeated on each variant's row
    runs = table.unique(["model", "dataset", "setting"], keep="first", maintain_order=True)
    parsed, unparseable = int(runs["n_questions"].sum()), int(runs["n_unparseable"].sum())
    lines += [
        ("Each model wrote answerable and unanswerable questions about each image, then answered them in a fresh "
         "conversation or abstained. TA / FA: answered an answerable / unanswerable question; TU / FU: "
         "abstained on an unanswerable / answerable one. Audacity = TA / (TA + FA), timidity = TA / (TA + FU), UnF1 "
         "their harmonic mean; a model that abstained on everything (TA + FA = 0) has UnF1 = 0 (the paper's eq. 1)."),
        "",
        ("Adaptations of the paper's protocol: several seeds pool their counts (UnF1 from the pooled counts; "
         "`unf1_seed_sd` is the per-seed spread); the conventional metrics (Brier, MacroCE, ECE, top-label MCE "
         "`mce_top`) come from the models' task answers with a confidence (simulated or imported); the CV against "
         "sample size subsamples images for UnF1 (each with its questions and seeds) and items for ECE; MR and CU "
         "are not computed."),
        "",
        (f"Parsed questions: {parsed} of {parsed + unparseable} requested ({unparseable} unparseable; "
         f"{int(table['n_empty'].sum())} empty replies left out of the four types). Parse rate per model:"),
        "",
    ]
    rates = (runs.group_by("model", maintain_order=True)
             .agg(pl.col("n_questions").sum(), pl.col("n_unparseable").sum())
             .with_columns((pl.col("n_questions") / (pl.col("n_questions") + pl.col("n_unparseable"))).alias("parse_rate")))
    text = "\n".join(lines) + "\n" + tables.to_markdown(rates)
    undefined = table.filter(pl.col("unf1").is_nan()) if "note" in table.columns else table.clear()
    if undefined.height:
        text += ("\n**Undefined (NaN), left out of every ranking:** "
                 + "; ".join(f"{r['model']} / {r['dataset']} / {r['setting']} / {r['variant']}: {r['note']}"
                             for r in undefined.iter_rows(named=True)) + ".\n")
    if table.height <= 24:
        shown = table.select("model", "dataset", "setting", "variant", "n_questions", "n_unparseable", *TYPES,
                             "audacity", "timidity", "unf1")
        text += "\n" + tables.to_markdown(shown)
    else:  # many runs: the default variant, mean over datasets; the full table is tables/self_assessment.csv
        shown = (table.filter(pl.col("variant") == "default").group_by("model", "setting", maintain_order=True)
                 .agg(pl.len().alias("datasets"), *(pl.col(c).mean() for c in ("audacity", "timidity", "unf1")),
                      *(pl.col(c).mean() for c in ("accuracy", "ece") if c in table.columns))
                 .sort("setting", "unf1", descending=[False, True]))
        text += ("\nDefault answering instruction, mean over datasets (full table `tables/self_assessment.csv`):\n\n"
                 + tables.to_markdown(shown))
    if findings is not None and findings.height:
        text += ("\n### The paper's findings on this run\n\nCounts of comparisons that hold (`wins` of `pairs`); the "
                 "claims section above gives each a verdict. Table `tables/self_assessment_findings.csv`.\n\n"
                 + tables.to_markdown(findings))
    if stability is not None:
        text += "\n### Ranking stability across datasets (Spearman's footrule, lower = more stable)\n\n"
        if stability.height:
            summary = stability.group_by("metric", maintain_order=True).agg(
                pl.len().alias("dataset_pairs"), pl.col("n_models").max(), pl.col("footrule").mean().alias("mean_footrule"),
                pl.col("footrule").max().alias("max_footrule_seen"), pl.col("max_footrule").max().alias("max_possible"))
            text += tables.to_markdown(summary)
        else:
            text += "Needs at least two datasets with the same models; none in this run.\n"
    if sample_size is not None and sample_size.height:
        text += "\n### Sample-size robustness (mean coefficient of variation over models and datasets)\n\n"
        wide = (sample_size.group_by("metric", "n", maintain_order=True).agg(pl.col("cv").mean())
                .sort("n").pivot(on="n", index="metric", values="cv"))
        text += tables.to_markdown(wide.rename({c: f"n={c}" for c in wide.columns if c != "metric"}))
    by_stem = {Path(f).stem: f for f in figures}
    views = [(by_stem[stem], title) for stem, title in FIGURE_VIEWS if stem in by_stem]
    if views:
        text += "\n### Figures\n\n" + "".join(f"**{title}**\n\n![{title}]({path})\n\n" for path, title in views)
    return text
