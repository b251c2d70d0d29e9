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


def answer_types_figure(table: pl.DataFrame) -> Figure:
    """Stacked bars of the four answer types (fractions of classified answers), one bar per model x run."""
    fig = new_figure(figsize=(max(4.0, 1.1 * max(table.height, 1) + 2), 4.0))
    if table.height == 0:
        _message(fig, "no self-assessment runs")
        return fig
    ax = fig.add_subplot()
    labels = [f"{r['model']}\n{r['dataset']} {r['setting']}" + ("" if r["variant"] == "default" else f"\n{r['variant']}")
              for r in table.iter_rows(named=True)]
    totals = np.array([sum(r[t] for t in TYPE_COLOURS) for r in table.iter_rows(named=True)], dtype=float)
    bottom = np.zeros(table.height)
    x = np.arange(table.height)
    for t, colour in TYPE_COLOURS.items():
        share = np.divide(table[t].to_numpy().astype(float), totals, out=np.zeros(table.height), where=totals > 0)
        ax.bar(x, share, bottom=bottom, color=colour, label=TYPE_NAMES[t], width=0.7)
        bottom += share
    for i, r in enumerate(table.iter_rows(named=True)):
        ax.text(i, 1.02, f"UnF1 {r['unf1']:.2f}\nn={r['n_questions']}, unparsed {r['n_unparseable']}", ha="center",
                va="bottom", fontsize=7)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("share of classified answers")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_title("Self-assessment answer types")
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


def sample_size_figure(table: pl.DataFrame) -> Figure:
    """CV against subsample size, one panel per metric, one line per model x dataset (paper Figure 3)."""
    fig, panels = _metric_panels(table, "no sample-size results", 2.8)
    for i, (metric, ax) in enumerate(panels):
        part = table.filter(pl.col("metric") == metric)
        for (model, dataset), line in part.group_by("model", "dataset", maintain_order=True):
            ax.plot(line["n"].to_numpy(), line["cv"].to_numpy(), marker="o", ms=3, label=f"{model} {dataset}")
        ax.set_xscale("log")
        ax.set_title(metric, fontsize=8)
        ax.set_xlabel("n", fontsize=7)
        ax.set_ylabel("CV", fontsize=7)
        ax.tick_params(labelsize=6)
        if i == 0:
            ax.legend(fontsize=5)
    return fig


def write_answer_types(table: str, figure: str) -> None:
    _save(answer_types_figure(pl.read_parquet(table)), figure)


def write_footrule_heatmap(table: str, figure: str) -> None:
    _save(footrule_heatmap(pl.read_parquet(table)), figure)


def write_sample_size_figure(table: str, figure: str) -> None:
    _save(sample_size_figure(pl.read_parquet(table)), figure)
