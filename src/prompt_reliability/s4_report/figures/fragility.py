"""Fragility figures: rates by cross-prompt spread decile (one pair) and D10 - D1 gaps (all pairs)."""

from __future__ import annotations

import polars as pl
import seaborn as sns
from matplotlib.figure import Figure

from prompt_reliability.s3_analysis.fragility import RATES, decile_gaps
from prompt_reliability.s4_report.figures import save_figure, subplots

RATE_LABELS = {"mistake_rate": "mistake rate", "disagreement_rate": "disagreement rate"}


def decile_figure(table: pl.DataFrame, title: str = "") -> Figure:
    """Mistake and disagreement rate against the decile's mean cross-prompt sd, one line per family view."""
    data = table.filter(pl.col("n") > 0).to_pandas()
    fig, axes = subplots(1, 2, figsize=(8, 3.4), sharex=True)
    for ax, rate in zip(axes, RATES):
        sns.lineplot(data=data, x="mean_sd", y=rate, hue="family", style="family", markers=True, dashes=False, ax=ax)
        ax.set(xlabel="mean cross-prompt sd of the decile", ylabel=RATE_LABELS[rate], ylim=(0, None))
    axes[0].get_legend().remove()
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), title="prompts", frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def gaps_figure(table: pl.DataFrame) -> Figure:
    """D10 - D1 gap of both rates per pair (rows) and family view (colour); right of zero = D10 worse."""
    gaps = decile_gaps(table).with_columns(pair=pl.concat_str("model", "dataset", "split", separator=" / "))
    data = gaps.unpivot(index=["pair", "family"], on=[f"{r}_gap" for r in RATES], variable_name="rate", value_name="gap")
    data = data.with_columns(pl.col("rate").str.strip_suffix("_gap").replace(RATE_LABELS)).to_pandas()
    n_pairs = gaps["pair"].n_unique()
    fig, axes = subplots(1, 2, figsize=(9, 1.2 + 0.35 * n_pairs), sharey=True)
    for ax, rate in zip(axes, RATE_LABELS.values()):
        sns.stripplot(data=data[data["rate"] == rate], x="gap", y="pair", hue="family", dodge=False, jitter=False, size=6, ax=ax)
        ax.axvline(0, color="0.3", linewidth=0.8)
        ax.set(xlabel=f"D10 - D1 {rate}", ylabel="")
    axes[0].get_legend().remove()
    sns.move_legend(axes[1], "upper left", bbox_to_anchor=(1.02, 1), title="prompts", frameon=False)
    fig.tight_layout()
    return fig


def write_decile_figure(*, table: str, figure: str) -> None:
    deciles = pl.read_parquet(table)
    first = deciles.row(0, named=True)
    save_figure(decile_figure(deciles, f"{first['model']} / {first['dataset']} / {first['split']}"), figure)


def write_gaps_figure(*, table: str, figure: str) -> None:
    save_figure(gaps_figure(pl.read_parquet(table)), figure)
