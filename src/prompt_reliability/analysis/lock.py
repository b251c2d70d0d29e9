"""Choices locked on the lock split only, then applied to every evaluation pair unchanged.

Builds the lock file whose contract and reader live in :mod:`lockfile`: the selected prompt
(minimum lock-split NLL; ties by ECE, then error, then registry order), the random prompt
(``prompt_ids[default_rng(seed).integers(K)]``), the prompt order, the calibrators and, per family, the
family-local selected prompt (``family_selected``: the same ranking restricted to the family's prompts).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import calibration, metrics
from prompt_reliability.analysis.lockfile import locked_scores
from prompt_reliability.base import io
from prompt_reliability.data.matrix import probabilities, split_rows

log = logging.getLogger("prompt_reliability")


def rank_prompts(y: np.ndarray, p: np.ndarray, prompt_ids: Sequence[str], n_bins: int = 15, eps: float = metrics.EPS,
                 threshold: float = 0.5) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Prompt ids sorted by (NLL, ECE, error, registry order) and each prompt's lock metrics."""
    scores = {
        pid: {"nll": metrics.nll(y, p[:, k], eps), "ece": metrics.ece(y, p[:, k], n_bins), "error": metrics.error_rate(y, p[:, k], threshold)}
        for k, pid in enumerate(prompt_ids)
    }
    order = sorted(range(len(prompt_ids)), key=lambda k: (scores[prompt_ids[k]]["nll"], scores[prompt_ids[k]]["ece"], scores[prompt_ids[k]]["error"], k))
    return [prompt_ids[k] for k in order], scores


def random_prompt(prompt_ids: Sequence[str], seed: int) -> str:
    return prompt_ids[int(np.random.default_rng(seed).integers(len(prompt_ids)))]


def family_selected(order: Sequence[str], family_of: Mapping[str, str]) -> dict[str, str]:
    """The lock-split best prompt of each family: the family's first prompt in ``order`` (the same ranking as
    ``selected_prompt``, restricted to the family's own prompts; the paper's within-family view, Table 7)."""
    best: dict[str, str] = {}
    for pid in order:
        best.setdefault(family_of[pid], pid)
    return best


def build_lock(matrix: pl.DataFrame, *, model: str, dataset: str, split: str, prompt_ids: Sequence[str],
               analysis: Mapping[str, Any], source: str = "", family_of: Mapping[str, str] | None = None) -> dict[str, Any]:
    rows = split_rows(matrix, split, source)
    y = rows["label"].to_numpy()
    p = probabilities(rows, prompt_ids)
    order, per_prompt = rank_prompts(y, p, list(prompt_ids), analysis["ece_bins"], analysis["eps"], analysis["threshold"])
    lock = {
        "model": model,
        "lock": {"dataset": dataset, "split": split},
        "n": int(len(y)),
        "unsafe_rate": float(np.mean(y)),
        "prompt_ids": list(prompt_ids),
        "selected_prompt": order[0],
        "random_prompt": random_prompt(list(prompt_ids), analysis["seed"]),
        "random_seed": analysis["seed"],
        "prompt_order": order,
        "per_prompt": per_prompt,
        "calibrators": {},
    }
    if family_of is not None:
        lock["family_selected"] = family_selected(order, family_of)
    lock["calibrators"] = calibration.fit_calibrators(
        locked_scores(rows, lock), y, eps=analysis["eps"], source=f"{source} ({dataset}/{split})",
        temperature_bounds=analysis["temperature_bounds"])
    return lock


def write_lock(*, matrix: str, lock: str, model: str, dataset: str, split: str, prompt_ids: Sequence[str],
               analysis: Mapping[str, Any], family_of: Mapping[str, str] | None = None) -> dict[str, Any]:
    built = build_lock(pl.read_parquet(matrix), model=model, dataset=dataset, split=split, prompt_ids=prompt_ids,
                       analysis=analysis, source=matrix, family_of=family_of)
    io.write_json(built, lock)
    log.info("selected %s, random %s", built["selected_prompt"], built["random_prompt"])
    return built
