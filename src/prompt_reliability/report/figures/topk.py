"""Figure 4: NLL and ECE of the top-k mean ensemble against k (prompts in lock-split NLL order)."""

from __future__ import annotations

import os

import polars as pl

from prompt_reliability.analysis.topk import PAIR, topk_summary
from prompt_reliability.report.figures import PALETTE, save_figure, subplots

METRIC_LABELS = {"nll": "NLL", "ece": "ECE"}


def _axes(n_prompts: int):
    fig, axes = subplots(1, 2, figsize=(8.0, 3.2), sharex=True)
    for ax, label in zip(axes, METRIC_LABELS.values()):
        ax.set_xlabel("k (top-k prompts by lock-split NLL)")
        ax.set_ylabel(label)
        ax.set_xticks(range(1, n_prompts + 1))
    return fig, axes


def plot_topk_pair(table: pl.DataFrame, path: str | os.PathLike, title: str = "") -> None:
    """One pair's sweep: NLL and ECE against k; the best k by NLL is marked."""
    table = table.sort("k")
    fig, axes = _axes(table.height)
    best = table.row(int(table["nll"].arg_min()), named=True)
    for ax, metric in zip(axes, METRIC_LABELS):
        ax.plot(table["k"], table[metric], marker="o", color=PALETTE[0])
        ax.axvline(best["k"], color="grey", linestyle=":", linewidth=1)
    axes[0].set_title(f"lowest NLL at k = {best['k']}", fontsize=9)
    fig.suptitle(title or "Top-k mean ensemble")
    save_figure(fig, path)


def plot_topk_pairs(table: pl.DataFrame, path: str | os.PathLike) -> None:
    save_figure(topk_pairs_figure(table), path)


def topk_pairs_figure(table: pl.DataFrame):
    """Every pair's sweep (thin coloured lines) and the mean across pairs (thick black line), with a legend
    of both beside the axes."""
    pairs = table.select(PAIR).unique(maintain_order=True).rows()
    mean = topk_summary(table)
    fig, axes = _axes(int(table["k"].max()))
    colours = [PALETTE[i % len(PALETTE)] for i in range(len(pairs))]
    for ax, metric in zip(axes, METRIC_LABELS):
        for colour, pair in zip(colours, pairs):
            rows = table.filter(*(pl.col(c) == v for c, v in zip(PAIR, pair))).sort("k")
            ax.plot(rows["k"], rows[metric], color=colour, linewidth=1, alpha=0.8, label=" / ".join(map(str, pair)))
        ax.plot(mean["k"], mean[f"mean_{metric}"], color="black", linewidth=2.5, marker="o", markersize=3, label="mean across pairs")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.suptitle(f"Top-k mean ensemble: {len(pairs)} evaluation pair{'s' if len(pairs) != 1 else ''} and their mean")
    return fig


def write_topk_pair_figure(*, table: str, figure: str) -> None:
    """Figure of one pair from its ``topk.parquet`` piece."""
    sweep = pl.read_parquet(table)
    plot_topk_pair(sweep, figure, title="Top-k mean ensemble: " + " / ".join(str(sweep[c][0]) for c in PAIR))


def write_topk_pairs_figure(*, table: str, figure: str) -> None:
    """Figure of every pair and their mean from the assembled top-k table."""
    plot_topk_pairs(pl.read_parquet(table), figure)
