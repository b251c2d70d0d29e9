"""Fragility figures: rates by cross-prompt spread decile (one pair) and D10 - D1 gaps (all pairs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from prompt_reliability.analysis.fragility import RATES, decile_gaps
from prompt_reliability.report.figures import PALETTE, pair_labels, save_figure, subplots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RATE_LABELS = {"mistake_rate": "mistake rate", "disagreement_rate": "disagreement rate"}
MARKERS = "osD^v<>"


def decile_figure(table: pl.DataFrame, title: str = "") -> Figure:
    """Mistake and disagreement rate against the decile's mean cross-prompt sd, one line per family view."""
    data = table.filter(pl.col("n") > 0)
    families = data["family"].unique(maintain_order=True).to_list()
    fig, axes = subplots(1, 2, figsize=(8.4, 3.4), sharex=True)
    for ax, rate in zip(axes, RATES):
        for k, family in enumerate(families):
            rows = data.filter(pl.col("family") == family).sort("mean_sd")
            ax.plot(rows["mean_sd"], rows[rate], marker=MARKERS[k % len(MARKERS)], color=PALETTE[k % len(PALETTE)],
                    label="all prompts" if family == "all" else f"family {family}")
        ax.set(xlabel="mean cross-prompt sd of p (decile)", ylabel=f"{RATE_LABELS[rate]} (share of samples)", ylim=(0, None))
    axes[1].legend(title="prompts", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Are samples whose score varies most across prompts more often wrong and disputed?"
                 + (f"\n{title}" if title else ""))
    return fig


def gaps_figure(table: pl.DataFrame) -> Figure:
    """D10 - D1 gap of both rates per pair (rows) and family view (markers); right of zero = D10 worse."""
    gaps = decile_gaps(table)
    pairs = gaps.select("model", "dataset", "split").unique(maintain_order=True).rows()
    labels = pair_labels(pairs)
    position = {pair: len(pairs) - 1 - i for i, pair in enumerate(pairs)}  # first pair on top
    families = gaps["family"].unique(maintain_order=True).to_list()
    fig, axes = subplots(1, 2, figsize=(10, 1.6 + 0.36 * len(pairs)), sharey=True)
    offsets = np.linspace(-0.24, 0.24, len(families)) if len(families) > 1 else [0.0]
    for ax, rate in zip(axes, RATES):
        for k, family in enumerate(families):
            rows = gaps.filter(pl.col("family") == family)
            y = [position[r] + offsets[k] for r in rows.select("model", "dataset", "split").rows()]
            ax.scatter(rows[f"{rate}_gap"], y, s=24, marker=MARKERS[k % len(MARKERS)], color=PALETTE[k % len(PALETTE)],
                       label="all prompts" if family == "all" else f"family {family}", zorder=3)
        ax.axvline(0, color="0.3", linewidth=0.8)
        worse = int((gaps.filter(pl.col("family") == "all")[f"{rate}_gap"] > 0).sum())
        ax.set(xlabel=f"D10 − D1 {RATE_LABELS[rate]}", title=f"{RATE_LABELS[rate]}\nD10 worse in {worse}/{len(pairs)} pairs (all prompts)")
        ax.set_yticks(range(len(pairs)), labels[::-1])
        ax.grid(axis="y", visible=False)
        ax.set_ylim(-0.6, len(pairs) - 0.4)
    axes[1].legend(title="prompts", loc="upper left", bbox_to_anchor=(1.02, 1))
    fig.suptitle("Is the decile with the largest cross-prompt spread (D10) worse than the most stable (D1)?  (> 0: D10 worse)")
    return fig


def write_decile_figure(*, table: str, figure: str) -> None:
    deciles = pl.read_parquet(table)
    first = deciles.row(0, named=True)
    save_figure(decile_figure(deciles, f"{first['model']} / {first['dataset']} / {first['split']}"), figure)


def write_gaps_figure(*, table: str, figure: str) -> None:
    save_figure(gaps_figure(pl.read_parquet(table)), figure)
