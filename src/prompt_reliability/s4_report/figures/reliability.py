"""Reliability figures: diagrams of selected vs mean (one pair) and mean - selected deltas (all pairs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl
import seaborn as sns
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from prompt_reliability.s3_analysis.lockfile import read_lock
from prompt_reliability.s3_analysis.reliability import calibration_curves, method_deltas
from prompt_reliability.s4_report.figures import save_figure, subplots

DELTA_LABELS = {"ece": "ECE (lower better)", "nll": "NLL (lower better)", "auroc": "AUROC (higher better)", "auprc": "AUPRC (higher better)"}


def reliability_diagram(curves: pl.DataFrame, title: str = "") -> Figure:
    """Fraction unsafe against mean p per bin (non-empty bins), the diagonal, and each bin's count below."""
    methods = curves["method"].unique(maintain_order=True).to_list()
    colours = dict(zip(methods, sns.color_palette(n_colors=len(methods))))
    fig, (top, bottom) = subplots(2, 1, figsize=(4.6, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    top.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1, label="perfect calibration")
    sns.lineplot(data=curves.filter(pl.col("count") > 0).to_pandas(), x="mean_p", y="frac_unsafe", hue="method",
                 palette=colours, marker="o", sort=True, ax=top)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="fraction unsafe", title=title)
    top.legend(fontsize="small")
    width = (curves["upper"][0] - curves["lower"][0]) / (len(methods) + 1)
    for offset, method in enumerate(methods):
        rows = curves.filter(pl.col("method") == method)
        bottom.bar(rows["lower"].to_numpy() + width * (offset + 1), rows["count"].to_numpy(), width=width,
                   color=colours[method], label=method)
    bottom.set(xlabel="predicted unsafe probability", ylabel="samples per bin", yscale="symlog")
    fig.tight_layout()
    return fig


def deltas_figure(reliability: pl.DataFrame, challenger: str = "mean", baseline: str = "selected") -> Figure:
    """One panel per metric: challenger - baseline per pair, coloured by whether the challenger wins."""
    deltas = method_deltas(reliability, challenger, baseline).with_columns(
        pair=pl.concat_str("model", "dataset", "split", separator=" / "),
        outcome=pl.when(pl.col("better")).then(pl.lit(f"{challenger} better")).otherwise(pl.lit(f"{baseline} better or tied")),
    )
    n_pairs = deltas["pair"].n_unique()
    palette = dict(zip([f"{challenger} better", f"{baseline} better or tied"], sns.color_palette(n_colors=2)))
    fig, axes = subplots(1, len(DELTA_LABELS), figsize=(12, 1.4 + 0.32 * n_pairs), sharey=True)
    for ax, (metric, label) in zip(axes, DELTA_LABELS.items()):
        data = deltas.filter(pl.col("metric") == metric).to_pandas()
        sns.barplot(data=data, x="delta", y="pair", hue="outcome", palette=palette, dodge=False, ax=ax)
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set(title=label, xlabel=f"{challenger} - {baseline}", ylabel="")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    handles = [Rectangle((0, 0), 1, 1, color=c) for c in palette.values()]
    fig.legend(handles, list(palette), loc="upper center", ncol=2, frameon=False, bbox_to_anchor=(0.5, 1.02))
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return fig


def write_reliability_diagram(*, matrix: str, lock: str, figure: str, model: str, dataset: str, split: str,
                              analysis: Mapping[str, Any]) -> None:
    full = pl.read_parquet(matrix)
    curves = calibration_curves(full, split, read_lock(lock, full), analysis["ece_bins"], source=f"{matrix} with {lock}")
    save_figure(reliability_diagram(curves, f"{model} / {dataset} / {split}"), figure)


def write_deltas_figure(*, table: str, figure: str) -> None:
    save_figure(deltas_figure(pl.read_parquet(table)), figure)
