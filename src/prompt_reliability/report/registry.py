"""The registry of analyses: one record per table the run writes, and nothing listed elsewhere.

Every list the workflow and the report need is derived from :data:`ANALYSES` (in registry order):

- the table rules (``workflow/rules/tables.smk``): a table ``made_from="pieces"`` is assembled from
  the per-pair pieces of the same name; a table made from another table is a summary, written by
  ``function`` from that table; ``made_from="rule"`` is written by a rule of its own in the method's
  rule file;
- each table's outputs, its HTML-report category and caption ``workflow/report/<caption>``
  (``table_outputs`` in ``common.smk``), and each figure's category (``figure_output``: the category of
  the analysis that lists the figure);
- the run's final targets (``final_targets`` in ``common.smk``): every table whose ``needs`` holds for
  the config, with its figures, and REPORT.md;
- the claims check's inputs: the produced tables that the claims files name;
- REPORT.md: the headline tables (``headline``, in registry order; "not produced" when the run lacks
  one) and the sections after them (``section``, in registry order; a section may be empty).

Figure paths here are relative to the figures folder: the rules own the layout of the results.
A figure pattern with ``{model}``, ``{dataset}`` and ``{split}`` is expanded over the evaluation
pairs, one with ``{dataset}`` alone over the evaluation datasets.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from prompt_reliability.analysis import (
    aggregation,
    bootstrap,
    calibration,
    family_view,
    fragility,
    reliability,
    selective,
    topk,
)
from prompt_reliability.report import distillation_tables
from prompt_reliability.report.operating_points import operating_points_section
from prompt_reliability.report.safety_calibration_tables import safety_calibration_markdown
from prompt_reliability.report.self_assessment_tables import self_assessment_markdown
from prompt_reliability.report.vscbench_tables import vscbench_markdown

PIECES = "pieces"
OWN_RULE = "rule"

Shaper = Callable[[pl.DataFrame], pl.DataFrame]


def _identity(frame: pl.DataFrame) -> pl.DataFrame:
    return frame


@dataclass(frozen=True)
class Headline:
    """A headline table of REPORT.md: ``shape(table)`` under ``caption``, naming the paper table it mirrors."""

    caption: str
    paper: str | None = None  # None: this project's addition, no paper table
    shape: Shaper = _identity


@dataclass(frozen=True)
class ReportInputs:
    """What a REPORT.md section may read: the run's tables (frames and Parquet paths) and figures."""

    frames: Mapping[str, pl.DataFrame]
    table_paths: Mapping[str, str]
    figures: Sequence[str]
    base: str  # REPORT.md's folder: links are relative to it

    def relative(self, path: str) -> str:
        return os.path.relpath(path, self.base)


def always(config: Mapping[str, Any]) -> bool:
    return True


@dataclass(frozen=True)
class Analysis:
    """One table (``<name>.parquet``, ``.csv``, ``.md`` in the tables folder) and everything derived from it."""

    name: str
    category: str  # HTML report (snakemake --report) category of the table and its figures
    made_from: str  # PIECES, OWN_RULE, or the name of the table this summary reads
    function: Callable[..., Any] | None = None  # a summary's function (rule <name>); None otherwise
    caption: str = ""  # workflow/report/<caption>; default <name>.rst
    figures: tuple[str, ...] = ()  # under the figures folder, built by the method's figure rules
    headline: Headline | None = None
    section: Callable[[ReportInputs], str] | None = None  # a REPORT.md section after the headlines ("": none)
    needs: Callable[[Mapping[str, Any]], bool] = field(default=always)  # does this config produce it?

    def __post_init__(self) -> None:
        if (self.function is None) == (self.made_from not in (PIECES, OWN_RULE)):
            raise ValueError(f"analysis {self.name!r}: a summary (and only a summary) has a function")
        if not self.caption:
            object.__setattr__(self, "caption", f"{self.name}.rst")


# ---- REPORT.md shapes and sections ------------------------------------------------------------


def _nll_ece_by_method(frame: pl.DataFrame) -> pl.DataFrame:
    keep = frame.filter(pl.col("method").is_in(["selected", "random", "mean"]))
    wide = keep.pivot(on="method", index=["model", "dataset", "split"], values=["nll", "ece"])
    order = [f"{m}_{s}" for m in ("nll", "ece") for s in ("selected", "random", "mean") if f"{m}_{s}" in wide.columns]
    return wide.select("model", "dataset", "split", *order)


def _ranking_metrics(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("metric").is_in(["auroc", "auprc"]))


def _calibration_metrics(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.filter(pl.col("metric").is_in(["nll", "ece"]))


def _trust_at_a_glance(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select("model", "dataset", "split", "label_mass_mean", "label_mass_worst", "auroc", "auroc_ci_low",
                        "auroc_ci_high", "chance_level")


def _operating_points_section(inputs: ReportInputs) -> str:
    return operating_points_section(inputs.frames.get("operating_points"))


def _distillation_runs(config: Mapping[str, Any]) -> bool:
    return bool((config.get("distillation") or {}).get("students"))


def _distillation_section(inputs: ReportInputs) -> str:
    if "distillation" not in inputs.frames:
        return ""
    return distillation_tables.distillation_markdown(inputs.frames["distillation"])


def _self_assessment_section(inputs: ReportInputs) -> str:
    if "self_assessment" not in inputs.frames:
        return ""
    figures = [inputs.relative(f) for f in inputs.figures if os.path.basename(os.path.dirname(f)) == "self_assessment"]
    return self_assessment_markdown(inputs.frames["self_assessment"], inputs.frames.get("metric_stability"),
                                    inputs.frames.get("metric_sample_size"), inputs.frames.get("self_assessment_findings"),
                                    figures)


def _safety_calibration_section(inputs: ReportInputs) -> str:
    if "safety_calibration" not in inputs.table_paths:
        return ""
    scatter = [inputs.relative(f) for f in inputs.figures if os.path.basename(f).startswith("safety_calibration_")]
    pareto = next((inputs.relative(f) for f in inputs.figures if os.path.basename(f) == "safety_pareto.png"), None)
    return safety_calibration_markdown(inputs.table_paths["safety_calibration"],
                                       inputs.table_paths.get("safety_tradeoff"), scatter=scatter, pareto=pareto,
                                       responses_table=inputs.table_paths.get("safety_responses"),
                                       judges_table=inputs.table_paths.get("safety_judges"))


def _self_assessment_runs(config: Mapping[str, Any]) -> bool:
    assessment = config["self_assessment"]
    return bool(assessment["models"] or assessment["simulate"] or assessment["imports"])


def _safety_tradeoff_runs(config: Mapping[str, Any]) -> bool:
    safety = config["safety_calibration"]
    # first-token scores only: a served model answers in response mode alone
    hf = [m for m in safety["models"] if config["models"].get(m, {}).get("backend") == "hf"]
    return bool(hf and safety["helpfulness"]["dataset"])


def _safety_responses_run(config: Mapping[str, Any]) -> bool:
    safety = config["safety_calibration"]
    return bool(safety["models"] and safety["responses"]["enabled"])


def _vscbench_runs(config: Mapping[str, Any]) -> bool:
    return bool(config["safety_simulation"]["models"])


def _vscbench_section(inputs: ReportInputs) -> str:
    if "vscbench_findings" not in inputs.frames:
        return ""
    figures = [inputs.relative(f) for f in inputs.figures if os.sep + "vscbench" + os.sep in f]
    return vscbench_markdown(inputs.frames["vscbench_findings"], inputs.frames.get("vscbench_tradeoff"), figures)


PER_PAIR = "{model}/{dataset}/{split}"

# Registry order is the order of REPORT.md's headline tables, its sections and its figure links.
_RECORDS = [
    Analysis("trust", "Trust", PIECES,
             headline=Headline("Can each model's scores be trusted at all: the share of next-token probability on "
                               "the two label tokens (mean; worst prompt) and the AUROC of the mean score with its "
                               "bootstrap CI; chance_level = the CI contains or lies below 0.5.", None,
                               _trust_at_a_glance)),
    Analysis("per_prompt", "Reliability", PIECES),
    Analysis("reliability", "Reliability", PIECES, figures=("reliability/deltas.png", f"reliability/{PER_PAIR}.png"),
             headline=Headline("NLL and ECE of the train-selected prompt, the locked random prompt and the mean over "
                               "all prompts, per pair.", "paper Table 1", _nll_ece_by_method)),
    Analysis("ranking_distribution", "Reliability", PIECES),
    Analysis("aggregation", "Aggregation", PIECES),
    Analysis("aggregation_summary", "Aggregation", "aggregation", aggregation.write_aggregation_summary,
             headline=Headline("Training-free aggregation rules: NLL wins (pairs where the rule has the lowest NLL) "
                               "and average NLL rank.", "paper Table 2")),
    Analysis("topk", "Aggregation", PIECES, figures=("topk/all_pairs.png", f"topk/{PER_PAIR}.png")),
    Analysis("topk_summary", "Aggregation", "topk", topk.write_topk_summary),
    Analysis("calibration", "Calibration", PIECES),
    Analysis("calibration_summary", "Calibration", "calibration", calibration.write_calibration_summary,
             headline=Headline("Calibrators fit on the lock split vs the untreated mean (panel A: on the selected "
                               "prompt, B: on the mean); wins = the calibrated score has the lower metric.",
                               "paper Table 3")),
    Analysis("selective", "Uncertainty", PIECES, figures=(f"selective/{PER_PAIR}/risk_coverage.png",)),
    Analysis("selective_summary", "Uncertainty", "selective", selective.write_selective_summary,
             headline=Headline("Selective prediction: in how many pairs each abstention signal is best on each risk "
                               "summary.", "paper Table 4")),
    Analysis("fragility", "Fragility", PIECES, figures=("fragility/gaps.png", f"fragility/{PER_PAIR}.png")),
    Analysis("fragility_summary", "Fragility", "fragility", fragility.write_fragility_summary,
             headline=Headline("Pairs in which the top cross-prompt-spread decile (D10) has higher mistake / "
                               "disagreement rates than D1.", "paper Table 5; per family: Table 7")),
    Analysis("wins", "Reliability", OWN_RULE,
             headline=Headline("Ranking: the mean ensemble against Sel, Rand, Med15 and Mean15 of the 15 single "
                               "prompts on AUROC and AUPRC.", "paper Table 6", _ranking_metrics)),
    Analysis("family_view", "Reliability", PIECES),
    Analysis("family_wins", "Reliability", "family_view", family_view.write_family_wins,
             headline=Headline("Within-family view: each family's mean against the family-local selected prompt "
                               "(view within, the lock-split best of the family's own prompts) and against the "
                               "prompt selected from all prompts (view global).", "paper Table 7",
                               _calibration_metrics)),
    Analysis("ece_variants", "Reliability", PIECES),
    Analysis("ece_variants_summary", "Reliability", "ece_variants", reliability.write_ece_variants_summary,
             headline=Headline("The mean's ECE gain over the selected prompt under other binnings.", "paper Table 8")),
    Analysis("bootstrap", "Reliability", PIECES),
    Analysis("bootstrap_summary", "Reliability", "bootstrap", bootstrap.write_bootstrap_summary,
             headline=Headline("Bootstrap CIs of selected - mean NLL / ECE: pairs CI-above zero (wins) and CI-below "
                               "(losses), per prevalence.", "paper Table 9, Appendices F and G")),
    Analysis("operating_points", "Operating points", PIECES, section=_operating_points_section),
    Analysis("self_assessment", "Self-assessment", OWN_RULE, figures=("self_assessment/answer_types.png",),
             section=_self_assessment_section, needs=_self_assessment_runs),
    Analysis("metric_stability", "Self-assessment", OWN_RULE, figures=("self_assessment/metric_stability.png",),
             needs=_self_assessment_runs),
    Analysis("metric_sample_size", "Self-assessment", OWN_RULE, figures=("self_assessment/metric_sample_size.png",),
             needs=_self_assessment_runs),
    Analysis("self_assessment_findings", "Self-assessment", OWN_RULE,
             figures=("self_assessment/instruction_tuning.png", "self_assessment/prompt_variants.png",
                      "self_assessment/scale.png"), needs=_self_assessment_runs),
    Analysis("safety_calibration", "Safety calibration", OWN_RULE, figures=("safety_calibration_{dataset}.png",),
             section=_safety_calibration_section),
    Analysis("safety_tradeoff", "Safety calibration", OWN_RULE, figures=("safety_pareto.png",),
             needs=_safety_tradeoff_runs),
    Analysis("safety_responses", "Safety calibration", OWN_RULE, needs=_safety_responses_run),
    Analysis("safety_judges", "Safety calibration", OWN_RULE, needs=_safety_responses_run),


    Analysis("vscbench_sra", "VSCBench (simulated)", OWN_RULE,
             figures=("vscbench/sra_scatter.png", "vscbench/categories.png"), needs=_vscbench_runs),
    Analysis("vscbench_tradeoff", "VSCBench (simulated)", OWN_RULE, figures=("vscbench/pareto.png",), needs=_vscbench_runs),
    Analysis("vscbench_findings", "VSCBench (simulated)", OWN_RULE, section=_vscbench_section, needs=_vscbench_runs),
    Analysis("distillation", "Distillation", OWN_RULE, section=_distillation_section, needs=_distillation_runs,
             figures=("distillation/unf1.png", "distillation/answer_types.png", "distillation/hallucination.png",
                      "distillation/training_loss.png")),
    Analysis("distillation_claims", "Distillation", "distillation", distillation_tables.write_distillation_claims,
             needs=_distillation_runs),
    Analysis("claims", "Claims", OWN_RULE),
]

ANALYSES: dict[str, Analysis] = {}


def register(analysis: Analysis) -> Analysis:
    """Add ``analysis`` to the registry (its name and, for a summary, its source checked)."""
    if analysis.name in ANALYSES:
        raise ValueError(f"analysis {analysis.name!r} is registered twice")
    if analysis.made_from not in (PIECES, OWN_RULE) and analysis.made_from not in ANALYSES:
        raise ValueError(f"summary {analysis.name!r} reads {analysis.made_from!r}, which is not registered before it")
    ANALYSES[analysis.name] = analysis
    return analysis


for _record in _RECORDS:
    register(_record)


def produced(config: Mapping[str, Any]) -> list[Analysis]:
    """The analyses this (validated) config produces, in registry order."""
    return [a for a in ANALYSES.values() if a.needs(config)]


def summaries() -> list[Analysis]:
    return [a for a in ANALYSES.values() if a.function is not None]


def assembled() -> list[Analysis]:
    return [a for a in ANALYSES.values() if a.made_from == PIECES]


def figure_owner(pattern: str) -> Analysis:
    """The analysis that lists figure ``pattern`` (relative to the figures folder): its category is the figure's."""
    for analysis in ANALYSES.values():
        if pattern in analysis.figures:
            return analysis
    raise KeyError(f"figure {pattern!r} is not registered: add it to the figures of its analysis in report/registry.py")
