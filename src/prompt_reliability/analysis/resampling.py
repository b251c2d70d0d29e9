"""Bootstrap resamples as count matrices: one seeded stream of resample indices, drawn in chunks.

A resample is a count vector ``c`` (how often each unit was drawn); every statistic that is a
sum over samples is then ``c @ X`` for a fixed per-unit matrix ``X`` (analysis.bootstrap), and
the smooth ECE's grid sums are one sparse product (analysis.smooth_ece).

Units (``analysis.bootstrap.unit``): ``sample`` resamples samples independently; ``image`` and
``pair_id`` resample clusters, the samples that share an image or a look-alike pair, whole (a
cluster drawn twice counts each of its samples twice). A sample without the key (no image, no
pair) is a cluster of its own, so singleton clusters give exactly the independent bootstrap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl


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
    """The (resamples x n) float count matrix of a chunk of resample indices.

    One bincount per row: its n counters stay in cache, where one bincount over the flattened chunk
    with row offsets scatters over chunk x n counters (several times slower at paper scale).
    """
    rows, n = indices.shape
    counts = np.empty((rows, n))
    for row in range(rows):  # rows = resamples of a chunk (256), each a vectorised bincount over n
        counts[row] = np.bincount(indices[row], minlength=n)
    return counts


def cluster_index(keys: Sequence[str | None]) -> tuple[np.ndarray, int]:
    """``(cluster of each sample, number of clusters)`` from per-sample keys, clusters numbered in order of
    first appearance; a null or empty key is a cluster of its own."""
    frame = pl.DataFrame({"key": pl.Series(list(keys), dtype=pl.Utf8)})
    own = frame["key"].is_null() | (frame["key"] == "")
    keyed = pl.when(own).then(pl.lit("\x00own:") + pl.int_range(pl.len()).cast(pl.Utf8)).otherwise(pl.col("key"))
    ids = frame.select(keyed.alias("key")).with_columns(pl.col("key").rank("dense").alias("rank"))
    # dense rank orders clusters by key; renumber them by first appearance so singletons keep sample order
    first = ids.with_row_index("row").group_by("rank").agg(pl.col("row").min()).sort("row")
    renumber = dict(zip(first["rank"].to_list(), range(first.height)))
    index = np.array([renumber[r] for r in ids["rank"].to_list()], dtype=np.int64)
    return index, first.height
