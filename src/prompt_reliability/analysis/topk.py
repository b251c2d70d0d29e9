"""Top-k sweep (the paper's Figure 4): the mean ensemble of the first k prompts of the lock's
``prompt_order`` (lock-split NLL order), for k = 1..K, scored by NLL and ECE on an evaluation pair."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis.lockfile import read_lock
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import probabilities, split_rows

PAIR = ("model", "dataset", "split")


def topk_scores(p: np.ndarray) -> np.ndarray:
    """n x K: column k-1 is the mean of the first k columns of ``p`` (columns already in order)."""
    p = np.asarray(p, dtype=np.float64)
    return np.cumsum(p, axis=1) / np.arange(1, p.shape[1] + 1)


def topk_sweep(y: np.ndarray, p: np.ndarray, prompt_order: Sequence[str], n_bins: int = 15, eps: float = metrics.EPS) -> pl.DataFrame:
    """One row per k: ``k, prompt_id`` (the prompt added at k), ``nll, ece``; ``p`` columns in ``prompt_order``."""
    scores = topk_scores(p)
    return pl.DataFrame({
        "k": np.arange(1, len(prompt_order) + 1),
        "prompt_id": list(prompt_order),
        "nll": [metrics.nll(y, scores[:, j], eps) for j in range(scores.shape[1])],
        "ece": [metrics.ece(y, scores[:, j], n_bins) for j in range(scores.shape[1])],
    })


def write_topk(*, matrix: str, lock: str, table: str, model: str, dataset: str, split: str,
               analysis: Mapping[str, Any]) -> pl.DataFrame:
    """The sweep of one evaluation pair as ``model, dataset, split, k, prompt_id, nll, ece``."""
    full = pl.read_parquet(matrix)
    rows = split_rows(full, split, matrix)
    order = read_lock(lock, full)["prompt_order"]
    sweep = topk_sweep(rows["label"].to_numpy(), probabilities(rows, order), order, analysis["ece_bins"], analysis["eps"])
    sweep = tables.label_pair(sweep, model, dataset, split)
    io.write_parquet(sweep, table)
    return sweep


def topk_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per k: the mean NLL and ECE across pairs, and in how many pairs k is the best k by NLL."""
    best = table.filter(pl.col("nll") == pl.col("nll").min().over(PAIR)).group_by("k").len(name="best_nll_pairs")
    return (
        table.group_by("k")
        .agg(pl.len().alias("n_pairs"), pl.col("nll").mean().alias("mean_nll"), pl.col("ece").mean().alias("mean_ece"))
        .join(best, on="k", how="left")
        .with_columns(pl.col("best_nll_pairs").fill_null(0))
        .sort("k")
    )


def write_topk_summary(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(topk_summary(pl.read_parquet(table)), summary, csv, md, "topk_summary")
