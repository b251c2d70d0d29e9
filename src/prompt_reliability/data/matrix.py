"""Score matrix: one row per sample, one probability column per prompt id (registry order).

The matrix of one (model, dataset) has ``sample_id, split, label`` and then one float
column per prompt. Samples keep manifest order, which later analyses use to break ties.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import polars as pl

from prompt_reliability.base import io

ID_COLUMNS = ("sample_id", "split", "label")


log = logging.getLogger("prompt_reliability")


class MatrixError(ValueError):
    """The family caches do not make a complete matrix; the message names the file and the gap."""


def assemble_matrix(manifest: pl.DataFrame, caches: Sequence[pl.DataFrame], prompt_ids: Sequence[str], source: str = "") -> pl.DataFrame:
    """Pivot long family caches into the wide matrix and validate it."""
    long = pl.concat([c.select("sample_id", "prompt_id", "p_unsafe") for c in caches])
    dupes = long.filter(pl.struct("sample_id", "prompt_id").is_duplicated())
    if len(dupes):
        raise MatrixError(f"{source}: prompt {dupes['prompt_id'][0]!r} is scored twice for sample {dupes['sample_id'][0]!r}; "
                          "two prompt families share a prompt id")
    wide = long.pivot(on="prompt_id", index="sample_id", values="p_unsafe")
    missing_prompts = [p for p in prompt_ids if p not in wide.columns]
    if missing_prompts:
        raise MatrixError(f"{source}: prompts {missing_prompts} have no scores; re-run their family's scoring job")
    matrix = manifest.select(ID_COLUMNS).join(wide.select("sample_id", *prompt_ids), on="sample_id", how="left", maintain_order="left")
    return validate_matrix(matrix, prompt_ids, source)


def validate_matrix(matrix: pl.DataFrame, prompt_ids: Sequence[str], source: str = "") -> pl.DataFrame:
    values = matrix.select(prompt_ids).to_numpy()
    if np.isnan(values).any() or matrix.select(prompt_ids).null_count().sum_horizontal().item():
        bad = np.argwhere(np.isnan(values.astype(float)))[0]
        raise MatrixError(f"{source}: sample {matrix['sample_id'][int(bad[0])]!r} has no score for prompt {prompt_ids[int(bad[1])]!r}")
    if (values < 0).any() or (values > 1).any():
        raise MatrixError(f"{source}: probabilities must lie in [0, 1]")
    return matrix


def probabilities(matrix: pl.DataFrame, prompt_ids: Sequence[str]) -> np.ndarray:
    """The n x K float64 array of p_unsafe, columns in ``prompt_ids`` order."""
    return matrix.select(prompt_ids).to_numpy().astype(np.float64)


def split_rows(matrix: pl.DataFrame, split: str, source: str = "") -> pl.DataFrame:
    """Rows of one split, with a clear error when the split does not exist."""
    rows = matrix.filter(pl.col("split") == split)
    if not len(rows):
        raise MatrixError(f"{source}: no samples in split {split!r}; splits present: {sorted(matrix['split'].unique().to_list())}. "
                          "Fix 'lock.split' or 'evaluate[].split' in the config")
    return rows


def prompt_columns(matrix: pl.DataFrame) -> list[str]:
    return [c for c in matrix.columns if c not in ID_COLUMNS]


def write_matrix(*, manifest: str, caches: Sequence[str], matrix: str) -> pl.DataFrame:
    """Read the family caches of one (model, dataset) and write the validated matrix."""
    frames = [pl.read_parquet(p) for p in caches]
    prompt_ids: list[str] = []
    for path in caches:
        prompt_ids.extend(io.read_parquet_metadata(path).get("prompt_ids") or pl.read_parquet(path)["prompt_id"].unique(maintain_order=True).to_list())
    wide = assemble_matrix(pl.read_parquet(manifest), frames, prompt_ids, source=matrix)
    io.write_parquet(wide, matrix, {"prompt_ids": prompt_ids, "caches": [str(p) for p in caches]})
    log.info("wrote %s: %d samples x %d prompts", matrix, wide.height, len(prompt_ids))
    return wide


def write_split_matrix(*, matrix: str, split_matrix: str, split: str) -> pl.DataFrame:
    """The rows of one split of a (model, dataset) matrix, with its metadata: every analysis of the
    evaluation pair reads this file (rule ``split_matrix``), which on a cluster also makes the pair's
    analyses one connected group, run by one Snakemake inside their SLURM job."""
    rows = split_rows(pl.read_parquet(matrix), split, matrix)
    io.write_parquet(rows, split_matrix, io.read_parquet_metadata(matrix))
    log.info("wrote %s: %d samples of split %r", split_matrix, rows.height, split)
    return rows
