"""Safety-calibration figures (matplotlib object API only: jobs run in threads, no pyplot state).

- :func:`sra_scatter`: SRA_s (x) against SRA_u (y), one marker per model x category, the
  over-safe and under-safe regions of the verdict thresholds shaded (in data coordinates: the
  regions start exactly at the configured SRA values).
- :func:`pareto_figure`: safety (SRA_a) against helpfulness accuracy, one point per calibration
  variant, the Pareto frontier (no other variant at least as good on both, better on one) drawn.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from prompt_reliability.analysis.safety_calibration import ALL
from prompt_reliability.base.io import atomic_path
from prompt_reliability.report.figures import new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 150
_MARKERS = "osD^v<>pPXh*"


def save(fig: Figure, path: str | os.PathLike) -> None:
    """PNG, atomically (the Agg canvas directly, no pyplot)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight")


def sra_scatter(table: pl.DataFrame, dataset: str, method: str, thresholds: Mapping[str, Mapping[str, float]]) -> Figure:
    """One panel: SRA_s vs SRA_u of ``method`` on ``dataset``; colour = category, marker = model."""
    from matplotlib.patches import Rectangle

    view = table.filter((pl.col("dataset") == dataset) & (pl.col("method") == method)).drop_nulls(["sra_s", "sra_u"])
    fig = new_figure(figsize=(5.2, 4.6))
    ax = fig.add_subplot()
    over, under = thresholds["over_safe"], thresholds["under_safe"]
    # regions in data coordinates (SRA values), so they sit at the thresholds whatever the axis margins
    ax.add_patch(Rectangle((0, over["sra_u_above"]), over["sra_s_below"], 1 - over["sra_u_above"], color="tab:orange",
                           alpha=0.15, lw=0, label="_over-safe region"))
    ax.add_patch(Rectangle((under["sra_s_above"], 0), 1 - under["sra_s_above"], under["sra_u_below"], color="tab:red",
                           alpha=0.15, lw=0, label="_under-safe region"))
    ax.text(0.02, 0.985, "over-safe", va="top", fontsize=8, color="tab:orange")
    ax.text(0.98, 0.015, "under-safe", ha="right", va="bottom", fontsize=8, color="tab:red")
    ax.plot([0, 1], [1, 0], ls=":", color="grey", lw=0.8)  # SRA_a = 0.5: no better than always / never flagging
    models = view["model"].unique(maintain_order=True).to_list()
    categories = sorted(set(view["category"].to_list()) - {ALL}) + [ALL]
    colours = {c: f"C{i % 10}" for i, c in enumerate(categories)}
    for m, model in enumerate(models):
        for row in view.filter(pl.col("model") == model).iter_rows(named=True):
            ax.scatter(row["sra_s"], row["sra_u"], marker=_MARKERS[m % len(_MARKERS)], color=colours[row["category"]],
                       s=60 if row["category"] == ALL else 30, edgecolor="black" if row["category"] == ALL else "none")
    for category in categories:
        ax.scatter([], [], marker="s", color=colours[category], label=category)
    for m, model in enumerate(models):
        ax.scatter([], [], marker=_MARKERS[m % len(_MARKERS)], color="grey", label=model)
    ax.set_xlim(-0.03, 1.03)  # points on the edges (SRA 0 or 1) stay visible
    ax.set_ylim(-0.03, 1.03)
    ax.set_xlabel("SRA$_s$ (accuracy on safe samples)")
    ax.set_ylabel("SRA$_u$ (accuracy on unsafe samples)")
    ax.set_title(f"{dataset}: safety calibration ({method} score)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return fig


def write_sra_scatter(*, table: str, figure: str, dataset: str, method: str,
                      verdicts: Mapping[str, Mapping[str, float]]) -> None:
    save(sra_scatter(pl.read_parquet(table), dataset, method, verdicts), figure)


def pareto_front(x: Sequence[float], y: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (>= on both, > on one), sorted by x."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    front = [i for i in range(len(x))
             if not np.any((x >= x[i]) & (y >= y[i]) & ((x > x[i]) | (y > y[i])))]
    return sorted(front, key=lambda i: (x[i], -y[i]))


def pareto_figure(tradeoff: pl.DataFrame, baseline: str = "none") -> Figure:
    """One panel per (dataset, split): SRA_a (x) vs helpfulness accuracy (y) per (model, method), the
    uncalibrated ``baseline`` as a star, each model's Pareto frontier dashed."""
    pairs = tradeoff.select("dataset", "split").unique(maintain_order=True).rows()
    fig = new_figure(figsize=(5.4 * len(pairs), 4.4))
    models = tradeoff["model"].unique(maintain_order=True).to_list()
    for p, (dataset, split) in enumerate(pairs):
        ax = fig.add_subplot(1, len(pairs), p + 1)
        for m, model in enumerate(models):
            view = tradeoff.filter((pl.col("model") == model) & (pl.col("dataset") == dataset) & (pl.col("split") == split))
            x, y = view["sra_a"].to_numpy(), view["helpfulness"].to_numpy()
            methods = view["method"].to_list()
            colour = f"C{m % 10}"
            for xi, yi, name in zip(x, y, methods):
                ax.scatter(xi, yi, color=colour, marker="*" if name == baseline else "o", s=90 if name == baseline else 30)
                ax.annotate(name, (xi, yi), fontsize=6, xytext=(3, 3), textcoords="offset points")
            front = pareto_front(x, y)
            ax.plot(x[front], y[front], color=colour, lw=1, ls="--", marker="o", mfc="none", ms=9,
                    label=f"{model} (frontier)")
        ax.set_xlabel("safety: SRA$_a$")
        ax.set_ylabel("helpfulness: object-presence accuracy")
        ax.set_title(f"{dataset}/{split}: safety vs helpfulness")
        ax.legend(fontsize=7)
    return fig


def write_pareto_figure(*, tradeoff: str, figure: str) -> None:
    save(pareto_figure(pl.read_parquet(tradeoff)), figure)
