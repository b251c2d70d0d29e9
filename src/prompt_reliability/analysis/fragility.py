"""Prompt fragility of one evaluation pair: cross-prompt spread against mistakes and disagreement.

For a pair with K prompts, ``p[i, k]`` is sample i's unsafe probability under prompt k and
``yhat[i, k] = p[i, k] >= threshold``. Per sample (:func:`sample_fragility`):

- ``pbar``: mean over prompts; ``sd``: population standard deviation over prompts (ddof 0);
- ``mistake``: ``mean_k(yhat[i, k] != y[i])``;
- ``disagreement``: ``min(nU, nS) / K`` with nU / nS the prompts predicting unsafe / safe.

Deciles (:func:`decile_table`): samples sorted by ``sd`` and split into ``n_groups`` groups with
``numpy.array_split``; D1 has the lowest spread. Ties (sd equal within a relative 1e-12, e.g. the
many samples whose prompts all agree exactly) are ordered by a hash of the sample id
(:func:`metrics.stable_id_hash`), so the groups do not depend on the manifest's row order. Each view is
computed for every prompt family alone and for all prompts together (family ``all``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import metrics
from prompt_reliability.base import io, tables
from prompt_reliability.base.config import (
    ALL_PROMPTS as ALL,  # the view of every prompt together
)
from prompt_reliability.data.matrix import probabilities, split_rows
from prompt_reliability.data.prompts import prompts_by_family

RATES = ("mistake_rate", "disagreement_rate")


def sample_fragility(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> dict[str, np.ndarray]:
    """Per-sample ``pbar, sd, mistake, disagreement`` of an n x K probability matrix."""
    p = np.ascontiguousarray(p, dtype=np.float64)  # row sums depend on the memory layout in the last bits
    if p.ndim != 2 or p.shape[1] == 0:
        raise ValueError(f"expected an n x K probability matrix with K >= 1, got shape {p.shape}")
    y = np.asarray(y).reshape(-1, 1)
    unsafe = p >= threshold
    n_unsafe = unsafe.sum(axis=1)
    k = p.shape[1]
    return {
        "pbar": p.mean(axis=1),
        "sd": p.std(axis=1, ddof=0),
        "mistake": (unsafe != (y == 1)).mean(axis=1),
        "disagreement": np.minimum(n_unsafe, k - n_unsafe) / k,
    }


def decile_table(sd: np.ndarray, mistake: np.ndarray, disagreement: np.ndarray, n_groups: int = 10,
                 tiebreak: np.ndarray | None = None) -> pl.DataFrame:
    """Per group: ``decile`` (1 = lowest spread), ``n``, ``mean_sd``, ``mistake_rate``, ``disagreement_rate``.

    ``tiebreak``: order of samples with tied sd (the sample ids' hash; default: their position).
    With fewer samples than groups the last groups are empty: ``n = 0`` and NaN means.
    """
    groups = metrics.equal_mass_bins(sd, n_groups, tiebreak)  # sort on sd, numpy.array_split: the decile definition
    # sums in one canonical order (sd, then tiebreak), so the means are bit-identical whatever the row order
    order = np.arange(len(sd)) if tiebreak is None else np.lexsort((np.asarray(tiebreak), metrics.snap_ties(sd)))
    groups = groups[order]
    n = np.bincount(groups, minlength=n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = {name: np.bincount(groups, weights=np.asarray(values, dtype=np.float64)[order], minlength=n_groups) / n
                 for name, values in (("mean_sd", sd), ("mistake_rate", mistake), ("disagreement_rate", disagreement))}
    return pl.DataFrame({"decile": np.arange(1, n_groups + 1, dtype=np.int64), "n": n.astype(np.int64), **means})


def prompt_views(family_of: Mapping[str, str]) -> dict[str, list[str]]:
    """Prompt ids of each family (registry order), then of all prompts as family ``all``."""
    views = prompts_by_family(family_of)
    if ALL in views:
        raise ValueError(f"a prompt family may not be named {ALL!r}: that name is the view of all prompts together")
    views[ALL] = list(family_of)
    return views


def fragility_table(matrix: pl.DataFrame, split: str, family_of: Mapping[str, str], n_groups: int = 10,
                    threshold: float = 0.5, source: str = "") -> pl.DataFrame:
    """Decile rows of every family view: ``split, family, decile, n, mean_sd, mistake_rate, disagreement_rate``."""
    rows = split_rows(matrix, split, source)
    y = rows["label"].to_numpy()
    tiebreak = metrics.stable_id_hash(rows["sample_id"].to_list())
    frames = []
    for family, prompt_ids in prompt_views(family_of).items():
        per_sample = sample_fragility(y, probabilities(rows, prompt_ids), threshold)
        deciles = decile_table(per_sample["sd"], per_sample["mistake"], per_sample["disagreement"], n_groups, tiebreak)
        frames.append(deciles.select(pl.lit(split).alias("split"), pl.lit(family).alias("family"), pl.all()))
    return pl.concat(frames)


def write_fragility(*, matrix: str, table: str, model: str, dataset: str, split: str, family_of: Mapping[str, str],
                    analysis: Mapping[str, Any]) -> pl.DataFrame:
    deciles = fragility_table(pl.read_parquet(matrix), split, family_of, analysis["deciles"], analysis["threshold"], source=matrix)
    deciles = tables.label_pair(deciles, model, dataset)
    io.write_parquet(deciles, table)
    return deciles


def decile_gaps(table: pl.DataFrame) -> pl.DataFrame:
    """Per pair and family view: ``mistake_rate_gap``, ``disagreement_rate_gap`` = last group (D10) - first (D1)."""
    return table.group_by("model", "dataset", "split", "family", maintain_order=True).agg(
        *[(pl.col(rate).sort_by("decile").last() - pl.col(rate).sort_by("decile").first()).alias(f"{rate}_gap") for rate in RATES]
    )


def fragility_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per family view across pairs: in how many pairs the top-spread group (D10) is worse than D1.

    ``family, pairs, mistake_d10_worse, disagreement_d10_worse, both_d10_worse,
    mean_mistake_gap, mean_disagreement_gap`` (gap = D10 - D1; "worse" = strictly higher rate).
    """
    mistake, disagreement = pl.col("mistake_rate_gap"), pl.col("disagreement_rate_gap")
    return decile_gaps(table).group_by("family", maintain_order=True).agg(
        pl.len().alias("pairs"),
        (mistake > 0).sum().alias("mistake_d10_worse"),
        (disagreement > 0).sum().alias("disagreement_d10_worse"),
        ((mistake > 0) & (disagreement > 0)).sum().alias("both_d10_worse"),
        mistake.mean().alias("mean_mistake_gap"),
        disagreement.mean().alias("mean_disagreement_gap"),
    )


def write_fragility_summary(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(fragility_summary(pl.read_parquet(table)), summary, csv, md, "D10 vs D1 across pairs")
