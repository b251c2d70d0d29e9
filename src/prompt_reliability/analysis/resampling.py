"""Bootstrap resamples as count matrices: one seeded stream of resample indices, drawn in chunks.

A resample is a count vector ``c`` (how often each sample was drawn); every statistic that is a
sum over samples is then ``c @ X`` for a fixed per-sample matrix ``X`` (analysis.bootstrap), and
the smooth ECE's grid sums are one sparse product (analysis.smooth_ece).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def resample_indices(n: int, n_resamples: int, seed: int, chunk_size: int) -> Iterator[np.ndarray]:
    """Chunks (rows = resamples) of ``default_rng(seed).integers(0, n, size=(n_resamples, n))``.

    One generator feeds every chunk, so the concatenated chunks are the same for any chunk size.
    """
    if n < 1:
        raise ValueError("cannot resample an empty evaluation pair")
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, chunk_size):
        yield rng.integers(0, n, size=(min(chunk_size, n_resamples - start), n), dtype=np.uint32)


def resample_counts(indices: np.ndarray) -> np.ndarray:
    """The (resamples x n) float count matrix of a chunk of resample indices."""
    rows, n = indices.shape
    flat = indices + (np.arange(rows, dtype=np.int64) * n)[:, None]
    return np.bincount(flat.ravel(), minlength=rows * n).reshape(rows, n).astype(np.float64)
