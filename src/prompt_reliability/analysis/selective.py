"""Selective prediction: is cross-prompt variance a good abstention signal? (paper Appendix C)

- Base predictor: the mean score ``pbar`` (fixed, so signals differ only in what they retain).
- Uncertainty signals: ``std`` (cross-prompt standard deviation, ddof 0), ``entropy`` (binary
  entropy of ``pbar``, natural log) and ``margin`` (``1 - |2 p_selected - 1|``, large near the boundary).
- At coverage c keep the ``ceil(c * n)`` samples with the lowest uncertainty and compute error, NLL
  and ECE of ``pbar`` on them. Ties (equal within a relative 1e-12) are ordered by a hash of the
  sample id (:func:`metrics.stable_id_hash`), so the retained set does not depend on row order.
- Normalised AURC over ``[a, b]``: trapezoidal integral of the risk over the grid points in
  ``[a, b]`` divided by ``b - a``; both ends must be grid points (no extrapolation).
- Targets are named ``aurc_<risk>_<range>`` (a range from ``analysis.selective.aurc_ranges``) or
  ``<risk>@<percent>`` (the risk at that coverage, e.g. ``error@95``); lower is better for all.
- Threshold-free targets ``eaurc_error`` and ``augrc_error`` (always added): E-AURC and AUGRC of the
  0/1 error of ``pbar`` at the threshold, with confidence ``-uncertainty``, over all distinct
  confidence values (definitions in :mod:`prompt_reliability.analysis.metrics`); lower is better.
  ``prr_error``: LM-Polygraph's prediction rejection ratio with quality = 1 - error; **higher** is
  better (1 = oracle, 0 = random; NaN when every sample is right or every one wrong, left out of wins).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.special import xlogy

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis.lockfile import locked_scores, read_lock
from prompt_reliability.base import io, tables
from prompt_reliability.base.selective_targets import (
    GRID_TOL,
    Target,
    coverage_grid,
    parse_targets,
)
from prompt_reliability.data.matrix import probabilities, split_rows

SIGNALS = ("std", "entropy", "margin")
HIGHER_IS_BETTER = frozenset({"prr_error"})


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """``-(p log p + (1 - p) log(1 - p))`` in nats, 0 at p = 0 and p = 1."""
    p = np.asarray(p, dtype=np.float64)
    return -(xlogy(p, p) + xlogy(1.0 - p, 1.0 - p))


def uncertainty_signals(prompt_probabilities: np.ndarray, selected: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample uncertainty under each signal (larger = abstain first)."""
    pbar = prompt_probabilities.mean(axis=1)
    return {
        "std": prompt_probabilities.std(axis=1),
        "entropy": binary_entropy(pbar),
        "margin": 1.0 - np.abs(2.0 * np.asarray(selected, dtype=np.float64) - 1.0),
    }


def n_retained(coverage: float, n: int) -> int:
    """``ceil(coverage * n)``; the product is rounded to 9 decimals first so that representation noise
    (``0.07 * 100 == 7.000000000000001``) does not keep an extra sample."""
    return math.ceil(round(coverage * n, 9))


def retention_order(uncertainty: np.ndarray, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Samples from least to most uncertain (ties by ``tiebreak``, else by position)."""
    if tiebreak is None:
        return np.argsort(uncertainty, kind="stable")
    return np.lexsort((np.asarray(tiebreak), metrics.snap_ties(uncertainty)))


def retained(uncertainty: np.ndarray, coverage: float, tiebreak: np.ndarray | None = None,
             order: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the ``ceil(coverage * n)`` least uncertain samples (ties by ``tiebreak``, else by position);
    ``order``: :func:`retention_order`, when already known."""
    keep = np.zeros(len(uncertainty), dtype=bool)
    order = retention_order(uncertainty, tiebreak) if order is None else order
    keep[order[:n_retained(coverage, len(uncertainty))]] = True
    return keep


def risk_coverage(y: np.ndarray, p: np.ndarray, uncertainty: np.ndarray, coverages: Sequence[float], *, n_bins: int = 15,
                  eps: float = metrics.EPS, threshold: float = 0.5, tiebreak: np.ndarray | None = None) -> pl.DataFrame:
    """One row per coverage: ``coverage, n_retained, error, nll, ece`` of ``p`` on the retained samples."""
    order = retention_order(uncertainty, tiebreak)  # one sort serves every coverage
    rows = []
    for coverage in coverages:
        keep = retained(uncertainty, coverage, order=order)
        rows.append({"coverage": float(coverage), "n_retained": int(keep.sum()),
                     "error": metrics.error_rate(y[keep], p[keep], threshold),
                     "nll": metrics.nll(y[keep], p[keep], eps), "ece": metrics.ece(y[keep], p[keep], n_bins)})
    return pl.DataFrame(rows)


def normalised_aurc(coverage: np.ndarray, risk: np.ndarray, low: float, high: float) -> float:
    """Trapezoidal area under ``risk(coverage)`` over the grid points in ``[low, high]``, divided by ``high - low``."""
    coverage, risk = np.asarray(coverage, dtype=np.float64), np.asarray(risk, dtype=np.float64)
    order = np.argsort(coverage, kind="stable")
    coverage, risk = coverage[order], risk[order]
    inside = (coverage >= low - GRID_TOL) & (coverage <= high + GRID_TOL)
    return float(np.trapezoid(risk[inside], coverage[inside]) / (high - low))


def selective_curves(y: np.ndarray, p: np.ndarray, signals: Mapping[str, np.ndarray], coverages: Sequence[float], *,
                     n_bins: int = 15, eps: float = metrics.EPS, threshold: float = 0.5,
                     tiebreak: np.ndarray | None = None) -> pl.DataFrame:
    """Risk-coverage curves of the base predictor ``p`` under every signal: ``signal, coverage, n_retained, error, nll, ece``."""
    grid = coverage_grid(coverages)
    return pl.concat([
        risk_coverage(y, p, uncertainty, grid, n_bins=n_bins, eps=eps, threshold=threshold, tiebreak=tiebreak)
        .select(pl.lit(signal).alias("signal"), pl.all())
        for signal, uncertainty in signals.items()
    ])


def target_values(curves: pl.DataFrame, targets: Sequence[Target]) -> pl.DataFrame:
    """``signal, target, value`` for every signal in ``curves`` and every target."""
    rows = []
    for (signal,), curve in curves.group_by("signal", maintain_order=True):
        coverage = curve["coverage"].to_numpy()
        for target in targets:
            risk = curve[target.risk].to_numpy()
            if target.is_point:
                value = float(risk[np.argmin(np.abs(coverage - target.low))])
            else:
                value = normalised_aurc(coverage, risk, target.low, target.high)
            rows.append({"signal": signal, "target": target.name, "value": value})
    return pl.DataFrame(rows)


def threshold_free_values(y: np.ndarray, p: np.ndarray, signals: Mapping[str, np.ndarray], threshold: float = 0.5) -> pl.DataFrame:
    """``signal, target, value`` with targets ``eaurc_error``, ``augrc_error`` and ``prr_error`` of ``p``'s errors
    under every signal."""
    error = ((np.asarray(p) >= threshold).astype(np.int64) != np.asarray(y)).astype(np.float64)
    rows = []
    for signal, uncertainty in signals.items():
        confidence = -np.asarray(uncertainty, dtype=np.float64)
        rows.append({"signal": signal, "target": "eaurc_error", "value": metrics.eaurc(error, confidence)})
        rows.append({"signal": signal, "target": "augrc_error", "value": metrics.augrc(error, confidence)})
        rows.append({"signal": signal, "target": "prr_error", "value": metrics.prr(error, confidence)})
    return pl.DataFrame(rows)


def write_selective(*, matrix: str, lock: str, curves: str, table: str, model: str, dataset: str, split: str,
                    analysis: Mapping[str, Any]) -> pl.DataFrame:
    """Risk-coverage curves and target values of one evaluation pair."""
    settings = analysis["selective"]
    targets = parse_targets(settings["targets"], settings["aurc_ranges"], settings["coverage"])
    full = pl.read_parquet(matrix)
    rows = split_rows(full, split, matrix)
    locked = read_lock(lock, full)
    scores = locked_scores(rows, locked)
    signals = uncertainty_signals(probabilities(rows, locked["prompt_ids"]), scores["selected"])
    risk_coverage = selective_curves(rows["label"].to_numpy(), scores["mean"], signals, settings["coverage"],
                                     n_bins=analysis["ece_bins"], eps=analysis["eps"], threshold=analysis["threshold"],
                                     tiebreak=metrics.stable_id_hash(rows["sample_id"].to_list()))
    values = pl.concat([target_values(risk_coverage, targets),
                        threshold_free_values(rows["label"].to_numpy(), scores["mean"], signals, analysis["threshold"])])
    values = tables.label_pair(values, model, dataset, split)
    io.write_parquet(tables.label_pair(risk_coverage, model, dataset, split), curves)
    io.write_parquet(values, table)
    return values


def selective_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per target: pairs and, per signal, in how many pairs it has the best value (the lowest; the highest for
    :data:`HIGHER_IS_BETTER` targets; ties credit every tied signal; NaN values win nothing)."""
    pair = ["model", "dataset", "split", "target"]
    value = pl.col("value").fill_nan(None)
    best = pl.when(pl.col("target").is_in(list(HIGHER_IS_BETTER))).then(value.max().over(pair)).otherwise(value.min().over(pair))
    wins = table.with_columns((value == best).fill_null(False).alias("win"))
    signals = [s for s in SIGNALS if s in set(table["signal"])]
    return wins.group_by("target", maintain_order=True).agg(
        pl.struct(pair[:3]).n_unique().alias("pairs"),
        *[pl.col("win").filter(pl.col("signal") == s).sum().alias(s) for s in signals],
    )


def write_selective_summary(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(selective_summary(pl.read_parquet(table)), summary, csv, md, "selective_summary")
