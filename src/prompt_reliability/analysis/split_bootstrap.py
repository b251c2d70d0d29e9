"""Rule ``bootstrap``: one evaluation split, every model, one stream of resamples.

Every model evaluated on a (dataset, split) is scored on the same samples, and the bootstrap's seed
is one setting, so the models' resamples were always the same ones; drawing and counting them is
most of a bootstrap's cost (about two thirds at 64,000 samples). This job draws them once and, per
model, computes on them:

- the bootstrap table's piece (:mod:`.bootstrap`: selected - mean NLL / ECE / smooth-ECE deltas
  with their CIs, at every prevalence);
- the trust table's piece (:mod:`.trust`: label mass, and the AUROC of the mean with its CI on the
  first ``analysis.trust.resamples`` resamples).

Each model's numbers are those of a bootstrap of that model alone with the same settings (a test
checks it). Models whose split holds other samples (e.g. imported scores for a subset) get a
stream of their own, as they would alone.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import bootstrap, metrics, trust
from prompt_reliability.analysis.lockfile import locked_scores, read_lock
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import split_rows

log = logging.getLogger("prompt_reliability")


def write_split_bootstrap(*, matrices: Sequence[str], locks: Sequence[str], manifest: str, caches: Sequence[str],
                          tables_out: Sequence[str], trusts: Sequence[str], models: Sequence[str], dataset: str,
                          split: str, analysis: Mapping[str, Any]) -> None:
    """Write each model's bootstrap and trust pieces (``tables_out[k]``, ``trusts[k]`` for ``models[k]``;
    ``caches``: every model's score caches of the dataset, model by model, as many per model)."""
    settings = analysis["bootstrap"]
    unit = settings["unit"]
    per_model_caches = len(caches) // len(models)
    pairs = []
    for k, (matrix, lock) in enumerate(zip(matrices, locks)):
        full = pl.read_parquet(matrix)
        rows = split_rows(full, split, matrix)
        pairs.append((k, rows, locked_scores(rows, read_lock(lock, full))))
    key_frame = None if bootstrap.UNITS[unit] is None else pl.read_parquet(manifest, columns=["sample_id", bootstrap.UNITS[unit]])
    streams: dict[tuple[str, ...], list] = {}  # models on the same samples, in the same order, share resamples
    for pair in pairs:
        streams.setdefault(tuple(pair[1]["sample_id"].to_list()), []).append(pair)
    for members in streams.values():
        rows = members[0][1]
        y = rows["label"].to_numpy()
        clusters = None if key_frame is None else bootstrap.sample_clusters(rows, key_frame, unit, manifest)
        draws = bootstrap.bootstrap_score_sets(
            y, [np.stack([scores["selected"], scores["mean"]]) for _, _, scores in members], settings["prevalences"],
            n_resamples=settings["resamples"], seed=settings["seed"], chunk_size=settings["chunk_size"],
            n_bins=analysis["ece_bins"], eps=analysis["eps"], smece_resamples=settings["smece_resamples"],
            clusters=clusters,
            extra=[[(metrics.CountedAUROC(y, scores["mean"]), analysis["trust"]["resamples"])]
                   for _, _, scores in members],
            desc=f"{dataset}/{split}: {len(members)} model(s), {len(y)} samples")
        n_units = bootstrap.unit_count(clusters, len(y))
        for (k, _, scores), drawn in zip(members, draws):
            deltas = bootstrap.delta_table(drawn, settings["prevalences"], n_resamples=settings["resamples"],
                                           confidence=settings["confidence"], unit=unit, n_clusters=n_units)
            io.write_parquet(tables.label_pair(deltas, models[k], dataset, split), tables_out[k])
            auroc = trust.auroc_interval(metrics.auroc(y, scores["mean"]), drawn.extra[0], settings["confidence"])
            model_caches = [pl.read_parquet(c, columns=["sample_id", "prompt_id", "label_mass"])
                            for c in caches[k * per_model_caches:(k + 1) * per_model_caches]]
            row = trust.trust_row(y, model_caches, rows["sample_id"], auroc)
            io.write_parquet(trust.trust_piece(row, models[k], dataset, split), trusts[k])
            log.info("%s: bootstrap and trust rows of %s/%s written", models[k], dataset, split)
