"""Slow, obviously-correct references for the vectorised bootstrap (used by the tests and the benchmark).

One resample at a time, one bin at a time, written from the issue's definitions with weighted means,
sharing nothing with the kernel but the resample indices.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def weighted_nll(y: np.ndarray, p: np.ndarray, w: np.ndarray, eps: float = 1e-12) -> float:
    p = np.clip(p, eps, 1.0 - eps)
    return float(np.sum(w * -(y * np.log(p) + (1 - y) * np.log(1 - p))) / np.sum(w))


def weighted_ece(y: np.ndarray, p: np.ndarray, w: np.ndarray, n_bins: int = 15) -> float:
    """``sum_b W_b / W * |mean_w(y in b) - mean_w(p in b)|`` with bin ``min(floor(p * M), M - 1)``."""
    total = np.sum(w)
    value = 0.0
    bins = np.minimum(np.floor(p * n_bins).astype(int), n_bins - 1)
    for b in range(n_bins):
        members = bins == b
        if members.any():
            wb = w[members]
            value += np.sum(wb) / total * abs(np.average(y[members], weights=wb) - np.average(p[members], weights=wb))
    return float(value)


def brute_force_metrics(y: np.ndarray, scores: np.ndarray, weights: np.ndarray, index_chunks: Iterable[np.ndarray],
                        n_bins: int = 15, eps: float = 1e-12) -> np.ndarray:
    """(B x P x S x 2) [NLL, ECE] of every score under every weighting on every resample, by loops."""
    y = np.asarray(y, dtype=np.float64)
    out = []
    for chunk in index_chunks:
        for idx in chunk:
            idx = idx.astype(np.int64)
            out.append([[[weighted_nll(y[idx], p[idx], w[idx], eps), weighted_ece(y[idx], p[idx], w[idx], n_bins)]
                         for p in scores] for w in weights])
    return np.array(out)


def boschloo_below(k: int, n: int, paper_k: int, paper_n: int, grid: int = 4001) -> float:
    """One-sided Boschloo p-value from its definition: the statistic is Fisher's one-sided p-value
    P(X <= x1 | margins) of the table (this run x1 of n, the paper x2 of N); the p-value is the
    supremum over the common success rate pi of P(statistic <= observed), on a fine grid of pi."""
    from math import comb

    def fisher_less(x1: int, x2: int) -> float:
        total = x1 + x2
        denominator = comb(n + paper_n, total)
        return sum(comb(n, i) * comb(paper_n, total - i) for i in range(0, x1 + 1)
                   if 0 <= total - i <= paper_n) / denominator

    observed = fisher_less(k, paper_k)
    extreme = [(x1, x2) for x1 in range(n + 1) for x2 in range(paper_n + 1)
               if fisher_less(x1, x2) <= observed * (1 + 1e-9)]
    best = 0.0
    for pi in np.linspace(0.0, 1.0, grid):
        mass = sum(comb(n, x1) * pi ** x1 * (1 - pi) ** (n - x1) * comb(paper_n, x2) * pi ** x2 * (1 - pi) ** (paper_n - x2)
                   for x1, x2 in extreme)
        best = max(best, mass)
    return float(best)
