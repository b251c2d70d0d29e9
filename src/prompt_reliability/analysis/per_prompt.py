"""Per-prompt reliability of every single prompt on one evaluation pair (model, dataset, split)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from prompt_reliability.analysis import metrics, smooth_ece
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import probabilities, split_rows


def per_prompt_table(
    matrix: pl.DataFrame,
    split: str,
    family_of: Mapping[str, str],
    n_bins: int = 15,
    eps: float = metrics.EPS,
    threshold: float = 0.5,
    source: str = "",
) -> pl.DataFrame:
    """One row per prompt: ``split, prompt_id, family, n``, the :func:`metrics.reliability_metrics` and ``smece``
    (relplot's smooth ECE, :mod:`.smooth_ece`)."""
    rows = split_rows(matrix, split, source)
    prompt_ids = list(family_of)
    y = rows["label"].to_numpy()
    p = probabilities(rows, prompt_ids)
    records = [
        {"split": split, "prompt_id": pid, "family": family_of[pid], "n": len(y),
         **metrics.reliability_metrics(y, p[:, k], n_bins=n_bins, eps=eps, threshold=threshold),
         "smece": smooth_ece.smece(y, p[:, k])[0]}
        for k, pid in enumerate(prompt_ids)
    ]
    return pl.DataFrame(records)


def write_per_prompt(*, matrix: str, table: str, model: str, dataset: str, split: str, family_of: Mapping[str, str],
                     analysis: Mapping[str, Any]) -> pl.DataFrame:
    result = per_prompt_table(pl.read_parquet(matrix), split, family_of, analysis["ece_bins"], analysis["eps"],
                              analysis["threshold"], source=matrix)
    result = tables.label_pair(result, model, dataset)
    io.write_parquet(result, table)
    return result
