"""Risk-coverage figures of the selective-prediction analysis: one row per coverage range, one column per risk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import polars as pl

from prompt_reliability.analysis.selective import SIGNALS
from prompt_reliability.base.selective_targets import GRID_TOL, RISKS
from prompt_reliability.report.figures import save_figure, subplots

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RISK_LABELS = {"error": "error", "nll": "NLL", "ece": "ECE"}
SIGNAL_LABELS = {"std": "std (cross-prompt)", "entropy": "entropy (mean)", "margin": "margin (selected)"}


def risk_coverage_figure(curves: pl.DataFrame, ranges: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Retained risk of the mean score against coverage, one line per uncertainty signal."""
    fig, axes = subplots(len(ranges), len(RISKS), figsize=(3.4 * len(RISKS), 2.6 * len(ranges) + 0.6), squeeze=False)
    signals = [s for s in SIGNALS if s in set(curves["signal"])]
    for row, (name, (low, high)) in enumerate(ranges.items()):
        view = curves.filter(pl.col("coverage").is_between(low - GRID_TOL, high + GRID_TOL))
        for col, risk in enumerate(RISKS):
            ax = axes[row, col]
            for signal in signals:
                curve = view.filter(pl.col("signal") == signal)
                ax.plot(curve["coverage"], curve[risk], marker="o", markersize=2.5, label=SIGNAL_LABELS.get(signal, signal))
            ax.set_xlim(low, high)
            ax.set_xlabel("coverage (share of samples kept)")
            ax.set_ylabel(f"{RISK_LABELS[risk]} of kept samples")
            ax.set_title(f"{RISK_LABELS[risk]}, coverage {low:g}–{high:g} ({name})")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, title="abstain first on the highest", loc="outside lower center", ncol=len(signals))
    fig.suptitle("Which uncertainty signal lowers the risk most when the model may abstain?" + (f"\n{title}" if title else ""))
    return fig


def write_risk_coverage_figure(*, curves: str, figure: str, model: str, dataset: str, split: str,
                               aurc_ranges: Mapping[str, Sequence[float]]) -> None:
    save_figure(risk_coverage_figure(pl.read_parquet(curves), aurc_ranges, f"{model} / {dataset} / {split}"), figure)
