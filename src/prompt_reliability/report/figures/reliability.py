"""Reliability figures: diagrams of selected vs mean (one pair) and mean - selected deltas (all pairs)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import smooth_ece
from prompt_reliability.analysis.lockfile import locked_scores, read_lock
from prompt_reliability.analysis.reliability import calibration_curves, method_deltas
from prompt_reliability.data.matrix import split_rows
from prompt_reliability.report.figures import BAD, GOOD, PALETTE, pair_labels, save_figure, subplots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DELTA_LABELS = {"ece": "ECE (lower better)", "nll": "NLL (lower better)", "auroc": "AUROC (higher better)", "auprc": "AUPRC (higher better)"}
METHOD_LABELS = {"selected": "selected prompt (lock split)", "mean": "mean over prompts"}


def reliability_diagram(curves: pl.DataFrame, title: str = "",
                        smooth: Mapping[str, Mapping[str, Any]] | None = None) -> Figure:
    """Fraction unsafe against mean p per bin (non-empty bins), the diagonal, and each bin's count below;
    with ``smooth`` (method -> :func:`smooth_ece.smoothed_curve`), relplot's smoothed curve and its 95% band
    per method, the binned points drawn as markers only."""
    methods = curves["method"].unique(maintain_order=True).to_list()
    colours = dict(zip(methods, PALETTE))
    smooth = smooth or {}
    fig, (top, bottom) = subplots(2, 1, figsize=(4.8, 5.8), sharex=True, gridspec_kw={"height_ratios": [3, 1.2]})
    top.plot([0, 1], [0, 1], linestyle="--", color="0.4", linewidth=1, label="perfect calibration")
    for method in methods:
        rows = curves.filter((pl.col("method") == method) & (pl.col("count") > 0)).sort("mean_p")
        label = METHOD_LABELS.get(method, method)
        if method in smooth:
            curve = smooth[method]
            top.fill_between(curve["mesh"], curve["lower"], curve["upper"], color=colours[method], alpha=0.2, linewidth=0)
            top.plot(curve["mesh"], curve["mu"], color=colours[method], linewidth=1.8,
                     label=f"{label}, smECE {curve['smece']:.3f}")
            top.plot(rows["mean_p"], rows["frac_unsafe"], marker="o", markersize=3.5, linestyle="none",
                     color=colours[method], alpha=0.7)
        else:
            top.plot(rows["mean_p"], rows["frac_unsafe"], marker="o", color=colours[method], label=label)
    top.set(xlim=(0, 1), ylim=(0, 1), ylabel="observed fraction unsafe")
    top.set_title("Does the predicted probability match the observed rate?" + (f"\n{title}" if title else ""))
    if smooth:
        top.plot([], [], marker="o", markersize=3.5, linestyle="none", color="0.4", label=f"{curves.filter(pl.col('method') == methods[0]).height} equal-width bins")
        top.fill_between([], [], [], color="0.4", alpha=0.2, label="95% bootstrap band")
    top.legend(loc="upper left", fontsize="small")
    width = (curves["upper"][0] - curves["lower"][0]) / (len(methods) + 1)
    for offset, method in enumerate(methods):
        rows = curves.filter(pl.col("method") == method)
        bottom.bar(rows["lower"].to_numpy() + width * (offset + 1), rows["count"].to_numpy(), width=width,
                   color=colours[method], label=method)
    bottom.set(xlabel="predicted unsafe probability (bin)", ylabel="samples per bin", yscale="symlog")
    return fig


def deltas_figure(reliability: pl.DataFrame, challenger: str = "mean", baseline: str = "selected") -> Figure:
    """One panel per metric: challenger - baseline per pair, coloured by whether the challenger wins."""
    deltas = method_deltas(reliability, challenger, baseline)
    pairs = deltas.select("model", "dataset", "split").unique(maintain_order=True).rows()
    labels = pair_labels(pairs)
    position = {pair: len(pairs) - 1 - i for i, pair in enumerate(pairs)}  # first pair on top
    fig, axes = subplots(1, len(DELTA_LABELS), figsize=(13, 1.8 + 0.34 * len(pairs)), sharey=True)
    for ax, (metric, label) in zip(axes, DELTA_LABELS.items()):
        rows = deltas.filter(pl.col("metric") == metric)
        y = [position[r] for r in rows.select("model", "dataset", "split").rows()]
        colours = np.where(rows["better"].to_numpy(), GOOD, BAD)
        ax.barh(y, rows["delta"].to_numpy(), color=colours, height=0.7, zorder=3)
        ax.axvline(0, color="0.3", linewidth=0.8)
        wins = int(rows["better"].sum())
        ax.set(title=f"{label}\n{challenger} better in {wins}/{rows.height} pairs", xlabel=f"{challenger} − {baseline}")
        ax.set_yticks(range(len(pairs)), labels[::-1])
        ax.grid(axis="y", visible=False)
    from matplotlib.patches import Patch

    fig.legend([Patch(color=GOOD), Patch(color=BAD)], [f"{challenger} better", f"{baseline} better or tied"],
               loc="outside lower center", ncol=2)
    fig.suptitle(f"Does the {challenger} over prompts beat the {baseline} prompt on every evaluation pair?")
    return fig


def write_reliability_diagram(*, matrix: str, lock: str, figure: str, model: str, dataset: str, split: str,
                              analysis: Mapping[str, Any]) -> None:
    full = pl.read_parquet(matrix)
    lock_data = read_lock(lock, full)
    curves = calibration_curves(full, split, lock_data, analysis["ece_bins"], source=f"{matrix} with {lock}")
    rows = split_rows(full, split, matrix)
    scores = locked_scores(rows, lock_data)
    y = rows["label"].to_numpy()
    smooth = {method: smooth_ece.smoothed_curve(y, scores[method], seed=analysis["seed"])
              for method in curves["method"].unique(maintain_order=True)}
    save_figure(reliability_diagram(curves, f"{model} / {dataset} / {split}", smooth), figure)


def write_deltas_figure(*, table: str, figure: str) -> None:
    save_figure(deltas_figure(pl.read_parquet(table)), figure)
