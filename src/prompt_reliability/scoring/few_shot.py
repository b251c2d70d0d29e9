"""Few-shot demonstrations (issue 14): lock-split samples shown as earlier chat turns.

A ``k``-shot variant shows ``k`` safe and ``k`` unsafe lock-split samples (image + query rendered
with one fixed instruction template, answered with the correct label token) before the scored
sample. The demonstrations are drawn once, seeded: the safe and the unsafe lock samples are each
put in a seeded order and the first ``k`` of each are taken, in a seeded interleaving. A scored
sample is never its own demonstration: when it is among the drawn ones (scoring the lock split
itself), the next sample of the same label in the seeded order replaces it. Only rows of the lock
split are ever read, so evaluation labels cannot leak into the prompt.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl


class FewShotError(ValueError):
    """A few-shot request does not fit the data; the message names the config key and the fix."""


@dataclass(frozen=True)
class Demonstration:
    sample_id: str
    label: int
    query: str
    image_path: str


@dataclass(frozen=True)
class DemonstrationPlan:
    """Seeded orders of the lock split's safe and unsafe samples and the label order of the k pairs."""

    safe: tuple[Demonstration, ...]
    unsafe: tuple[Demonstration, ...]
    label_order: tuple[int, ...]  # 2k labels (0/1): which kind each demonstration slot takes
    shots: int

    def for_sample(self, sample_id: str) -> list[Demonstration]:
        pools = {0: [d for d in self.safe if d.sample_id != sample_id][: self.shots],
                 1: [d for d in self.unsafe if d.sample_id != sample_id][: self.shots]}
        taken = {0: 0, 1: 0}
        out = []
        for label in self.label_order:
            out.append(pools[label][taken[label]])
            taken[label] += 1
        return out

    @property
    def default_ids(self) -> list[str]:
        return [d.sample_id for d in self.for_sample("")]


def plan_demonstrations(manifest: pl.DataFrame, split: str, shots: int, seed: int, source: str = "") -> DemonstrationPlan:
    """The seeded demonstration plan from the lock-split rows of ``manifest``."""
    if shots < 1:
        raise FewShotError(f"{source}: few-shot 'shots' must be >= 1, got {shots}")
    rows = manifest.filter(pl.col("split") == split).sort("sample_id")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), shots]))
    pools = {}
    for label in (0, 1):
        part = rows.filter(pl.col("label") == label)
        # one spare, so that a scored lock sample can be replaced by the next one
        if part.height < shots + 1:
            raise FewShotError(f"{source}: the lock split {split!r} has {part.height} {'unsafe' if label else 'safe'} samples; "
                               f"{shots}-shot needs at least {shots + 1}")
        order = rng.permutation(part.height)
        pools[label] = tuple(Demonstration(str(r["sample_id"]), int(r["label"]), str(r["query"] or ""), str(r["image_path"] or ""))
                             for r in (part.row(int(i), named=True) for i in order))
    label_order = tuple(int(v) for v in rng.permutation([0] * shots + [1] * shots))
    return DemonstrationPlan(pools[0], pools[1], label_order, shots)


def few_shot_provenance(plan: DemonstrationPlan, sample_ids: Sequence[str], settings: Mapping[str, Any],
                        manifest_hash: str) -> dict[str, Any]:
    """What the cache metadata records: the default demonstration ids and each scored sample's replacements."""
    default = plan.default_ids
    substituted = {s: ids for s in sample_ids if (ids := [d.sample_id for d in plan.for_sample(s)]) != default}
    return {"shots": plan.shots, "seed": int(settings.get("seed", 0)), "split": settings["split"],
            "lock_manifest": str(settings["manifest"]), "lock_manifest_hash": manifest_hash,
            "template_hash": hashlib.sha256(str(settings["template"]).encode()).hexdigest()[:16],
            "demonstration_ids": default, "substituted": substituted}
