"""Operating points: thresholds fixed on the lock split, evaluated on every evaluation split.

Definitions (issue #12, exact):

- candidate thresholds are the distinct lock-split scores plus ``+inf``; a sample is flagged when
  ``score >= t`` (``+inf`` flags nothing);
- a recall target ``r`` picks the **largest** candidate whose lock-split recall (share of unsafe
  samples flagged) is ``>= r``;
- an FPR target ``f`` picks the **smallest** candidate whose lock-split FPR (share of safe samples
  flagged) is ``<= f``;
- on an evaluation split, recall and FPR are measured at that threshold; at unsafe prevalence ``pi``
  (``native`` = the split's own), ``precision = pi recall / (pi recall + (1 - pi) fpr)`` (null when
  nothing is flagged) and ``flag_rate = pi recall + (1 - pi) fpr``.

A target that no candidate reaches (the lock split lacks the class the target counts) gives a row
with a null threshold and null metrics, and a warning, never a silently missing row.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis.lockfile import locked_scores, read_lock
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import split_rows

log = logging.getLogger("prompt_reliability")

NATIVE = "native"
SCORES = ("mean", "selected")
POINT, GUARANTEED = "point", "guaranteed"
COLUMNS = ("model", "dataset", "split", "score", "target", "target_value", "kind", "confidence", "threshold", "recall",
           "fpr", "precision", "flag_rate", "prevalence")


def candidates(scores: np.ndarray) -> np.ndarray:
    """Distinct lock-split scores, ascending, then ``+inf``."""
    return np.append(np.unique(np.asarray(scores, dtype=float)), np.inf)


def flagged_share(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """For each threshold ``t``, the share of ``scores`` with ``score >= t`` (nan when ``scores`` is empty)."""
    scores = np.sort(np.asarray(scores, dtype=float))
    if not len(scores):
        return np.full(len(thresholds), np.nan)
    return (len(scores) - np.searchsorted(scores, thresholds, side="left")) / len(scores)


def recall_threshold(y: np.ndarray, scores: np.ndarray, target: float) -> float | None:
    """Largest candidate whose recall on (``y``, ``scores``) is ``>= target``; None when none is."""
    y, scores = np.asarray(y), np.asarray(scores, dtype=float)
    cand = candidates(scores)
    recall = flagged_share(scores[y == 1], cand)
    ok = np.flatnonzero(recall >= target)  # nan (no unsafe samples) compares False
    return float(cand[ok[-1]]) if len(ok) else None


def fpr_threshold(y: np.ndarray, scores: np.ndarray, target: float) -> float | None:
    """Smallest candidate whose FPR on (``y``, ``scores``) is ``<= target``; None when none is."""
    y, scores = np.asarray(y), np.asarray(scores, dtype=float)
    cand = candidates(scores)
    fpr = flagged_share(scores[y == 0], cand)
    ok = np.flatnonzero(fpr <= target)
    return float(cand[ok[0]]) if len(ok) else None


def _binomial_cdf(k: np.ndarray, n: int, p: float) -> np.ndarray:
    from scipy.stats import binom

    return binom.cdf(k, n, p)


def _guaranteed_threshold(y: np.ndarray, scores: np.ndarray, target: float, delta: float, *,
                          recall: bool) -> float | None:
    """Learn-then-Test by fixed-sequence testing, for a recall (``recall=True``) or an FPR target.

    The candidates are walked from the one surest to meet the target (the lowest for recall, +inf for FPR); a
    candidate passes when the binomial tail of its errors (unsafe samples missed, or safe samples flagged) under
    an error rate of ``1 - target`` (recall) or ``target`` (FPR) is ``<= delta``; the walk stops before the first
    failure and returns the last candidate passed. None when the counted class is absent, the first candidate
    fails, or the last passed is +inf (nothing flagged is no operating point)."""
    y, scores = np.asarray(y), np.asarray(scores, dtype=float)
    counted = np.sort(scores[y == (1 if recall else 0)])
    if not len(counted):
        return None
    # recall: ascending, without +inf (it flags nothing and never guarantees a recall > 0); FPR: descending from +inf
    ordered = candidates(scores)[:-1] if recall else candidates(scores)[::-1]
    below = np.searchsorted(counted, ordered, side="left")  # counted scores below each candidate
    errors, error_rate = (below, 1.0 - target) if recall else (len(counted) - below, target)
    failed = np.flatnonzero(~(_binomial_cdf(errors, len(counted), error_rate) <= delta))
    last = (failed[0] if len(failed) else len(ordered)) - 1
    return float(ordered[last]) if last >= 0 and np.isfinite(ordered[last]) else None


def guaranteed_recall_threshold(y: np.ndarray, scores: np.ndarray, target: float, delta: float) -> float | None:
    """Highest candidate whose recall is >= ``target`` with probability >= 1 - ``delta``
    (:func:`_guaranteed_threshold`); None when the lock split's unsafe samples are too few for the guarantee."""
    return _guaranteed_threshold(y, scores, target, delta, recall=True)


def guaranteed_fpr_threshold(y: np.ndarray, scores: np.ndarray, target: float, delta: float) -> float | None:
    """Lowest candidate whose FPR is <= ``target`` with probability >= 1 - ``delta``
    (:func:`_guaranteed_threshold`); None when the lock split's safe samples are too few for the guarantee."""
    return _guaranteed_threshold(y, scores, target, delta, recall=False)


def rates(y: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float | None, float | None]:
    """``(recall, fpr)`` of flagging ``score >= threshold``; None for a class the samples lack."""
    y, scores = np.asarray(y), np.asarray(scores, dtype=float)
    flagged = scores >= threshold
    recall = float(flagged[y == 1].mean()) if np.any(y == 1) else None
    fpr = float(flagged[y == 0].mean()) if np.any(y == 0) else None
    return recall, fpr


def at_prevalence(recall: float | None, fpr: float | None, prevalence: float) -> tuple[float | None, float | None]:
    """``(precision, flag_rate)`` at unsafe prevalence ``prevalence``; precision None when nothing is flagged."""
    if recall is None or fpr is None:
        return None, None
    flag_rate = prevalence * recall + (1.0 - prevalence) * fpr
    if flag_rate <= 0.0:
        return None, 0.0
    return prevalence * recall / flag_rate, flag_rate


def prevalence_label(prevalence: str | float) -> str:
    return NATIVE if prevalence == NATIVE else f"{float(prevalence):g}"


def operating_points(lock_y: np.ndarray, lock_scores: Mapping[str, np.ndarray], y: np.ndarray,
                     scores: Mapping[str, np.ndarray], recall_targets: Sequence[float], fpr_targets: Sequence[float],
                     prevalences: Sequence[str | float] = (NATIVE,), delta: float = 0.05) -> pl.DataFrame:
    """One row per (score, target, kind, prevalence): lock-split threshold (point estimate, and guaranteed with
    probability ``1 - delta``), evaluation recall/FPR/precision/flag rate."""
    native = float(np.mean(y)) if len(y) else float("nan")
    rows = []
    for name, lock_s in lock_scores.items():
        targets = [("recall", r, POINT, recall_threshold(lock_y, lock_s, r)) for r in recall_targets]
        targets += [("recall", r, GUARANTEED, guaranteed_recall_threshold(lock_y, lock_s, r, delta))
                    for r in recall_targets]
        targets += [("fpr", f, POINT, fpr_threshold(lock_y, lock_s, f)) for f in fpr_targets]
        targets += [("fpr", f, GUARANTEED, guaranteed_fpr_threshold(lock_y, lock_s, f, delta)) for f in fpr_targets]
        for target, value, kind, threshold in targets:
            if threshold is None:
                why = ("the lock split lacks the class it counts" if kind == POINT else
                       f"the lock split has too few samples of the class it counts for a guarantee at delta = {delta:g}")
                log.warning("operating point %s %s=%g (%s): no lock-split threshold reaches it (%s); row left empty",
                            name, target, value, kind, why)
                recall = fpr = None
            else:
                recall, fpr = rates(y, scores[name], threshold)
            for prevalence in prevalences:
                pi = native if prevalence == NATIVE else float(prevalence)
                precision, flag_rate = at_prevalence(recall, fpr, pi)
                rows.append({"score": name, "target": target, "target_value": float(value), "kind": kind,
                             "confidence": 1.0 - delta if kind == GUARANTEED else None, "threshold": threshold,
                             "recall": recall, "fpr": fpr, "precision": precision, "flag_rate": flag_rate,
                             "prevalence": prevalence_label(prevalence)})
    schema = {"score": pl.String, "target": pl.String, "target_value": pl.Float64, "kind": pl.String,
              "confidence": pl.Float64, "threshold": pl.Float64, "recall": pl.Float64, "fpr": pl.Float64,
              "precision": pl.Float64, "flag_rate": pl.Float64, "prevalence": pl.String}
    order = {"recall": 0, "fpr": 1}
    return pl.DataFrame(rows, schema=schema).sort(
        pl.col("score").replace_strict({s: k for k, s in enumerate(lock_scores)}, return_dtype=pl.Int64),
        pl.col("target").replace_strict(order, return_dtype=pl.Int64), maintain_order=True)


def write_operating_points(*, matrix: str, lock_matrix: str, lock: str, table: str, model: str, dataset: str,
                           split: str, analysis: Mapping[str, Any],
                           prevalences: Sequence[str | float] = (NATIVE,)) -> pl.DataFrame:
    """Thresholds of the mean and the selected prompt fixed on the lock split, evaluated on (dataset, split)."""
    full = pl.read_parquet(matrix)
    locked = read_lock(lock, full)
    lock_full = full if lock_matrix == matrix else pl.read_parquet(lock_matrix)
    lock_rows = split_rows(lock_full, locked["lock"]["split"], lock_matrix)
    rows = split_rows(full, split, matrix)
    lock_all, eval_all = locked_scores(lock_rows, locked), locked_scores(rows, locked)
    settings = analysis["operating_points"]
    frame = operating_points(
        lock_rows["label"].to_numpy(), {s: lock_all[s] for s in SCORES}, rows["label"].to_numpy(),
        {s: eval_all[s] for s in SCORES}, settings["recall"], settings["fpr"], prevalences, settings["delta"])
    frame = tables.label_pair(frame, model, dataset, split)
    io.write_parquet(frame, table)
    return frame
