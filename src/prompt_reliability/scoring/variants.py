"""Calibration variants of an hf model (issue 14), each scored with the first-token rule into its own cache.

A variant name is ``none`` (the model as is), ``fewshot-<k>`` (k safe + k unsafe lock-split
demonstrations, :mod:`few_shot`), ``iar-L<layer>-a<alpha>`` (activation steering, :mod:`steering`)
or the name of a calibration prompt (``cot``, ``pe``: ``prompts/calibration/<name>.yaml``,
:mod:`prompt_reliability.data.calibration_prompts`; a reasoning method reads the label after its
reasoning, :mod:`reasoning`). :func:`variant_settings` turns one into the hf backend's settings keys;
:func:`score_variant` scores the rows of some splits of a dataset with one prompt family (the safety
family, or the helpfulness family with its own labels; a calibration prompt replaces the family) and
writes the usual score cache.

Labels: on the safety sets a model reads its own ``labels`` (config ``models.<name>.labels``) where it
has them, everywhere: scoring, few-shot answers, calibration prompts and the cache metadata. A set
with labels of its own (helpfulness yes/no) is scored with those, never with the model's override.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import polars as pl

from prompt_reliability.base import io
from prompt_reliability.data.prompts import LabelTokens

_FEW_SHOT = re.compile(r"^fewshot-(\d+)$")
_STEERING = re.compile(r"^iar-L(\d+)-a(-?[0-9]+(?:\.[0-9]+)?)$")
_PROMPTING = re.compile(r"^[a-z][a-z0-9_]*$")


class VariantError(ValueError):
    """A variant name or its inputs are malformed; the message names the fix."""


def variant_names(shots: Sequence[int], layers: Sequence[int], alphas: Sequence[float],
                  prompting: Sequence[str] = ()) -> list[str]:
    """``none``, the few-shot variants, every (layer, alpha) steering variant, then the calibration prompts."""
    return ["none", *(f"fewshot-{int(k)}" for k in shots),
            *(f"iar-L{int(layer)}-a{float(alpha):g}" for layer in layers for alpha in alphas), *prompting]


def parse_variant(name: str) -> dict[str, Any]:
    if name == "none":
        return {"kind": "none"}
    if match := _FEW_SHOT.match(name):
        return {"kind": "few_shot", "shots": int(match[1])}
    if match := _STEERING.match(name):
        return {"kind": "steering", "layer": int(match[1]), "alpha": float(match[2])}
    if _PROMPTING.match(name) and not name.startswith(("fewshot", "iar")):
        return {"kind": "prompting", "method": name}
    raise VariantError(f"unknown calibration variant {name!r}: use none, fewshot-<k>, iar-L<layer>-a<alpha> or a calibration "
                       "prompt's name (prompts/calibration/<name>.yaml)")


def variant_settings(name: str, *, vectors: str | None = None, lock_manifest: str | None = None, lock_split: str = "train",
                     seed: int = 0, template: str = "") -> dict[str, Any]:
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
                             "template": template}}
    return {}


def own_labels(model_config: Mapping[str, Any], registry) -> LabelTokens:
    """The labels a model is scored with on a set whose registry is ``registry``: its ``labels`` override, if any."""
    override = model_config.get("labels") or {}
    labels = registry.labels
    return replace(labels, unsafe=override.get("unsafe", labels.unsafe), safe=override.get("safe", labels.safe))


def score_variant(*, manifest: str, scores: str, model: str, model_config: Mapping[str, Any], variant: str, dataset: str,
                  splits: Sequence[str], prompt_dir: str, family: str, prompt_format: Mapping[str, str], work_dir: str,
                  model_labels: bool = True, lock_manifest: str | None = None, vectors: str | None = None,
                  few_shot: Mapping[str, Any] | None = None, prompting: Mapping[str, Any] | None = None,
                  **_inputs: Any) -> pl.DataFrame:
    """Rule entry point: score ``splits`` of ``dataset`` with ``family`` under calibration ``variant``.

    ``model_labels``: whether the model's own ``labels`` apply (the safety sets) or the set's labels do
    (helpfulness). ``few_shot``: ``{split, seed, template}`` of the demonstrations (the lock split of
    the safety dataset). ``prompting``: ``{prompt_dir, cot_max_new_tokens}`` of the calibration prompts.
    Extra named inputs (the model folder, the prompt file) are dependencies only.
    """
    from prompt_reliability.data.calibration_prompts import load_method
    from prompt_reliability.data.prompts import load_registry
    from prompt_reliability.scoring.cache import score_to_cache

    rows = pl.read_parquet(manifest).filter(pl.col("split").is_in(list(splits)))
    if not rows.height:
        raise VariantError(f"{manifest}: no samples in splits {list(splits)}")
    subset = Path(work_dir) / model / variant / f"{dataset}.manifest.parquet"
    io.write_parquet(rows, subset)
    config = dict(model_config) if model_labels else {k: v for k, v in model_config.items() if k != "labels"}
    fs = dict(few_shot or {})
    settings = variant_settings(variant, vectors=vectors, lock_manifest=lock_manifest, lock_split=fs.get("split", "train"),
                                seed=int(fs.get("seed", 0)), template=fs.get("template", ""))
    registry = None
    if parse_variant(variant)["kind"] == "prompting":
        if not prompting:
            raise VariantError(f"variant {variant!r} needs the calibration prompts (rule parameter 'prompting')")
        method = load_method(prompting["prompt_dir"], variant)
        labels = own_labels(config, load_registry(prompt_dir, [family]))
        registry, family = method.registry(labels), method.name
        if method.reasons:
            settings["reasoning"] = {"max_new_tokens": int(prompting["cot_max_new_tokens"]), "cue": method.cue(labels)}
    cache = score_to_cache(model=model, model_cfg={**config, **settings}, dataset=dataset, family=family,
                           manifest_path=str(subset), prompt_dir=prompt_dir, families=[family], prompt_format=prompt_format,
                           output=scores, work_dir=str(Path(work_dir) / model / variant), registry=registry)
    subset.unlink(missing_ok=True)
    return cache


def score_variant_datasets(*, manifests: Sequence[str], scores: Sequence[str], model: str, model_config: Mapping[str, Any],
                           variant: str, datasets: Sequence[Mapping[str, Any]], prompt_format: Mapping[str, str],
                           work_dir: str, lock_manifest: str | None = None, vectors: str | None = None,
                           few_shot: Mapping[str, Any] | None = None, prompting: Mapping[str, Any] | None = None,
                           **_inputs: Any) -> list[pl.DataFrame]:
    """Rule entry point: one variant of one model on several datasets in one process (torch and the
    model's classes load once). ``datasets[i]``: ``{dataset, splits, prompt_dir, family, model_labels}``
    of ``manifests[i]`` -> ``scores[i]``."""
    if not len(manifests) == len(scores) == len(datasets):
        raise VariantError("manifests, scores and datasets must be parallel lists")
    return [score_variant(manifest=manifest, scores=out, model=model, model_config=model_config, variant=variant,
                          dataset=spec["dataset"], splits=spec["splits"], prompt_dir=spec["prompt_dir"], family=spec["family"],
                          prompt_format=prompt_format, work_dir=work_dir, model_labels=spec["model_labels"],
                          lock_manifest=lock_manifest, vectors=vectors, few_shot=few_shot, prompting=prompting)
            for manifest, out, spec in zip(manifests, scores, datasets)]
