"""Reliability of the train-locked single prompts against the mean ensemble, per evaluation pair.

Scores (:func:`method_scores`): ``selected`` and ``random`` (the lock's prompts), ``mean`` (mean of
all prompts) and ``mean_<family>`` (mean of one family's prompts). Every choice comes from the lock
file; nothing is refit on the evaluation pair. Cross-pair summaries count wins: a challenger wins
a pair when it is strictly better (lower ECE / NLL / error, higher AUROC / AUPRC).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import metrics, smooth_ece
from prompt_reliability.analysis.lockfile import (
    LockMismatchError,
    check_lock,
    locked_scores,
    read_lock,
)
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import probabilities, split_rows
from prompt_reliability.data.prompts import prompts_by_family

LOWER_IS_BETTER = {"ece": True, "nll": True, "error": True, "auroc": False, "auprc": False,
                   "brier": True, "macro_ce": True, "mce": True, "smece": True}
RANKING_METRICS = ("auroc", "auprc")
# Comparisons counted in wins.csv: (challenger, baseline). Family means are added per config.
CALIBRATION_COMPARISONS = (("mean", "selected"), ("mean", "random"))
RANKING_COMPARISONS = (("mean_ens", "sel"), ("mean_ens", "rand"), ("mean_ens", "med15"), ("mean_ens", "mean15"), ("med15", "sel"))


def method_scores(rows: pl.DataFrame, lock: Mapping[str, Any], family_of: Mapping[str, str]) -> dict[str, np.ndarray]:
    """``selected, random, mean`` (:func:`lock.locked_scores`) and one ``mean_<family>`` per prompt family."""
    scores = locked_scores(rows, lock)
    for family, prompt_ids in prompts_by_family(family_of).items():
        scores[f"mean_{family}"] = probabilities(rows, prompt_ids).mean(axis=1)
    return scores


def reliability_table(matrix: pl.DataFrame, split: str, lock: Mapping[str, Any], family_of: Mapping[str, str],
                      n_bins: int = 15, eps: float = metrics.EPS, threshold: float = 0.5, source: str = "") -> pl.DataFrame:
    """One row per method: ``split, method, n``, the :func:`metrics.reliability_metrics` and ``smece`` (relplot's
    smooth ECE, :mod:`.smooth_ece`)."""
    check_lock(matrix, lock, source)
    rows = split_rows(matrix, split, source)
    y = rows["label"].to_numpy()
    return pl.DataFrame([
        {"split": split, "method": method, "n": len(y), **metrics.reliability_metrics(y, p, n_bins, eps, threshold),
         "smece": smooth_ece.smece(y, p)[0]}
        for method, p in method_scores(rows, lock, family_of).items()
    ])


def write_reliability(*, matrix: str, lock: str, table: str, model: str, dataset: str, split: str,
                      family_of: Mapping[str, str], analysis: Mapping[str, Any]) -> pl.DataFrame:
    full = pl.read_parquet(matrix)
    result = reliability_table(full, split, read_lock(lock, full), family_of, analysis["ece_bins"], analysis["eps"],
                               analysis["threshold"], source=f"{matrix} with {lock}")
    return _write_piece(result, table, model, dataset)


# --- ranking metrics against the distribution of single prompts (paper Table 6) ----------------


def ranking_distribution(per_prompt: pl.DataFrame, reliability: pl.DataFrame, lock: Mapping[str, Any],
                         metric_names: Sequence[str] = RANKING_METRICS) -> pl.DataFrame:
    """Per ranking metric: ``metric, k, sel, rand, min15, med15, mean15, max15, mean_ens, mean_beats``.

    ``per_prompt`` is one pair's per-prompt table and ``reliability`` its :func:`reliability_table`;
    ``mean_beats`` counts the single prompts the mean ensemble strictly outranks. The ``15`` in the
    column names is the paper's registry size; ``k`` is the number of prompts actually summarised.
    """
    prompts = per_prompt.filter(pl.col("prompt_id").is_in(lock["prompt_ids"]))
    if prompts.height != len(lock["prompt_ids"]):
        missing = sorted(set(lock["prompt_ids"]) - set(per_prompt["prompt_id"]))
        raise LockMismatchError(f"the per-prompt table lacks the lock's prompts {missing}; re-run per_prompt_metrics")
    by_method = dict(zip(reliability["method"], reliability.iter_rows(named=True)))
    by_prompt = dict(zip(prompts["prompt_id"], prompts.iter_rows(named=True)))
    records = []
    for name in metric_names:
        values = prompts[name].to_numpy()
        mean_ens = by_method["mean"][name]
        records.append({
            "metric": name,
            "k": len(values),
            "sel": by_prompt[lock["selected_prompt"]][name],
            "rand": by_prompt[lock["random_prompt"]][name],
            "min15": float(np.min(values)),
            "med15": float(np.median(values)),
            "mean15": float(np.mean(values)),
            "max15": float(np.max(values)),
            "mean_ens": mean_ens,
            "mean_beats": int(np.sum(_better(mean_ens, values, name))),
        })
    return pl.DataFrame(records)


def write_ranking_distribution(*, per_prompt: str, reliability: str, lock: str, table: str, model: str, dataset: str,
                               split: str) -> pl.DataFrame:
    result = ranking_distribution(pl.read_parquet(per_prompt), pl.read_parquet(reliability), read_lock(lock))
    return _write_piece(result.select(pl.lit(split).alias("split"), pl.all()), table, model, dataset)


# --- ECE under other binning schemes (paper Table 8) ------------------------------------------


def variant_name(variant: Mapping[str, Any]) -> str:
    return f"{variant['strategy']}-{variant['bins']}"


def ece_variants_table(matrix: pl.DataFrame, split: str, lock: Mapping[str, Any], variants: Sequence[Mapping[str, Any]],
                       source: str = "") -> pl.DataFrame:
    """Per binning variant: ``split, variant, strategy, bins, selected, mean, gain`` (gain = selected - mean ECE)."""
    check_lock(matrix, lock, source)
    rows = split_rows(matrix, split, source)
    y = rows["label"].to_numpy()
    scores = locked_scores(rows, lock)
    records = []
    for variant in variants:
        ece = {m: metrics.ece(y, scores[m], variant["bins"], variant["strategy"]) for m in ("selected", "mean")}
        records.append({"split": split, "variant": variant_name(variant), "strategy": variant["strategy"], "bins": variant["bins"],
                        **ece, "gain": ece["selected"] - ece["mean"]})
    return pl.DataFrame(records)


def write_ece_variants(*, matrix: str, lock: str, table: str, model: str, dataset: str, split: str,
                       analysis: Mapping[str, Any]) -> pl.DataFrame:
    full = pl.read_parquet(matrix)
    result = ece_variants_table(full, split, read_lock(lock, full), analysis["ece_variants"], source=f"{matrix} with {lock}")
    return _write_piece(result, table, model, dataset)


def ece_variants_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per variant across pairs: ``variant, strategy, bins, pairs, mean_improves, avg_gain``."""
    return table.group_by("variant", "strategy", "bins", maintain_order=True).agg(
        pl.len().alias("pairs"),
        (pl.col("gain") > 0).sum().alias("mean_improves"),
        pl.col("gain").mean().alias("avg_gain"),
    )


def write_ece_variants_summary(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(ece_variants_summary(pl.read_parquet(table)), summary, csv, md,
                              "Mean vs selected ECE under each binning variant")


# --- win counts across pairs (paper Tables 1, 6, 7) -------------------------------------------

PAIR = ["model", "dataset", "split"]


def _better(challenger, baseline, metric: str):
    return challenger < baseline if LOWER_IS_BETTER[metric] else challenger > baseline


def _count(wide: pl.DataFrame, challenger: str, baseline: str, metric: str) -> dict[str, Any]:
    """Wins / ties / losses of column ``challenger`` over ``baseline``; pairs where either is NaN are left out."""
    a, b = wide[challenger].to_numpy().astype(np.float64), wide[baseline].to_numpy().astype(np.float64)
    defined = ~(np.isnan(a) | np.isnan(b))
    a, b = a[defined], b[defined]
    gain = (b - a) if LOWER_IS_BETTER[metric] else (a - b)
    return {"challenger": challenger, "baseline": baseline, "metric": metric, "wins": int(np.sum(gain > 0)),
            "ties": int(np.sum(gain == 0)), "losses": int(np.sum(gain < 0)), "pairs": int(defined.sum()),
            "mean_gain": float(np.mean(gain)) if len(gain) else float("nan")}


def win_counts(reliability: pl.DataFrame, ranking: pl.DataFrame) -> pl.DataFrame:
    """``challenger, baseline, metric, wins, ties, losses, pairs, mean_gain`` (gain > 0: challenger better).

    NLL, ECE and smooth ECE: the mean and each family mean against the selected and random prompts (from
    ``reliability.csv``). AUROC and AUPRC: the mean ensemble against Sel, Rand, Med15 and Mean15,
    and Med15 against Sel (from ``ranking_distribution.csv``).
    """
    records = []
    family_means = [m for m in reliability["method"].unique(maintain_order=True) if m.startswith("mean_")]
    for metric in ("nll", "ece", *(["smece"] if "smece" in reliability.columns else [])):
        wide = reliability.pivot(on="method", index=PAIR, values=metric)
        comparisons = list(CALIBRATION_COMPARISONS) + [(m, "selected") for m in family_means]
        records.extend(_count(wide, c, b, metric) for c, b in comparisons)
    for metric in RANKING_METRICS:
        wide = ranking.filter(pl.col("metric") == metric)
        records.extend(_count(wide, c, b, metric) for c, b in RANKING_COMPARISONS)
    return pl.DataFrame(records)


def write_wins(*, reliability: str, ranking: str, wins: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(win_counts(pl.read_parquet(reliability), pl.read_parquet(ranking)), wins, csv, md,
                              "Win counts across evaluation pairs")


def method_deltas(reliability: pl.DataFrame, challenger: str = "mean", baseline: str = "selected",
                  metric_names: Sequence[str] = ("ece", "nll", "auroc", "auprc")) -> pl.DataFrame:
    """Per pair and metric: ``delta`` = challenger - baseline and ``better`` (the challenger wins the pair)."""
    frames = []
    for metric in metric_names:
        wide = reliability.pivot(on="method", index=PAIR, values=metric)
        delta = wide[challenger] - wide[baseline]
        frames.append(wide.select(*PAIR, pl.lit(metric).alias("metric"), delta.alias("delta"),
                                  _better(wide[challenger], wide[baseline], metric).alias("better")))
    return pl.concat(frames)


# --- reliability diagrams ---------------------------------------------------------------------


def calibration_curve(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> pl.DataFrame:
    """Equal-width bins on p (the ECE bins): ``bin, lower, upper, count, mean_p, frac_unsafe`` (NaN when empty)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    bins = metrics.equal_width_bins(p, n_bins)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(bins, weights=p, minlength=n_bins) / count
        frac = np.bincount(bins, weights=y, minlength=n_bins) / count
    edges = np.arange(n_bins + 1) / n_bins
    return pl.DataFrame({"bin": np.arange(n_bins), "lower": edges[:-1], "upper": edges[1:], "count": count.astype(np.int64),
                         "mean_p": mean_p, "frac_unsafe": frac})


def calibration_curves(matrix: pl.DataFrame, split: str, lock: Mapping[str, Any], n_bins: int = 15,
                       methods: Sequence[str] = ("selected", "mean"), source: str = "") -> pl.DataFrame:
    """:func:`calibration_curve` of each locked method on one split, with a ``method`` column first."""
    check_lock(matrix, lock, source)
    rows = split_rows(matrix, split, source)
    y = rows["label"].to_numpy()
    scores = locked_scores(rows, lock)
    return pl.concat([calibration_curve(y, scores[m], n_bins).select(pl.lit(m).alias("method"), pl.all()) for m in methods])


def _write_piece(piece: pl.DataFrame, table: str, model: str, dataset: str) -> pl.DataFrame:
    piece = tables.label_pair(piece, model, dataset)
    io.write_parquet(piece, table)
    return piece
