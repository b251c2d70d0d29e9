"""Manifest checks before any score is computed (rule ``check_manifest``, workflow/rules/checks.smk).

Everything the run needs from a dataset's manifest is visible before scoring: each split named by
``lock`` / ``evaluate`` exists and is non-empty; the lock split (and every evaluation split when the
bootstrap reweights prevalences) holds both classes; every image a model must read opens. The
rule writes a small JSON summary that every scoring job takes as input, so no score cache is
written before these pass.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from prompt_reliability.base import io
from prompt_reliability.data.datasets import DatasetError


def manifest_requirements(config: Mapping[str, Any], dataset: str) -> dict[str, Any]:
    """What the run needs from ``dataset``'s manifest (validated config): splits with their roles, images."""
    lock = config["lock"]
    reweighting = any(p != "native" for p in config["analysis"]["bootstrap"]["prevalences"])
    splits: dict[str, dict[str, Any]] = {}
    if lock["dataset"] == dataset:
        splits[lock["split"]] = {"key": "lock.split", "both_classes": True,
                                 "why": "the prompt is selected and calibrators are fit on it"}
    for index, pair in enumerate(config["evaluate"]):
        if pair["dataset"] != dataset:
            continue
        entry = splits.setdefault(pair["split"], {"key": f"evaluate[{index}].split", "both_classes": False, "why": ""})
        if reweighting and not entry["both_classes"]:
            entry.update(both_classes=True, why="analysis.bootstrap.prevalences reweights it to other unsafe rates")
    images = any(cfg["backend"] == "hf" for cfg in config["models"].values())
    return {"splits": splits, "images": images}


def check_manifest(manifest: pl.DataFrame, dataset: str, requirements: Mapping[str, Any]) -> dict[str, Any]:
    """Raise :class:`DatasetError` naming the config key and the fix; else the per-split summary."""
    source = f"dataset {dataset!r} (its manifest)"
    have = manifest["split"].unique(maintain_order=True).to_list()
    summary: dict[str, Any] = {"dataset": dataset, "splits": {}}
    for split, need in requirements["splits"].items():
        rows = manifest.filter(pl.col("split") == split)
        if rows.height == 0:
            close = difflib.get_close_matches(split, have, n=1, cutoff=0.5)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise DatasetError(
                f"{source}: split {split!r} (config key '{need['key']}') has no samples; the manifest has splits {have}. "
                f"{hint}Fix '{need['key']}', or the dataset's 'columns.split' / 'splits' / 'split_column_default'")
        unsafe = int(rows["label"].sum())
        safe = rows.height - unsafe
        if need["both_classes"] and (unsafe == 0 or safe == 0):
            raise DatasetError(
                f"{source}: split {split!r} (config key '{need['key']}') holds only {'unsafe' if safe == 0 else 'safe'} "
                f"samples ({rows.height}), but {need['why']}, which needs both classes; use a split with both labels "
                f"(check the dataset's 'labels' mapping)")
        if requirements.get("images"):
            _check_images(rows, source, split)
        summary["splits"][split] = {"n": rows.height, "unsafe": unsafe, "safe": safe}
    return summary


def _check_images(rows: pl.DataFrame, source: str, split: str) -> None:
    from PIL import Image

    for sample_id, path in zip(rows["sample_id"], rows["image_path"]):
        if not path:
            raise DatasetError(f"{source}, split {split!r}, sample {sample_id!r}: no image, but a model with backend 'hf' "
                               "scores images; give the dataset an image column ('columns: {image: <column>}')")
        try:
            with Image.open(path) as image:
                image.verify()
        except (OSError, SyntaxError) as err:
            raise DatasetError(f"{source}, split {split!r}, sample {sample_id!r}: image {path!r} does not open ({err}); "
                               "fix or remove the file, then rebuild the manifest") from err


def write_manifest_check(manifest: str | Path, summary: str | Path, dataset: str, requirements: Mapping[str, Any]) -> dict:
    """Rule ``check_manifest``: the checks above, then the summary (JSON) that scoring jobs wait for."""
    result = check_manifest(pl.read_parquet(manifest), dataset, requirements)
    io.write_json(result, summary)
    return result
