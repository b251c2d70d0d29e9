"""Calibration variants of an hf model (issue 14), each scored with the first-token rule into its own cache.

A variant name is ``none`` (the model as is), ``fewshot-<k>`` (k safe + k unsafe lock-split
demonstrations, :mod:`few_shot`) or ``iar-L<layer>-a<alpha>`` (activation steering, :mod:`steering`).
:func:`variant_settings` turns one into the hf backend's settings keys; :func:`score_variant` scores
the rows of some splits of a dataset with one prompt family (the safety family, or the
helpfulness / judge family with its own labels) and writes the usual score cache.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from prompt_reliability.base import io

_FEW_SHOT = re.compile(r"^fewshot-(\d+)$")
_STEERING = re.compile(r"^iar-L(\d+)-a(-?[0-9]+(?:\.[0-9]+)?)$")


class VariantError(ValueError):
    """A variant name or its inputs are malformed; the message names the fix."""


def variant_names(shots: Sequence[int], layers: Sequence[int], alphas: Sequence[float]) -> list[str]:
    """``none``, the few-shot variants, then every (layer, alpha) steering variant."""
    return ["none", *(f"fewshot-{int(k)}" for k in shots),
            *(f"iar-L{int(layer)}-a{float(alpha):g}" for layer in layers for alpha in alphas)]


def parse_variant(name: str) -> dict[str, Any]:
    if name == "none":
        return {"kind": "none"}
    if match := _FEW_SHOT.match(name):
        return {"kind": "few_shot", "shots": int(match[1])}
    if match := _STEERING.match(name):
        return {"kind": "steering", "layer": int(match[1]), "alpha": float(match[2])}
    raise VariantError(f"unknown calibration variant {name!r}: use none, fewshot-<k> or iar-L<layer>-a<alpha>")


def variant_settings(name: str, *, vectors: str | None = None, lock_manifest: str | None = None, lock_split: str = "train",
                     seed: int = 0, template: str = "", answers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The hf settings keys (``steering`` / ``few_shot``) of variant ``name``."""
    variant = parse_variant(name)
    if variant["kind"] == "steering":
        if not vectors:
            raise VariantError(f"variant {name!r} needs the steering vectors file")
        return {"steering": {"vectors": vectors, "layer": variant["layer"], "alpha": variant["alpha"]}}
    if variant["kind"] == "few_shot":
        if not lock_manifest or not template:
            raise VariantError(f"variant {name!r} needs the lock manifest and a demonstration template")
        return {"few_shot": {"manifest": lock_manifest, "split": lock_split, "shots": variant["shots"], "seed": int(seed),
                             "template": template, **({"answers": dict(answers)} if answers else {})}}
    return {}


def score_variant(*, manifest: str, scores: str, model: str, model_config: Mapping[str, Any], variant: str, dataset: str,
                  splits: Sequence[str], prompt_dir: str, family: str, prompt_format: Mapping[str, str], work_dir: str,
                  lock_manifest: str | None = None, vectors: str | None = None, few_shot: Mapping[str, Any] | None = None,
                  **_inputs: Any) -> pl.DataFrame:
    """Rule entry point: score ``splits`` of ``dataset`` with ``family`` under calibration ``variant``.

    ``few_shot``: ``{split, seed, template, answers}`` of the demonstrations (the lock split of the
    safety dataset); extra named inputs (the model folder, the prompt file) are dependencies only.
    """
    from prompt_reliability.scoring.cache import score_to_cache

    rows = pl.read_parquet(manifest).filter(pl.col("split").is_in(list(splits)))
    if not rows.height:
        raise VariantError(f"{manifest}: no samples in splits {list(splits)}")
    subset = Path(work_dir) / model / variant / f"{dataset}.manifest.parquet"
    io.write_parquet(rows, subset)
    fs = dict(few_shot or {})
    settings = variant_settings(variant, vectors=vectors, lock_manifest=lock_manifest, lock_split=fs.get("split", "train"),
                                seed=int(fs.get("seed", 0)), template=fs.get("template", ""), answers=fs.get("answers"))
    cache = score_to_cache(model=model, model_cfg={**model_config, **settings}, dataset=dataset, family=family,
                           manifest_path=str(subset), prompt_dir=prompt_dir, families=[family], prompt_format=prompt_format,
                           output=scores, work_dir=str(Path(work_dir) / model / variant))
    subset.unlink(missing_ok=True)
    return cache


def score_variant_datasets(*, manifests: Sequence[str], scores: Sequence[str], model: str, model_config: Mapping[str, Any],
                           variant: str, datasets: Sequence[Mapping[str, Any]], prompt_format: Mapping[str, str],
                           work_dir: str, lock_manifest: str | None = None, vectors: str | None = None,
                           few_shot: Mapping[str, Any] | None = None, **_inputs: Any) -> list[pl.DataFrame]:
    """Rule entry point: one variant of one model on several datasets in one process (torch and the
    model's classes load once). ``datasets[i]``: ``{dataset, splits, prompt_dir, family}`` of
    ``manifests[i]`` -> ``scores[i]``."""
    if not len(manifests) == len(scores) == len(datasets):
        raise VariantError("manifests, scores and datasets must be parallel lists")
    return [score_variant(manifest=manifest, scores=out, model=model, model_config=model_config, variant=variant,
                          dataset=spec["dataset"], splits=spec["splits"], prompt_dir=spec["prompt_dir"], family=spec["family"],
                          prompt_format=prompt_format, work_dir=work_dir, lock_manifest=lock_manifest, vectors=vectors,
                          few_shot=few_shot)
            for manifest, out, spec in zip(manifests, scores, datasets)]
