"""The within-family view (paper Table 7): the analysis repeated using only one family's 5 prompts.

In that view the selected prompt is the lock-split best of the family's own prompts (lock field
``family_selected``), so each family's mean is compared with its family-local selected prompt
(``view = within``). The comparison with the prompt selected from all prompts is kept as its own,
labelled row (``view = global``).

Per-pair piece ``family_view``: ``family, method, prompt_id, n, ece, nll, auroc, auprc, error, brier,
macro_ce, mce`` with methods ``mean`` (the family's mean), ``selected_family`` (its family-local
selected prompt) and ``selected_global`` (the lock's selected prompt, the same on every family).
Summary ``family_wins``: ``family, view, challenger, baseline, metric, wins, ties, losses, pairs,
mean_gain`` (gain > 0: the family mean is better).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis.lockfile import family_selected_prompts, locked_scores, read_lock
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import probabilities, split_rows
from prompt_reliability.data.prompts import prompts_by_family

PAIR = ["model", "dataset", "split"]
VIEWS = {"within": "selected_family", "global": "selected_global"}
METRICS = ("nll", "ece", "auroc", "auprc")
LOWER_IS_BETTER = {"nll": True, "ece": True, "auroc": False, "auprc": False}


def family_view_table(rows: pl.DataFrame, lock: Mapping[str, Any], family_of: Mapping[str, str], n_bins: int = 15,
                      eps: float = metrics.EPS, threshold: float = 0.5) -> pl.DataFrame:
    """Per family: its mean, its family-local selected prompt and the global selected prompt, on ``rows``."""
    y = rows["label"].to_numpy()
    chosen = family_selected_prompts(lock, family_of)
    glob = locked_scores(rows, lock)["selected"]
    records = []
    for family, prompt_ids in prompts_by_family(family_of).items():
        scores = {"mean": (None, probabilities(rows, prompt_ids).mean(axis=1)),
                  "selected_family": (chosen[family], probabilities(rows, [chosen[family]])[:, 0]),
                  "selected_global": (lock["selected_prompt"], glob)}
        for method, (pid, p) in scores.items():
            records.append({"family": family, "method": method, "prompt_id": pid, "n": len(y),
                            **metrics.reliability_metrics(y, p, n_bins, eps, threshold)})
    return pl.DataFrame(records)


def write_family_view(*, matrix: str, lock: str, table: str, model: str, dataset: str, split: str,
                      family_of: Mapping[str, str], analysis: Mapping[str, Any]) -> pl.DataFrame:
    full = pl.read_parquet(matrix)
    rows = split_rows(full, split, matrix)
    piece = family_view_table(rows, read_lock(lock, full), family_of, analysis["ece_bins"], analysis["eps"],
                              analysis["threshold"])
    piece = tables.label_pair(piece, model, dataset, split)
    io.write_parquet(piece, table)
    return piece


def family_wins(table: pl.DataFrame) -> pl.DataFrame:
    """Per family, view and metric: pairs where the family mean beats the view's selected prompt."""
    records = []
    for family in table["family"].unique(maintain_order=True).to_list():
        rows = table.filter(pl.col("family") == family)
        for view, baseline in VIEWS.items():
            for metric in METRICS:
                wide = rows.pivot(on="method", index=PAIR, values=metric)
                a = wide["mean"].to_numpy().astype(np.float64)
                b = wide[baseline].to_numpy().astype(np.float64)
                defined = ~(np.isnan(a) | np.isnan(b))
                gain = (b - a)[defined] if LOWER_IS_BETTER[metric] else (a - b)[defined]
                records.append({"family": family, "view": view, "challenger": f"mean_{family}", "baseline": baseline,
                                "metric": metric, "wins": int(np.sum(gain > 0)), "ties": int(np.sum(gain == 0)),
                                "losses": int(np.sum(gain < 0)), "pairs": int(defined.sum()),
                                "mean_gain": float(np.mean(gain)) if len(gain) else float("nan")})
    return pl.DataFrame(records)


def write_family_wins(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(family_wins(pl.read_parquet(table)), summary, csv, md,
                              "Within-family view: each family's mean vs its own and the global selected prompt")
