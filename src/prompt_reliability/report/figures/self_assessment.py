"""Self-assessment figures: answer types per model, footrule heat maps, CV against sample size.

matplotlib object API only (``Figure``; no global pyplot state): jobs run side by side in threads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from prompt_reliability.report.figures import new_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TYPE_COLOURS = {"ta": "#2b8a3e", "fu": "#a9e34b", "tu": "#1864ab", "fa": "#e03131"}
TYPE_NAMES = {"ta": "TA (answered answerable)", "fu": "FU (abstained on answerable)",
              "tu": "TU (abstained on unanswerable)", "fa": "FA (answered unanswerable)"}


def _save(fig: Figure, path: str | Path) -> None:
    save_figure(fig, path)


def _message(fig: Figure, text: str) -> None:
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True)


def _pooled_unf1(counts: dict[str, int]) -> float:
    from prompt_reliability.analysis.self_assessment_scores import unf1_scores

    return unf1_scores(counts["ta"], counts["fa"], counts["tu"], counts["fu"])["unf1"]


def answer_types_figure(table: pl.DataFrame) -> Figure:
    """Horizontal stacked bars of the four answer types (fractions of classified answers), one bar per run
    (model, dataset, setting, variant); with many runs, one per model and setting (default variant, counts
    summed over datasets). UnF1, parsed and unparsed counts at the right of each bar."""
    if table.height == 0:
        fig = new_figure(figsize=(5, 2))
        _message(fig, "no self-assessment runs")
        return fig
    pooled = table.height > 24
    if pooled:
        table = (table.filter(pl.col("variant") == "default").group_by("model", "setting", maintain_order=True)
                 .agg(*(pl.col(c).sum() for c in ("ta", "fa", "tu", "fu", "n_questions", "n_unparseable")))
                 .with_columns(pl.lit("all datasets").alias("dataset"), pl.lit("default").alias("variant")))
        table = table.with_columns(pl.struct("ta", "fa", "tu", "fu").map_elements(
            lambda c: _pooled_unf1(c), return_dtype=pl.Float64).alias("unf1"))
    fig = new_figure(figsize=(9.0, 1.2 + 0.28 * table.height), layout="constrained")
    ax = fig.add_subplot()
    labels = [f"{r['model']} · {r['dataset']} · {r['setting']}" + ("" if r["variant"] == "default" else f" · {r['variant']}")
              for r in table.iter_rows(named=True)]
    totals = np.array([sum(r[t] for t in TYPE_COLOURS) for r in table.iter_rows(named=True)], dtype=float)
    left = np.zeros(table.height)
    y = np.arange(table.height)[::-1]  # first run on top
    for t, colour in TYPE_COLOURS.items():
        share = np.divide(table[t].to_numpy().astype(float), totals, out=np.zeros(table.height), where=totals > 0)
        ax.barh(y, share, left=left, color=colour, label=TYPE_NAMES[t], height=0.75)
        left += share
    for yi, r in zip(y, table.iter_rows(named=True)):
        score = "UnF1 undefined" if r["unf1"] != r["unf1"] else f"UnF1 {r['unf1']:.2f}"
        ax.text(1.01, yi, f"{score}  ({r['n_questions']} parsed, {r['n_unparseable']} unparsed)", va="center",
                fontsize=6)
    ax.set_yticks(y, labels, fontsize=6)
    ax.set_xlim(0, 1.45)
    ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0])
    ax.set_xlabel("share of classified answers" + (" (default instruction, counts summed over datasets)" if pooled else ""))
    ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    return fig


def _metric_panels(table: pl.DataFrame, empty_message: str, panel_height: float) -> tuple[Figure, list]:
    """A figure with one panel per ``metric`` of ``table`` (up to 4 a row), or a message when there is none."""
    metrics = table["metric"].unique(maintain_order=True).to_list() if table.height else []
    if not metrics:
        fig = new_figure(figsize=(5, 2))
        _message(fig, empty_message)
        return fig, []
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig = new_figure(figsize=(3.2 * cols, panel_height * rows), layout="constrained")
    return fig, [(metric, fig.add_subplot(rows, cols, i + 1)) for i, metric in enumerate(metrics)]


def footrule_heatmap(stability: pl.DataFrame) -> Figure:
    """One dataset x dataset panel of footrule distances per metric."""
    fig, panels = _metric_panels(stability, "ranking stability needs at least two datasets with the same models", 3.0)
    if not panels:
        return fig
    vmax = float(stability["max_footrule"].max()) or 1.0
    image = None
    for metric, ax in panels:
        part = stability.filter(pl.col("metric") == metric)
        names = sorted(set(part["dataset_a"]) | set(part["dataset_b"]))
        grid = np.zeros((len(names), len(names)))
        for r in part.iter_rows(named=True):
            a, b = names.index(r["dataset_a"]), names.index(r["dataset_b"])
            grid[a, b] = grid[b, a] = r["footrule"]
        image = ax.imshow(grid, vmin=0, vmax=vmax, cmap="magma_r")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title(f"{metric} (mean {part['footrule'].mean():.1f})", fontsize=8)
    fig.colorbar(image, ax=fig.axes, label="Spearman's footrule", shrink=0.8)
    return fig


def _label_cv_panel(ax, title: str, xlabel: str, ylabel: str, legend_size: int | None) -> None:
    """A CV-against-n panel's log x axis, title and labels; a legend when ``legend_size`` is given."""
    ax.set_xscale("log")
    ax.set_title(title, fontsize=8)
    ax.set_xlabel(xlabel, fontsize=7)
    ax.set_ylabel(ylabel, fontsize=7)
    ax.tick_params(labelsize=6)
    if legend_size is not None:
        ax.legend(fontsize=legend_size)


def unf1_vs_ece_figure(table: pl.DataFrame) -> Figure:
    """The paper's Fig. 3: per model, CV against n of UnF1 (each setting, default variant) and of ECE (task answers),
    mean over datasets, log scale (a CV of 0, the full set drawn every time, is left out)."""
    metric_names = [m for m in ("unf1_mc", "unf1_open", "ece_task") if m in set(table["metric"])]
    # a CV of (numerically) 0 is the full set drawn every time (n = all): not drawn on the log scale
    part = table.filter(pl.col("metric").is_in(metric_names) & (pl.col("cv") > 1e-9) & pl.col("cv").is_not_nan())
    models = part["model"].unique(maintain_order=True).to_list()
    cols = min(5, max(len(models), 1))
    rows = math.ceil(len(models) / cols)
    fig = new_figure(figsize=(3.2 * cols, 3.0 * rows), layout="constrained")
    styles = {"unf1_mc": ("#2f9e44", "UnF1 (mc)"), "unf1_open": ("#1971c2", "UnF1 (open)"), "ece_task": ("#c92a2a", "ECE")}
    for i, model in enumerate(models):
        ax = fig.add_subplot(rows, cols, i + 1, sharey=fig.axes[0] if i else None)
        for metric in metric_names:
            line = (part.filter((pl.col("model") == model) & (pl.col("metric") == metric))
                    .group_by("n").agg(pl.col("cv").mean()).sort("n"))
            colour, label = styles[metric]
            ax.plot(line["n"].to_numpy(), line["cv"].to_numpy(), marker="o", ms=3, color=colour, label=label)
        ax.set_yscale("log")
        _label_cv_panel(ax, model, "sample size n (images / items)", "CV (mean over datasets)", 6 if i == 0 else None)
    return fig


def sample_size_figure(table: pl.DataFrame) -> Figure:
    """CV against subsample size: the paper's UnF1-vs-ECE view (:func:`unf1_vs_ece_figure`) when the run has task
    answers, else one panel per metric, one line per model x dataset."""
    if table.height and "ece_task" in set(table["metric"]):
        return unf1_vs_ece_figure(table)
    fig, panels = _metric_panels(table, "no sample-size results", 2.8)
    for i, (metric, ax) in enumerate(panels):
        part = table.filter(pl.col("metric") == metric)
        for (model, dataset), line in part.group_by("model", "dataset", maintain_order=True):
            ax.plot(line["n"].to_numpy(), line["cv"].to_numpy(), marker="o", ms=3, label=f"{model} {dataset}")
        _label_cv_panel(ax, metric, "n", "CV", 5 if i == 0 else None)
    return fig


def write_answer_types(table: str, figure: str) -> None:
    _save(answer_types_figure(pl.read_parquet(table)), figure)


def write_footrule_heatmap(table: str, figure: str) -> None:
    _save(footrule_heatmap(pl.read_parquet(table)), figure)


def write_sample_size_figure(table: str, figure: str) -> None:
    _save(sample_size_figure(pl.read_parquet(table)), figure)


# --- the paper's findings views (Figs. 4-6) -------------------------------------------------------


def _open_default(table: pl.DataFrame) -> pl.DataFrame:
    return table.filter((pl.col("setting") == "open") & (pl.col("variant") == "default")
                        & pl.col("unf1").is_not_nan())


def instruction_figure(table: pl.DataFrame, pairs: list[dict[str, str]]) -> Figure:
    """Instruction-tuned minus base: audacity, timidity and UnF1 per dataset, one panel per pair (paper Fig. 4)."""
    rows = _open_default(table)
    value = {(r["model"], r["dataset"]): r for r in rows.iter_rows(named=True)}
    datasets = sorted({d for _, d in value})
    shown = [p for p in pairs if any((p["base"], d) in value and (p["instruct"], d) in value for d in datasets)]
    if not shown:
        fig = new_figure(figsize=(6, 2))
        _message(fig, "no (base, instruction-tuned) pair with self-assessment rows (self_assessment.instruction_pairs)")
        return fig
    fig = new_figure(figsize=(max(5.0, 4.5 * len(shown)), 3.8), layout="constrained")
    for i, pair in enumerate(shown):
        ax = fig.add_subplot(1, len(shown), i + 1, sharey=fig.axes[0] if i else None)
        names = [d for d in datasets if (pair["base"], d) in value and (pair["instruct"], d) in value]
        x = np.arange(len(names))
        for offset, (metric, colour) in zip((-0.27, 0.0, 0.27), (("audacity", "#e8590c"), ("timidity", "#1971c2"),
                                                                 ("unf1", "#2f9e44"))):
            delta = [value[(pair["instruct"], d)][metric] - value[(pair["base"], d)][metric] for d in names]
            ax.bar(x + offset, delta, width=0.27, color=colour, label=f"Δ {metric}")
        ax.axhline(0, color="black", lw=0.8)
        ax.set_xticks(x, names, fontsize=7, rotation=30, ha="right")
        ax.set_title(f"{pair['instruct']} − {pair['base']}", fontsize=8)
        if i == 0:
            ax.set_ylabel("instruction-tuned − base (open-ended)")
            ax.legend(fontsize=7)
    fig.suptitle("Instruction tuning: lower timidity = more abstention on answerable questions", fontsize=9)
    return fig


def prompt_variants_figure(table: pl.DataFrame) -> Figure:
    """FA rate vs FU rate per model (mean over datasets), arrows default -> each variant, per setting (paper Fig. 5)."""
    from matplotlib.lines import Line2D

    variants = [v for v in table["variant"].unique(maintain_order=True).to_list() if v != "default"] if table.height else []
    fig = new_figure(figsize=(10, 4.5), layout="constrained")
    if not variants:
        _message(fig, "one answering variant only: add cautious / encouraging to self_assessment.variants")
        return fig
    rates = table.with_columns(
        (pl.col("fa") / (pl.col("fa") + pl.col("tu"))).alias("fa_rate"),
        (pl.col("fu") / (pl.col("fu") + pl.col("ta"))).alias("fu_rate"),
    ).group_by("model", "setting", "variant", maintain_order=True).agg(pl.col("fa_rate").mean(), pl.col("fu_rate").mean())
    colours = {"cautious": "#1864ab", "encouraging": "#c92a2a"}
    for i, setting in enumerate(["mc", "open"]):
        ax = fig.add_subplot(1, 2, i + 1)
        part = rates.filter(pl.col("setting") == setting)
        point = {(r["model"], r["variant"]): (r["fa_rate"], r["fu_rate"]) for r in part.iter_rows(named=True)}
        for model in part["model"].unique(maintain_order=True):
            if (model, "default") not in point:
                continue
            x0, y0 = point[(model, "default")]
            ax.plot(x0, y0, "o", color="black", ms=4)
            ax.annotate(model, (x0, y0), fontsize=5, xytext=(2, 2), textcoords="offset points")
            for variant in variants:
                if (model, variant) in point:
                    x1, y1 = point[(model, variant)]
                    ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": colours.get(variant, "grey"),
                                                                   "lw": 0.8})
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_xlabel("FA rate = FA / (FA + TU)  (audacious →)")
        ax.set_ylabel("FU rate = FU / (FU + TA)  (timid →)")
        ax.set_title(f"{setting}: each model's default instruction (dot) and its variants (arrows)", fontsize=8)
        ax.legend(handles=[Line2D([], [], color=colours.get(v, "grey"), label=v) for v in variants], fontsize=7,
                  loc="upper right")
    return fig


def scale_figure(table: pl.DataFrame, scales: dict[str, float]) -> Figure:
    """Accuracy vs UnF1 per dataset, bubble size = model size, Spearman rho of UnF1 with size (paper Fig. 6)."""
    rows = _open_default(table).filter(pl.col("accuracy").is_not_nan())
    datasets = rows["dataset"].unique(maintain_order=True).to_list()
    if not datasets:
        fig = new_figure(figsize=(5, 2))
        _message(fig, "no model with both task answers (accuracy) and a defined UnF1")
        return fig
    from prompt_reliability.analysis.self_assessment_findings import spearman

    cols = min(3, len(datasets))
    fig = new_figure(figsize=(4.2 * cols, 3.8 * math.ceil(len(datasets) / cols)), layout="constrained")
    for i, dataset in enumerate(datasets):
        ax = fig.add_subplot(math.ceil(len(datasets) / cols), cols, i + 1)
        part = rows.filter(pl.col("dataset") == dataset)
        known = part.filter(pl.col("model").is_in(list(scales)))
        unknown = part.filter(~pl.col("model").is_in(list(scales)))
        sizes = np.array([scales[m] for m in known["model"]], dtype=float)
        ax.scatter(known["accuracy"], known["unf1"], s=20 + 12 * sizes, alpha=0.5, color="#1971c2", edgecolor="black",
                   lw=0.5)
        ax.scatter(unknown["accuracy"], unknown["unf1"], s=60, facecolor="none", edgecolor="#c92a2a", lw=1.0,
                   label="size not public")
        for r in part.iter_rows(named=True):
            ax.annotate(r["model"], (r["accuracy"], r["unf1"]), fontsize=5, xytext=(3, 3), textcoords="offset points")
        rho = spearman(sizes, known["unf1"].to_numpy()) if known.height >= 3 else None
        title = f"{dataset}: Spearman(UnF1, size) = {rho[0]:.2f} (p {rho[1]:.3f})" if rho else dataset
        ax.set_title(title, fontsize=7)
        ax.set_xlabel("task accuracy", fontsize=7)
        ax.set_ylabel("UnF1 (open, default)", fontsize=7)
        ax.tick_params(labelsize=6)
        if unknown.height and i == 0:
            ax.legend(fontsize=6)
    return fig


def write_findings_figures(table: str, instruction: str, prompt_variants: str, scale: str, *,
                           instruction_pairs: list[dict[str, str]], scales: dict[str, float]) -> None:
    frame = pl.read_parquet(table)
    _save(instruction_figure(frame, instruction_pairs), instruction)
    _save(prompt_variants_figure(frame), prompt_variants)
    _save(scale_figure(frame, scales), scale)
