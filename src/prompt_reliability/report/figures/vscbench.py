"""VSCBench at its own scale (matplotlib object API only: jobs run in threads, no pyplot state).

- :func:`sra_scatter`: the paper's overview, one panel per subset (image-centric; text-centric pooled,
  QueryRelevant, FigStep; the text-only baseline), SRA_s (x) against SRA_u (y) of every model
  uncalibrated, open-weight and proprietary models told apart, the verdict regions shaded.
- :func:`category_view`: per model x image-centric category, SRA_s and SRA_u as two heat maps.
- :func:`pareto_view`: per open-weight model, SRA_a (x) against helpfulness (y) of every method, the IAR
  sweep coloured by layer and sized by strength, the model's Pareto front drawn.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from prompt_reliability.analysis.safety_calibration import ALL
from prompt_reliability.report.figures import new_figure
from prompt_reliability.report.figures.safety_calibration import pareto_front, save

if TYPE_CHECKING:
    from matplotlib.figure import Figure

PANELS = (("image_centric", "image", "image-centric"), ("text_centric", ALL, "text-centric (QueryRelevant + FigStep)"),
          ("text_centric", "QueryRelevant", "text-centric: QueryRelevant"), ("text_centric", "FigStep", "text-centric: FigStep"),
          ("text_centric", "text-only", "the same queries as text alone"))
ACCESS_STYLE = {"open": ("tab:blue", "o", "open-weight"), "proprietary": ("tab:red", "s", "proprietary")}


def sra_scatter(sra: pl.DataFrame, thresholds: Mapping[str, Mapping[str, float]]) -> Figure:
    from matplotlib.patches import Rectangle

    view = sra.filter((pl.col("method") == "none") & (pl.col("category") == ALL))
    fig = new_figure(figsize=(4.0 * len(PANELS), 4.3), layout="constrained")
    over, under = thresholds["over_safe"], thresholds["under_safe"]
    for p, (subset, kind, title) in enumerate(PANELS):
        ax = fig.add_subplot(1, len(PANELS), p + 1)
        ax.add_patch(Rectangle((0, over["sra_u_above"]), over["sra_s_below"], 1 - over["sra_u_above"], color="tab:orange",
                               alpha=0.15, lw=0))
        ax.add_patch(Rectangle((under["sra_s_above"], 0), 1 - under["sra_s_above"], under["sra_u_below"], color="tab:red",
                               alpha=0.15, lw=0))
        ax.text(0.02, 0.985, "over-safe", va="top", fontsize=7, color="tab:orange")
        ax.text(0.98, 0.015, "under-safe", ha="right", va="bottom", fontsize=7, color="tab:red")
        ax.plot([0, 1], [0, 1], ls=":", color="grey", lw=0.8)  # SRA_s = SRA_u: no lean
        panel = view.filter((pl.col("subset") == subset) & (pl.col("image_kind") == kind))
        for row in panel.iter_rows(named=True):
            colour, marker, _ = ACCESS_STYLE[row["access"]]
            ax.scatter(row["sra_s"], row["sra_u"], color=colour, marker=marker, s=36, edgecolor="black", lw=0.4)
            ax.annotate(row["model"], (row["sra_s"], row["sra_u"]), fontsize=5.5, xytext=(3, 2), textcoords="offset points")
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("SRA$_s$ (safe queries answered)", fontsize=8)
        if p == 0:
            ax.set_ylabel("SRA$_u$ (unsafe queries refused or warned)")
        ax.set_title(title, fontsize=9)
    for colour, marker, label in ACCESS_STYLE.values():
        fig.axes[0].scatter([], [], color=colour, marker=marker, label=label)
    fig.axes[0].legend(fontsize=7, loc="lower left")
    fig.suptitle("VSCBench (simulated): uncalibrated models; below the diagonal = leaning under-safe", fontsize=10)
    return fig


def category_view(sra: pl.DataFrame) -> Figure:
    view = sra.filter((pl.col("subset") == "image_centric") & (pl.col("method") == "none") & (pl.col("category") != ALL))
    models = view.sort("access", "model")["model"].unique(maintain_order=True).to_list()
    categories = sorted(view["category"].unique().to_list())
    fig = new_figure(figsize=(11, 0.42 * len(models) + 1.6), layout="constrained")
    for p, metric in enumerate(("sra_s", "sra_u")):
        grid = np.full((len(models), len(categories)), np.nan)
        for row in view.iter_rows(named=True):
            grid[models.index(row["model"]), categories.index(row["category"])] = row[metric]
        ax = fig.add_subplot(1, 2, p + 1)
        ax.grid(False)
        image = ax.imshow(grid, vmin=0, vmax=1, cmap="RdYlGn", aspect="auto")
        for i in range(len(models)):
            for j in range(len(categories)):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=6.5)
        ax.set_xticks(range(len(categories)), categories, rotation=30, ha="right", fontsize=7)
        ax.set_yticks(range(len(models)), models if p == 0 else [""] * len(models), fontsize=7)
        ax.set_title(f"{'SRA$_s$' if metric == 'sra_s' else 'SRA$_u$'} per image-centric category", fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04)
    return fig


def pareto_view(tradeoff: pl.DataFrame) -> Figure:
    """One panel per open-weight model (the IAR sweep needs activations)."""
    models = tradeoff.filter(pl.col("method").str.starts_with("iar-"))["model"].unique(maintain_order=True).to_list()
    models = models or tradeoff["model"].unique(maintain_order=True).to_list()
    columns = min(4, len(models))
    rows = int(np.ceil(len(models) / columns))
    fig = new_figure(figsize=(3.8 * columns, 3.7 * rows), layout="constrained")
    layers = sorted({int(m.split("-")[1][1:]) for m in tradeoff["method"] if m.startswith("iar-")})
    layer_colour = {layer: f"C{i}" for i, layer in enumerate(layers)}
    for p, model in enumerate(models):
        ax = fig.add_subplot(rows, columns, p + 1)
        view = tradeoff.filter(pl.col("model") == model)
        x, y = view["sra_a"].to_numpy(), view["helpfulness"].to_numpy()
        for xi, yi, method in zip(x, y, view["method"]):
            if method.startswith("iar-"):
                layer, strength = method.removeprefix("iar-L").split("-s")
                ax.scatter(xi, yi, color=layer_colour[int(layer)], s=10 + 14 * float(strength), alpha=0.85, lw=0)
            else:
                ax.scatter(xi, yi, color="black", marker="*" if method == "none" else "^", s=50 if method == "none" else 22)
                ax.annotate(method, (xi, yi), fontsize=5.5, xytext=(3, 2), textcoords="offset points")
        front = pareto_front(x, y)
        ax.plot(x[front], y[front], color="grey", lw=0.9, ls="--", zorder=0)
        ax.set_title(model, fontsize=9)
        ax.set_xlabel("safety: image-centric SRA$_a$", fontsize=8)
        ax.set_ylabel("helpfulness (POPE, ScienceQA mean)", fontsize=8)
        ax.tick_params(labelsize=7)
    for layer, colour in layer_colour.items():
        fig.axes[0].scatter([], [], color=colour, label=f"IAR layer {layer} (size = strength)")
    fig.axes[0].legend(fontsize=6, loc="lower left")
    fig.suptitle("Safety vs helpfulness per method; dashed: the model's Pareto front", fontsize=10)
    return fig


def write_figures(*, sra: str, tradeoff: str, scatter: str, categories: str, pareto: str,
                  verdicts: Mapping[str, Mapping[str, float]]) -> None:
    """Rule ``vscbench_figures``."""
    sra_frame = pl.read_parquet(sra)
    save(sra_scatter(sra_frame, verdicts), scatter)
    save(category_view(sra_frame), categories)
    save(pareto_view(pl.read_parquet(tradeoff)), pareto)
