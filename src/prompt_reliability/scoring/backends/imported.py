"""The ``import`` backend: scores computed elsewhere, read from the model's score file per dataset."""

from __future__ import annotations

import polars as pl

from prompt_reliability.data.score_files import read_import_file
from prompt_reliability.scoring.cache import ScoreCacheError, ScoringJob


def score(job: ScoringJob) -> tuple[pl.DataFrame, dict]:
    path = (job.model_cfg.get("scores") or {}).get(job.dataset)
    if not path:
        raise ScoreCacheError(f"model {job.model!r} (backend import) lists no score file for dataset {job.dataset!r} under 'scores'")
    rows = read_import_file(path, (job.registry.labels.unsafe, job.registry.labels.safe))
    unknown = rows.filter(~pl.col("prompt_id").is_in(job.registry.prompt_ids))["prompt_id"].unique().sort()
    if len(unknown):
        raise ScoreCacheError(f"{path}: prompt ids {unknown.to_list()} are not in the prompt registry {job.registry.prompt_ids}; "
                              "add their family to config 'prompts' or drop those rows")
    unknown_samples = rows.join(job.manifest.select("sample_id"), on="sample_id", how="anti")["sample_id"].unique(maintain_order=True)
    if len(unknown_samples):
        raise ScoreCacheError(f"{path}: sample {unknown_samples[0]!r} ({len(unknown_samples)} sample id(s) in all) is not in "
                              f"dataset {job.dataset!r}; fix the sample id in the score file, or drop its rows")
    checked = rows.join(job.manifest.select("sample_id", "split", "label"), on="sample_id", how="left", suffix="_manifest")
    clash = checked.filter((pl.col("split") != pl.col("split_manifest")) | (pl.col("label") != pl.col("label_manifest")))
    if len(clash):
        row = clash.row(0, named=True)
        raise ScoreCacheError(f"{path}: sample {row['sample_id']!r} has split/label {row['split']}/{row['label']} but the manifest "
                              f"of dataset {job.dataset!r} says {row['split_manifest']}/{row['label_manifest']}")
    rows = rows.filter(pl.col("prompt_id").is_in(job.prompt_ids)).drop("split", "label")
    return rows.with_columns(pl.lit(None, dtype=pl.Float64).alias("label_mass"), pl.lit(None, dtype=pl.Utf8).alias("top_token")), {"source": str(path)}
