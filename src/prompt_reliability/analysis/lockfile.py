"""The lock contract: what was chosen or fit on the lock split, read back through one validating function.

``lock/{model}.json`` (plain JSON, written by :mod:`lock`): ``model``, ``lock: {dataset, split}``,
``n``, ``unsafe_rate``, ``prompt_ids`` (registry order), ``selected_prompt``, ``random_prompt``,
``random_seed``, ``prompt_order`` (every prompt, best first) and ``per_prompt`` (lock-split
nll/ece/error), ``calibrators`` and (optional) ``family_selected`` (family -> its lock-split best prompt). Every analysis reads it with :func:`read_lock`, which checks
these fields and, given the score matrix, that both come from the same prompts.
See docs/architecture.md, "Lock".
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.base import io
from prompt_reliability.data.matrix import probabilities, prompt_columns

REQUIRED_FIELDS = ("model", "lock", "prompt_ids", "selected_prompt", "random_prompt", "prompt_order", "per_prompt", "calibrators")


class LockMismatchError(ValueError):
    """The lock file is malformed or disagrees with the score matrix; the message names both and the fix."""


def validate_lock(lock: Mapping[str, Any], source: str = "") -> None:
    """Raise :class:`LockMismatchError` unless ``lock`` has every field and its prompt choices are among its prompts."""
    missing = [field for field in REQUIRED_FIELDS if field not in lock]
    if missing:
        raise LockMismatchError(f"{source}: lock file lacks field(s) {missing}; re-run the lock rule (delete the file)")
    prompts = list(lock["prompt_ids"])
    for field in ("selected_prompt", "random_prompt"):
        if lock[field] not in prompts:
            raise LockMismatchError(f"{source}: lock field {field!r} is {lock[field]!r}, not one of prompt_ids {prompts}; "
                                    "re-run the lock rule")
    for family, pid in (lock.get("family_selected") or {}).items():
        if pid not in prompts:
            raise LockMismatchError(f"{source}: lock field 'family_selected' names {pid!r} for family {family!r}, "
                                    f"not one of prompt_ids {prompts}; re-run the lock rule")
    if sorted(lock["prompt_order"]) != sorted(prompts):
        raise LockMismatchError(f"{source}: lock field 'prompt_order' is not a permutation of prompt_ids; re-run the lock rule")


def check_lock(matrix: pl.DataFrame, lock: Mapping[str, Any], source: str = "") -> None:
    """The lock must have been built on the matrix's prompts."""
    if set(prompt_columns(matrix)) != set(lock["prompt_ids"]):
        raise LockMismatchError(
            f"{source}: the lock of model {lock.get('model')!r} lists prompts {lock['prompt_ids']} but the matrix has "
            f"{prompt_columns(matrix)}; re-run the lock rule so both come from the same prompt registry"
        )


def read_lock(path: str | Path, matrix: pl.DataFrame | None = None) -> dict[str, Any]:
    """The lock at ``path``, validated (and checked against ``matrix`` when given)."""
    lock = io.read_json(path)
    validate_lock(lock, str(path))
    if matrix is not None:
        check_lock(matrix, lock, str(path))
    return lock


def locked_scores(rows: pl.DataFrame, lock: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The train-locked single-prompt scores and the mean ensemble on ``rows``."""
    p = probabilities(rows, lock["prompt_ids"])
    column = {pid: k for k, pid in enumerate(lock["prompt_ids"])}
    return {
        "selected": p[:, column[lock["selected_prompt"]]],
        "random": p[:, column[lock["random_prompt"]]],
        "mean": p.mean(axis=1),
    }


def family_selected_prompts(lock: Mapping[str, Any], family_of: Mapping[str, str]) -> dict[str, str]:
    """Each family's lock-split selected prompt: the lock's ``family_selected`` when it has one, else the family's
    first prompt in ``prompt_order`` (the same ranking restricted to the family)."""
    stored = lock.get("family_selected")
    best: dict[str, str] = {}
    for pid in lock["prompt_order"]:
        best.setdefault(family_of[pid], pid)
    chosen = {f: best[f] for f in dict.fromkeys(family_of.values())}  # registry order of families
    if stored:
        missing = sorted(set(chosen) - set(stored))
        if missing:
            raise LockMismatchError(f"the lock of model {lock.get('model')!r} has no family_selected prompt for "
                                    f"famil(ies) {missing}; re-run the lock rule")
        wrong = {f: p for f, p in stored.items() if f in chosen and family_of.get(p) != f}
        if wrong:
            raise LockMismatchError(f"lock field 'family_selected' names prompts of other families: {wrong}; "
                                    "re-run the lock rule")
        return {f: stored[f] for f in chosen}
    return chosen
