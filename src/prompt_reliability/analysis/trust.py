"""Can this model's scores be trusted at all? One row per evaluation pair, before any finer analysis.

Two checks, each undefined (NaN, with a ``note``) rather than zero when its data is missing:

- **Label mass**: the share of the model's next-token probability on the two label tokens (score
  cache column ``label_mass``). ``label_mass_mean`` over every (sample, prompt) of the split;
  ``label_mass_worst`` the lowest per-prompt mean, ``worst_prompt`` that prompt. A low mass means
  the model mostly wanted to say something else, and ``p_unsafe`` compares two unlikely tokens.
  Imported scores carry no mass: NaN.
- **Ranking**: AUROC of the mean score over prompts (the lock's prompts) with its percentile
  bootstrap CI on the first ``analysis.trust.resamples`` of the bootstrap job's resamples (same
  seed, chunk size, confidence and resampling unit as the bootstrap table: :mod:`.split_bootstrap`).
  ``chance_level`` is true when the CI contains or lies below 0.5: on this pair the model's score
  does not rank unsafe above safe better than a coin. A split with one class has no AUROC (NaN,
  ``chance_level`` null).

A resample is not materialised: the AUROC of a resample is computed from its count vector
(:class:`metrics.CountedAUROC`), a few passes over a chunk of count vectors.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import bootstrap, metrics
from prompt_reliability.analysis.resampling import resample_counts
from prompt_reliability.base import tables

TABLE_COLUMNS = ("model", "dataset", "split", "n", "label_mass_mean", "label_mass_worst", "worst_prompt", "auroc",
                 "auroc_ci_low", "auroc_ci_high", "chance_level", "n_resamples", "note")


def resampled_auroc(y: np.ndarray, p: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """AUROC of each resample (rows of ``indices``, the drawn sample numbers); NaN for a resample that drew
    one class only (:class:`metrics.CountedAUROC` on the resamples' count matrix)."""
    return metrics.CountedAUROC(y, p)(resample_counts(np.asarray(indices)))


def auroc_interval(point: float, resampled: np.ndarray, confidence: float = 0.95) -> tuple[float, float, float, int]:
    """``(auroc, ci_low, ci_high, resamples used)``: the percentile CI over the resamples that drew both classes."""
    if np.isnan(point):
        return point, float("nan"), float("nan"), 0
    resampled = resampled[~np.isnan(resampled)]
    low, high = bootstrap.percentile_ci(resampled, confidence)
    return point, float(low), float(high), len(resampled)


def auroc_with_ci(y: np.ndarray, p: np.ndarray, *, n_resamples: int, seed: int, chunk_size: int = 256,
                  confidence: float = 0.95) -> tuple[float, float, float, int]:
    """``(auroc, ci_low, ci_high, resamples used)`` on independent resamples of its own (the workflow's
    trust rows take theirs from the bootstrap job's resamples, :mod:`.split_bootstrap`)."""
    counted = metrics.CountedAUROC(y, p)
    resampled = np.concatenate([counted(resample_counts(indices))
                                for indices in bootstrap.resample_indices(len(y), n_resamples, seed, chunk_size)])
    return auroc_interval(metrics.auroc(y, p), resampled, confidence)


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


def trust_row(y: np.ndarray, caches: Sequence[pl.DataFrame], sample_ids: Sequence[str],
              auroc: tuple[float, float, float, int]) -> dict[str, Any]:
    """One evaluation pair's row: label mass from the score caches, and ``auroc`` = :func:`auroc_interval`."""
    mass_mean, mass_worst, worst_prompt = label_mass(caches, sample_ids)
    point, low, high, used = auroc
    notes = []
    if np.isnan(mass_mean):
        notes.append("no label mass in the score cache (imported scores)")
    if np.isnan(point):
        notes.append("AUROC undefined: the split holds one class")
    return {"n": len(y), "label_mass_mean": mass_mean, "label_mass_worst": mass_worst, "worst_prompt": worst_prompt,
            "auroc": point, "auroc_ci_low": low, "auroc_ci_high": high,
            "chance_level": None if np.isnan(point) else bool(low <= 0.5), "n_resamples": used,
            "note": "; ".join(notes)}


def trust_piece(row: Mapping[str, Any], model: str, dataset: str, split: str) -> pl.DataFrame:
    """The trust table's piece of one evaluation pair."""
    return tables.label_pair(pl.DataFrame([row], schema_overrides={"worst_prompt": pl.Utf8, "chance_level": pl.Boolean}),
                             model, dataset, split).select(TABLE_COLUMNS)
