"""Training-free aggregation rules: one unsafe probability per sample from its K prompt-level scores.

Every rule maps ``p`` (n x K probabilities, columns = prompts) and ``z = logit(clip(p, eps, 1 - eps))``
to n probabilities. Rules are registered by name in :data:`RULES` (registration order = report order);
adding a rule is one decorated function::

    @register("my_rule")
    def my_rule(p, z):
        return ...

The prompt-wise logit corrections use label-free statistics of the evaluated samples' own logits:
``mu_k``, ``sd_k`` = mean and standard deviation of ``z[:, k]`` over samples (ddof 0; the ddof cancels
because only the ratio ``sd / sd_k`` enters), pooled targets ``mu = mean_k mu_k``, ``sd = mean_k sd_k``.

``mean_logit_uniform`` is ``mean_logit`` computed through the weighted-average path with uniform
weights; :func:`aggregation_sweep` checks that both give identical scores (:data:`TWINS`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import polars as pl
from scipy.special import entr, expit, logit

from prompt_reliability.analysis import metrics
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import probabilities, split_rows

Rule = Callable[[np.ndarray, np.ndarray], np.ndarray]
RULES: dict[str, Rule] = {}
# rule -> the rule it must reproduce exactly (a built-in self-check of the sweep)
TWINS = {"mean_logit_uniform": "mean_logit"}
SHRINK_LAMBDAS = (0.9, 0.75, 0.5, 0.25, 0.1)
METRICS = ("nll", "ece", "auroc", "auprc")
PAIR = ("model", "dataset", "split")


class AggregationError(ValueError):
    """A rule cannot be computed on this input, or the sweep's self-check failed."""


def register(name: str) -> Callable[[Rule], Rule]:
    """Decorator: add ``rule(p, z) -> scores`` to :data:`RULES` under ``name``."""
    def add(rule: Rule) -> Rule:
        if name in RULES:
            raise ValueError(f"aggregation rule {name!r} is registered twice")
        RULES[name] = rule
        return rule
    return add


def logits(p: np.ndarray, eps: float = metrics.EPS) -> np.ndarray:
    """``logit(p)`` with p clipped to [eps, 1 - eps], as a C-contiguous float64 array."""
    return np.ascontiguousarray(logit(np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)))


def weighted_mean(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Row-wise weighted mean, weights renormalised per row (rows of all-zero weights: uniform)."""
    weights = np.broadcast_to(np.asarray(weights, dtype=np.float64), values.shape)
    total = weights.sum(axis=1, keepdims=True)
    weights = np.where(total > 0, weights, 1.0)
    return (values * weights).sum(axis=1) / weights.sum(axis=1)


def _trimmed(values: np.ndarray) -> np.ndarray:
    if values.shape[1] < 3:
        raise AggregationError(f"trimmed rules drop the highest and lowest of K scores and need K >= 3 prompts, got K = {values.shape[1]}; "
                               "add prompt families under config key 'prompts'")
    return np.sort(values, axis=1)[:, 1:-1].mean(axis=1)


def bias_corrected(z: np.ndarray) -> np.ndarray:
    """``z' = z - mu_k + mu``: every prompt's logits shifted to the pooled mean."""
    mu_k = z.mean(axis=0)
    return z - mu_k + mu_k.mean()


def bias_scale_corrected(z: np.ndarray) -> np.ndarray:
    """``z'' = (z - mu_k) / sd_k * sd + mu``; a prompt with sd_k = 0 contributes ``mu``."""
    mu_k = z.mean(axis=0)
    sd_k = z.std(axis=0)
    standardised = np.divide(z - mu_k, sd_k, out=np.zeros_like(z), where=sd_k > 0)
    return standardised * sd_k.mean() + mu_k.mean()


# probability space
@register("mean")
def mean(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return p.mean(axis=1)


@register("trimmed_mean")
def trimmed_mean(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return _trimmed(p)


@register("median_prob")
def median_prob(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.median(p, axis=1)


@register("entropy_weighted_mean")
def entropy_weighted_mean(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Weights ``1 - H(p_k) / log 2`` (binary entropy in nats; 1 at p = 0 or 1, 0 at p = 0.5)."""
    entropy = entr(p) + entr(1.0 - p)
    return weighted_mean(p, np.clip(1.0 - entropy / np.log(2.0), 0.0, 1.0))


# logit space
@register("mean_logit")
def mean_logit(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return expit(z.mean(axis=1))


@register("mean_logit_uniform")
def mean_logit_uniform(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return expit(weighted_mean(z, np.ones(z.shape[1])))


@register("trimmed_logit_mean")
def trimmed_logit_mean(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return expit(_trimmed(z))


@register("median_logit")
def median_logit(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return expit(np.median(z, axis=1))


# prompt-wise logit corrections (label-free, statistics of the evaluated samples)
@register("bias_corrected_logit_mean")
def bias_corrected_logit_mean(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return expit(bias_corrected(z).mean(axis=1))


@register("bias_scale_logit_mean")
def bias_scale_logit_mean(p: np.ndarray, z: np.ndarray) -> np.ndarray:
    return expit(bias_scale_corrected(z).mean(axis=1))


def bias_scale_shrink(p: np.ndarray, z: np.ndarray, lam: float) -> np.ndarray:
    """``lam * z'' + (1 - lam) * z``: lam = 1 is the bias+scale mean, lam = 0 the mean logit."""
    return expit((lam * bias_scale_corrected(z) + (1.0 - lam) * z).mean(axis=1))


for _lam in SHRINK_LAMBDAS:
    register(f"bias_scale_shrink_{_lam}")(partial(bias_scale_shrink, lam=_lam))


def aggregate(p: np.ndarray, eps: float = metrics.EPS, rules: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Scores of every rule (default: all registered) on the n x K matrix ``p``."""
    p = np.asarray(p, dtype=np.float64)  # layout kept: 'mean' is bit-identical to lock.locked_scores' mean
    z = logits(p, eps)
    names = list(RULES) if rules is None else list(rules)
    unknown = [name for name in names if name not in RULES]
    if unknown:
        raise AggregationError(f"unknown aggregation rules {unknown}; registered: {list(RULES)}")
    return {name: RULES[name](p, z) for name in names}


def aggregation_sweep(y: np.ndarray, p: np.ndarray, n_bins: int = 15, eps: float = metrics.EPS) -> pl.DataFrame:
    """One row per rule: ``rule, nll, ece, auroc, auprc``; fails if a twin rule differs from its original."""
    scores = aggregate(p, eps)
    for twin, original in TWINS.items():
        if not np.array_equal(scores[twin], scores[original]):
            worst = float(np.max(np.abs(scores[twin] - scores[original])))
            raise AggregationError(f"self-check failed: rule {twin!r} must equal {original!r} exactly, max difference {worst:.3g}")
    records = []
    for name, score in scores.items():
        values = metrics.reliability_metrics(y, score, n_bins=n_bins, eps=eps)
        records.append({"rule": name, **{m: values[m] for m in METRICS}})
    return pl.DataFrame(records, schema={"rule": pl.String, **{m: pl.Float64 for m in METRICS}})


def write_aggregation(*, matrix: str, table: str, model: str, dataset: str, split: str, prompt_ids: Sequence[str],
                      analysis: Mapping[str, Any]) -> pl.DataFrame:
    """The sweep of one evaluation pair as ``model, dataset, split, rule, nll, ece, auroc, auprc``."""
    rows = split_rows(pl.read_parquet(matrix), split, matrix)
    sweep = aggregation_sweep(rows["label"].to_numpy(), probabilities(rows, prompt_ids), analysis["ece_bins"], analysis["eps"])
    sweep = tables.label_pair(sweep, model, dataset, split)
    io.write_parquet(sweep, table)
    return sweep


def aggregation_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per rule across pairs: NLL wins (NLL equal to the pair's minimum; ties all win) and the
    average NLL rank (:func:`metrics.average_ranks`: ties share the mean rank, 1 = best); sorted by wins, then rank.

    Values equal within a relative :data:`metrics.RANK_RTOL` (1e-12) are ties (:func:`metrics.snap_ties`),
    so algebraically identical rules (e.g. ``bias_corrected_logit_mean`` and ``mean_logit``) always
    get the same wins and rank, whatever their last bits."""
    missing = [c for c in (*PAIR, "rule", "nll") if c not in table.columns]
    if missing:
        raise AggregationError(f"aggregation table lacks columns {missing}")
    rules = table["rule"].unique(maintain_order=True).to_list()
    wide = table.pivot(on="rule", index=list(PAIR), values="nll").select(rules)
    if wide.null_count().sum_horizontal().item():
        raise AggregationError("aggregation table: every pair must report every rule")
    nll = wide.to_numpy().astype(np.float64)  # pairs x rules
    snapped = np.vstack([metrics.snap_ties(row) for row in nll]) if len(nll) else nll
    wins = (snapped == snapped.min(axis=1, keepdims=True)).sum(axis=0)
    ranks = metrics.average_ranks(snapped, axis=1).mean(axis=0)
    summary = pl.DataFrame({
        "rule": rules,
        "n_pairs": [nll.shape[0]] * len(rules),
        "nll_wins": wins.astype(np.int64),
        "avg_nll_rank": ranks,
        "mean_nll": nll.mean(axis=0),
        "_order": np.arange(len(rules)),
    })
    return summary.sort(["nll_wins", "avg_nll_rank", "_order"], descending=[True, False, False]).drop("_order")


def write_aggregation_summary(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(aggregation_summary(pl.read_parquet(table)), summary, csv, md, "aggregation_summary")
