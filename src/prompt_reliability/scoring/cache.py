"""Score cache: one Parquet file per (model, dataset, prompt family), whatever the backend.

Contract (docs/architecture.md, "Score cache"): one row per (sample, prompt) with
``sample_id, family, prompt_id, logit_u, logit_s, p_unsafe, label_mass, top_token``,
``p_unsafe = sigmoid(logit_u - logit_s)``; ``label_mass`` (full-vocabulary mass on the two label
tokens) is a diagnostic only. File metadata records provenance and :data:`SCORING_VERSION`.
Labels and splits are not in the cache (scores do not depend on them): the score matrix joins
them from the manifest, so a corrected label re-runs no model.

A backend is a function ``(ScoringJob) -> (rows, provenance)`` returning at least
``sample_id, prompt_id, logit_u, logit_s`` (and optionally ``label_mass``, ``top_token``,
``p_unsafe``); :func:`finalize_cache` orders the rows as the manifest and the registry and validates.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import platform
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.base import io
from prompt_reliability.data.prompts import PromptRegistry, load_registry

log = logging.getLogger("prompt_reliability")

# The scoring contract's version, a param of every scoring rule and stored in each cache: bump it
# when a change makes existing caches wrong (what a score is, the cache's columns), never for a
# refactor; every cache is then re-scored. Version 2: the cache no longer carries split and label.
SCORING_VERSION = 2

CACHE_SCHEMA: dict[str, pl.DataType] = {
    "sample_id": pl.Utf8,
    "family": pl.Utf8,
    "prompt_id": pl.Utf8,
    "logit_u": pl.Float64,
    "logit_s": pl.Float64,
    "p_unsafe": pl.Float64,
    "label_mass": pl.Float64,
    "top_token": pl.Utf8,
}


class ScoreCacheError(ValueError):
    """Scores break the cache contract; the message names the file or backend and the fix."""


@dataclass
class ScoringJob:
    """Everything a backend may need for one (model, dataset, family)."""

    model: str
    model_cfg: Mapping[str, Any]
    dataset: str
    family: str
    manifest: pl.DataFrame
    manifest_hash: str
    registry: PromptRegistry
    prompt_format: Mapping[str, str]
    work_dir: Path  # where a backend may checkpoint partial work (a rule parameter)
    request_cache: Path | None = None  # served models: answered requests (scoring/served.py)

    @property
    def templates(self):
        return self.registry.family(self.family)

    @property
    def prompt_ids(self) -> list[str]:
        return [t.prompt_id for t in self.templates]

    @property
    def chunk_dir(self) -> Path:
        """Where a backend may checkpoint partial work; removed once the cache is written."""
        return self.work_dir / self.model / self.dataset / self.family


# Backends by config name: each is a module of ``backends`` with ``score(job) -> (rows, provenance)``,
# imported only when a job uses it (the hf backend imports torch).
BACKENDS: dict[str, str] = {"simulate": "simulate", "import": "imported", "hf": "hf", "served": "served"}


def get_backend(name: str) -> Callable[[ScoringJob], tuple[pl.DataFrame, dict]]:
    try:
        module = BACKENDS[name]
    except KeyError:
        raise ScoreCacheError(f"unknown scoring backend {name!r}; available: {sorted(BACKENDS)}") from None
    return importlib.import_module(f"prompt_reliability.scoring.backends.{module}").score


def finalize_cache(rows: pl.DataFrame, job: ScoringJob) -> pl.DataFrame:
    """Join manifest fields, compute p_unsafe, order by manifest then registry, validate the contract."""
    for column in ("sample_id", "prompt_id", "logit_u", "logit_s"):
        if column not in rows.columns:
            raise ScoreCacheError(f"backend {job.model_cfg.get('backend')!r} returned no column {column!r}")
    rows = rows.with_columns(pl.col("logit_u", "logit_s").cast(pl.Float64))
    if "p_unsafe" not in rows.columns:
        rows = rows.with_columns(pl.Series("p_unsafe", sigmoid(rows["logit_u"].to_numpy() - rows["logit_s"].to_numpy())))
    for column in ("label_mass", "top_token"):
        if column not in rows.columns:
            rows = rows.with_columns(pl.lit(None, dtype=CACHE_SCHEMA[column]).alias(column))
    order = job.manifest.select("sample_id").with_row_index("_sample_order")
    prompt_order = pl.DataFrame({"prompt_id": job.prompt_ids}).with_row_index("_prompt_order")
    out = order.join(prompt_order, how="cross").join(rows, on=["sample_id", "prompt_id"], how="left")
    missing = out.filter(pl.col("logit_u").is_null())
    if len(missing):
        row = missing.row(0, named=True)
        raise ScoreCacheError(f"model {job.model!r}, dataset {job.dataset!r}: no score for sample {row['sample_id']!r} under prompt "
                              f"{row['prompt_id']!r} ({len(missing)} (sample, prompt) pairs missing); every sample needs every prompt")
    if len(rows) != len(out):
        unknown = rows.join(order, on="sample_id", how="anti")["sample_id"]
        example = f" (e.g. sample {unknown[0]!r})" if len(unknown) else ""
        raise ScoreCacheError(f"model {job.model!r}, dataset {job.dataset!r}: {len(rows) - len(out)} score rows name samples that "
                              f"are not in the dataset manifest{example}; the score source and the manifest disagree")
    out = out.sort("_sample_order", "_prompt_order").with_columns(pl.lit(job.family).alias("family"))
    out = out.select([pl.col(c).cast(t) for c, t in CACHE_SCHEMA.items()])
    p = out["p_unsafe"].to_numpy()
    if np.isnan(p).any() or (p < 0).any() or (p > 1).any():
        raise ScoreCacheError(f"model {job.model!r}, dataset {job.dataset!r}: p_unsafe must be finite probabilities")
    return out


def sigmoid(x: np.ndarray) -> np.ndarray:
    from scipy.special import expit

    return expit(np.asarray(x, dtype=np.float64))


def manifest_hash(manifest: pl.DataFrame, columns: tuple[str, ...] = ("sample_id", "split", "label", "query")) -> str:
    """Content hash of a manifest's ``columns`` and its images' contents (their paths do not count)."""
    image = "image_sha256" if "image_sha256" in manifest.columns else "image_path"  # older manifests
    digest = hashlib.sha256()
    for column in (*columns, image):
        digest.update(column.encode())
        digest.update("\x1f".join(map(str, manifest[column].to_list())).encode())
    return digest.hexdigest()[:16]


def samples_hash(manifest: pl.DataFrame) -> str:
    """Content hash of what a model sees of the samples (ids, queries, images), not their labels or splits."""
    return manifest_hash(manifest, ("sample_id", "query"))


def package_versions(names=("prompt_reliability", "numpy", "polars", "pyarrow", "scipy", "torch", "torchvision", "transformers",
                            "tokenizers", "accelerate", "safetensors", "pillow")) -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def score_to_cache(
    *,
    model: str,
    model_cfg: Mapping[str, Any],
    dataset: str,
    family: str,
    manifest_path: str | Path,
    prompt_dir: str | Path,
    families: list[str],
    prompt_format: Mapping[str, str],
    output: str | Path,
    work_dir: str | Path,
    request_cache: str | Path | None = None,
    registry: PromptRegistry | None = None,
) -> pl.DataFrame:
    """Score one (model, dataset, family) with the model's backend and write the cache atomically.

    ``registry``: templates built elsewhere (a calibration method's, :mod:`data.calibration_prompts`)
    instead of the families read from ``prompt_dir``."""
    registry = registry or load_registry(prompt_dir, families)
    manifest = pl.read_parquet(manifest_path)
    # simulated scores depend on the labels; a model's only on what it sees of each sample
    reads_labels = model_cfg["backend"] == "simulate"
    key = manifest_hash(manifest) if reads_labels else samples_hash(manifest)
    job = ScoringJob(model, model_cfg, dataset, family, manifest, key, registry, prompt_format, Path(work_dir),
                     None if request_cache is None else Path(request_cache))
    rows, provenance = get_backend(model_cfg["backend"])(job)
    cache = finalize_cache(rows, job)
    metadata = {
        "model": model,
        "backend": model_cfg["backend"],
        "dataset": dataset,
        "family": family,
        "scoring_version": SCORING_VERSION,
        "prompt_ids": job.prompt_ids,
        "prompt_text_hash": registry.text_hash(family),
        "manifest_hash": job.manifest_hash,
        "package_versions": package_versions(),
        **provenance,
        # the label strings actually read: a backend that reads the model's own labels reports them
        "label_tokens": list(provenance.get("label_strings") or [registry.labels.unsafe, registry.labels.safe]),
    }
    io.write_parquet(cache, output, metadata)
    shutil.rmtree(job.chunk_dir, ignore_errors=True)
    return cache


def score_family(*, manifest: str, scores: str, model: str, dataset: str, family: str, model_config: Mapping[str, Any],
                 prompt_dir: str | Path, prompts: str, families: list[str], prompt_format: Mapping[str, str], work_dir: str,
                 model_folder: str | None = None, request_cache: str | None = None,
                 connection: Mapping[str, Any] | None = None) -> pl.DataFrame:
    """Rule entry: score one (model, dataset, family) into ``scores``.

    ``prompts`` is the hash of the family's templates and label tokens (it re-runs the job when
    they change; the registry is read from ``prompt_dir``). The input ``model_folder`` (a tiny
    model, already the path in ``model_config``) orders the job; nothing is read from it here.
    """
    model_config = {**model_config, **(connection or {})}  # served: the server's URL and limits (untracked)
    cache = score_to_cache(model=model, model_cfg=model_config, dataset=dataset, family=family, manifest_path=manifest,
                           prompt_dir=prompt_dir, families=families, prompt_format=prompt_format, output=scores,
                           work_dir=work_dir, request_cache=request_cache)
    log.info("wrote %s: %d rows", scores, len(cache))
    return cache
