"""Can this model's scores be trusted at all? One row per evaluation pair, before any finer analysis.

Two checks, each undefined (NaN, with a ``note``) rather than zero when its data is missing:

- **Label mass**: the share of the model's next-token probability on the two label tokens (score
  cache column ``label_mass``). ``label_mass_mean`` over every (sample, prompt) of the split;
  ``label_mass_worst`` the lowest per-prompt mean, ``worst_prompt`` that prompt. A low mass means
  the model mostly wanted to say something else, and ``p_unsafe`` compares two unlikely tokens.
  Imported scores carry no mass: NaN.
- **Ranking**: AUROC of the mean score over prompts (the lock's prompts) with its percentile
  bootstrap CI (``analysis.trust.resamples`` resamples; seed, chunk size and confidence of
  ``analysis.bootstrap``, so its first resamples are the bootstrap table's). ``chance_level`` is true when the CI contains or lies below 0.5: on this
  pair the model's score does not rank unsafe above safe better than a coin. A split with one class
  has no AUROC (NaN, ``chance_level`` null).

A resample is not materialised: one ``bincount`` per chunk of resamples counts the drawn samples per
(distinct score, class), and over the distinct scores in ascending order, with ``P_g`` / ``N_g`` the
drawn unsafe / safe counts at score ``g``, ``AUROC = sum_g P_g (N_<g + N_g / 2) / (P N)``, ties
counting half as in :func:`metrics.auroc`. No loop over samples or resamples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import bootstrap, metrics
from prompt_reliability.analysis.lockfile import locked_scores, read_lock
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import split_rows

TABLE_COLUMNS = ("model", "dataset", "split", "n", "label_mass_mean", "label_mass_worst", "worst_prompt", "auroc",
                 "auroc_ci_low", "auroc_ci_high", "chance_level", "n_resamples", "note")


def resampled_auroc(y: np.ndarray, p: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """AUROC of each resample (rows of ``indices``, the drawn sample numbers); NaN for a resample that drew
    one class only. Exact: the Mann-Whitney count is summed in integers, divided once."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    distinct, group = np.unique(p, return_inverse=True)  # group = rank of the sample's score among the distinct ones
    n_keys = 2 * len(distinct)
    key = 2 * group + (y == 1)  # (score group, class) of every sample
    rows = len(indices)
    flat = key[indices] + (np.arange(rows, dtype=np.int64) * n_keys)[:, None]
    drawn = np.bincount(flat.ravel(), minlength=rows * n_keys).reshape(rows, -1, 2)  # resample x group x class
    safe, unsafe = drawn[..., 0], drawn[..., 1]
    safe_below = np.cumsum(safe, axis=1) - safe
    twice_wins = (unsafe * (2 * safe_below + safe)).sum(axis=1)  # ties count half
    pairs = unsafe.sum(axis=1) * safe.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, twice_wins / (2.0 * pairs), np.nan)


def auroc_with_ci(y: np.ndarray, p: np.ndarray, *, n_resamples: int, seed: int, chunk_size: int = 256,
                  confidence: float = 0.95) -> tuple[float, float, float, int]:
    """``(auroc, ci_low, ci_high, resamples used)``; the CI over the resamples that drew both classes."""
    point = metrics.auroc(y, p)
    if np.isnan(point):
        return point, float("nan"), float("nan"), 0
    resampled = np.concatenate([resampled_auroc(y, p, indices)
                                for indices in bootstrap.resample_indices(len(y), n_resamples, seed, chunk_size)])
    resampled = resampled[~np.isnan(resampled)]
    low, high = bootstrap.percentile_ci(resampled, confidence)
    return point, float(low), float(high), len(resampled)


def label_mass(caches: Sequence[pl.DataFrame], sample_ids: Sequence[str]) -> tuple[float, float, str | None]:
    """``(mean, worst per-prompt mean, worst prompt)`` of ``label_mass`` over the samples ``sample_ids`` (one
    split's; score caches carry no split); NaN when not recorded."""
    rows = pl.concat([c.select("sample_id", "prompt_id", "label_mass") for c in caches]).filter(
        pl.col("sample_id").is_in(list(sample_ids)))
    if rows.height == 0 or rows["label_mass"].null_count() == rows.height:
        return float("nan"), float("nan"), None
    per_prompt = rows.group_by("prompt_id", maintain_order=True).agg(pl.col("label_mass").mean()).sort(
        "label_mass", maintain_order=True)
    return float(rows["label_mass"].mean()), float(per_prompt["label_mass"][0]), per_prompt["prompt_id"][0]


def trust_row(y: np.ndarray, mean_score: np.ndarray, caches: Sequence[pl.DataFrame], sample_ids: Sequence[str], *,
              n_resamples: int, seed: int, chunk_size: int = 256, confidence: float = 0.95) -> dict[str, Any]:
    mass_mean, mass_worst, worst_prompt = label_mass(caches, sample_ids)
    auroc, low, high, used = auroc_with_ci(y, mean_score, n_resamples=n_resamples, seed=seed, chunk_size=chunk_size,
                                           confidence=confidence)
    notes = []
    if np.isnan(mass_mean):
        notes.append("no label mass in the score cache (imported scores)")
    if np.isnan(auroc):
        notes.append("AUROC undefined: the split holds one class")
    return {"n": len(y), "label_mass_mean": mass_mean, "label_mass_worst": mass_worst, "worst_prompt": worst_prompt,
            "auroc": auroc, "auroc_ci_low": low, "auroc_ci_high": high,
            "chance_level": None if np.isnan(auroc) else bool(low <= 0.5), "n_resamples": used,
            "note": "; ".join(notes)}


def write_trust(*, matrix: str, lock: str, caches: Sequence[str], table: str, model: str, dataset: str, split: str,
                analysis: Mapping[str, Any]) -> pl.DataFrame:
    """Rule ``trust``: one evaluation pair's row (label mass from the score caches, AUROC of the mean with its CI)."""
    full = pl.read_parquet(matrix)
    rows = split_rows(full, split, matrix)
    scores = locked_scores(rows, read_lock(lock, full))
    settings = analysis["bootstrap"]
    row = trust_row(rows["label"].to_numpy(), scores["mean"], [pl.read_parquet(c) for c in caches], rows["sample_id"],
                    n_resamples=analysis["trust"]["resamples"], seed=settings["seed"],
                    chunk_size=settings["chunk_size"], confidence=settings["confidence"])
    piece = tables.label_pair(pl.DataFrame([row], schema_overrides={"worst_prompt": pl.Utf8, "chance_level": pl.Boolean}),
                              model, dataset, split).select(TABLE_COLUMNS)
    io.write_parquet(piece, table)
    return piece
