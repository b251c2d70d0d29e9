"""Per-sample bootstrap of mean-vs-selected NLL / ECE deltas under prevalence reweighting.

Definitions (paper Appendices F and G; smooth ECE added by this project):

- ``delta = metric(selected) - metric(mean)`` for NLL and equal-width ECE; positive = the mean is better.
- B resamples of the n samples with replacement (``numpy.random.default_rng(seed)``); the point
  estimate is on the original sample, the CI is the percentile interval of the resampled deltas and
  the two-sided p-value is ``min(1, 2 * min(P*(delta <= 0), P*(delta >= 0)))``.
- ``smece``: the selected - mean smooth ECE (relplot, :mod:`.smooth_ece`), at native prevalence
  only (relplot has no sample weights) and on the first ``smece_resamples`` of the same resamples
  (paired with NLL and ECE); each score's bandwidth is held at its point estimate's sigma*
  (``ci_method`` says so).
- Resampling unit (``analysis.bootstrap.unit``, :mod:`.resampling`): ``sample`` (independent),
  or ``image`` / ``pair_id`` (clusters of samples sharing an image or a look-alike pair, drawn
  whole; samples without the key are their own cluster). Clustered, the design matrix's rows are
  summed per cluster first, so a resample is a count vector over clusters and costs less. The table
  names the unit and the number of clusters (``unit``, ``clusters``).
- Prevalence ``pi`` (native prevalence ``pi0``): unsafe samples weigh ``pi / pi0``, safe samples
  ``(1 - pi) / (1 - pi0)``; ``native`` weighs every sample 1. Weighted NLL = ``sum w nll / sum w``;
  weighted ECE uses weighted bin counts, mean labels and mean probabilities. Resamples carry the
  weights of the samples they draw.

How it is fast. Every metric here is a ratio of weighted sums over samples::

    NLL = sum_i w_i nll_i / sum_i w_i
    ECE = sum_b |sum_{i in b} w_i (y_i - p_i)| / sum_i w_i

(in a bin, ``W_b * |mean_w(y) - mean_w(p)| = |sum w y - sum w p|``). A resample is a count vector
``c`` (how often each sample was drawn), so its sums are ``c @ X`` for one fixed n x m *design
matrix* ``X`` with a column per sum: per score, the per-sample NLL, one residual column per bin
(the per-bin indicator matrix times ``y - p``) and a count column. The weights are constant within
a class, so ``X`` holds these columns once per class and a weighted sum is ``w_unsafe * (unsafe
sum) + w_safe * (safe sum)``: one resampling serves every prevalence. The B resamples are the
B x n count matrix ``C`` and all their sums are ``C @ X``: one matrix product per chunk of
resamples, never a Python loop over samples or resamples. ``C`` is drawn in chunks of
``chunk_size`` rows from one generator, so the resamples do not depend on the chunk size (results
move only by floating-point noise) and memory stays at about 28 bytes x chunk_size x n.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import NamedTuple

import numpy as np
import polars as pl

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis.resampling import cluster_index, resample_counts, resample_indices
from prompt_reliability.base import tables
from prompt_reliability.base.logs import progress

METRICS = ("nll", "ece")
SMOOTH = "smece"
NATIVE = "native"
CI_METHOD = "percentile"
SMOOTH_CI_METHOD = "percentile, bandwidth fixed at each score's sigma*"
UNITS = {"sample": None, "image": "image_path", "pair_id": "pair_id"}  # unit -> manifest column of its key
TABLE_COLUMNS = ("model", "dataset", "split", "prevalence", "metric", "delta", "ci_low", "ci_high", "p_value", "n_resamples",
                 "ci_method", "unit", "clusters")


def prevalence_label(prevalence: str | float) -> str:
    """How a prevalence setting appears in tables: ``native``, ``0.25``, ``0.1``, ``0.05``."""
    return NATIVE if prevalence == NATIVE else f"{float(prevalence):g}"


def class_weights(y: np.ndarray, prevalence: str | float) -> tuple[float, float]:
    """``(unsafe, safe)`` importance weights that move the unsafe prevalence of ``y`` to ``prevalence``."""
    if prevalence == NATIVE:
        return 1.0, 1.0
    target = float(prevalence)
    if not 0.0 < target < 1.0:
        raise ValueError(f"target prevalence must lie strictly between 0 and 1, got {prevalence!r}")
    native = float(np.mean(y))
    if native in (0.0, 1.0):
        raise ValueError(f"cannot reweight to unsafe prevalence {target:g}: the samples hold only one class "
                         f"(native prevalence {native:g}); keep only 'native' in analysis.bootstrap.prevalences "
                         "or evaluate a split with both classes")
    return target / native, (1.0 - target) / (1.0 - native)


def prevalence_weights(y: np.ndarray, prevalence: str | float) -> np.ndarray:
    """Per-sample importance weights: :func:`class_weights` by label."""
    unsafe, safe = class_weights(y, prevalence)
    return np.where(np.asarray(y) == 1, unsafe, safe)


def design_matrix(y: np.ndarray, scores: np.ndarray, n_bins: int = 15, eps: float = metrics.EPS) -> np.ndarray:
    """The n x (2 * S * (2 + n_bins)) matrix whose column sums are every metric's sums, per class.

    ``scores`` is S x n (one row per score). Column block (class, score), classes (unsafe, safe),
    holds ``[y == class] * [1, nll, (y - p) [bin == 0], ..., (y - p) [bin == M-1]]``. Prevalence
    weights are constant within a class, so any weighted sum is ``w_unsafe * unsafe sum + w_safe *
    safe sum`` (:func:`weighted_sums`): resampling cost does not grow with the number of prevalences.
    """
    y = np.asarray(y, dtype=np.float64)
    scores = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    nll = metrics.nll_terms(y, scores, eps)  # S x n
    in_bin = metrics.equal_width_bins(scores, n_bins)[..., None] == np.arange(n_bins)  # S x n x M
    per_score = np.concatenate([np.ones_like(nll)[..., None], nll[..., None], (y - scores)[..., None] * in_bin], axis=-1)
    in_class = np.stack([y == 1, y != 1], axis=1).astype(np.float64)  # n x 2
    design = in_class[:, :, None, None] * per_score.transpose(1, 0, 2)[:, None]  # n x 2 x S x (2 + M)
    return np.ascontiguousarray(design.reshape(len(y), -1))


def weighted_sums(class_sums: np.ndarray, weights: np.ndarray, n_scores: int) -> np.ndarray:
    """(..., P, S, 2 + M) weighted sums from (..., m) per-class sums and (P x 2) ``(unsafe, safe)`` weights."""
    per_class = class_sums.reshape(*class_sums.shape[:-1], 2, n_scores, -1)
    return np.einsum("...csk,pc->...psk", per_class, np.atleast_2d(weights))


def metrics_from_sums(sums: np.ndarray) -> np.ndarray:
    """(..., 2) array of [NLL, ECE] from (..., 2 + M) sums ``[sum w, sum w nll, sum_{bin} w (y - p) ...]``."""
    total = sums[..., 0]
    return np.stack([sums[..., 1] / total, np.abs(sums[..., 2:]).sum(axis=-1) / total], axis=-1)


def unit_count(clusters: np.ndarray | None, n: int) -> int:
    """How many units a resample draws: the ``n`` samples, or the clusters numbered 0..G-1 in ``clusters``."""
    if clusters is None:
        return n
    return int(clusters.max()) + 1 if len(clusters) else 0


def cluster_sums(design: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """(n_clusters x m) sums of ``design``'s rows per cluster (``clusters``: each row's cluster)."""
    out = np.zeros((n_clusters, design.shape[1]))
    np.add.at(out, clusters, design)
    return out


def resampled_sums(design: np.ndarray | list[np.ndarray], n_resamples: int, seed: int, chunk_size: int,
                   per_chunk: Sequence[tuple[Callable[[np.ndarray], np.ndarray], int]] = (),
                   clusters: np.ndarray | None = None, desc: str | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """(n_resamples x m) column sums of ``design`` over every resample: ``C @ design``, chunk by chunk (a list
    of designs: their columns side by side, each its own product, so each block's sums are the ones it
    gets alone);
    and for each ``(function, first)`` of ``per_chunk`` the function's values (one per resample) on the
    first ``first`` resamples, from the same per-sample count matrices.

    With ``clusters`` (each row's cluster, numbered 0..G-1) the resamples draw G clusters with
    replacement; ``C`` is then over clusters and multiplies the per-cluster sums of ``design``.
    ``desc``: a progress bar of that name in the job's log (:func:`base.logs.progress`).
    """
    blocks = list(design) if isinstance(design, list) else [design]  # one product per block: as if each were alone
    if clusters is not None:
        blocks = [cluster_sums(block, clusters, unit_count(clusters, 0)) for block in blocks]
    edges = np.cumsum([0, *(block.shape[1] for block in blocks)])
    sums = np.empty((n_resamples, edges[-1]))
    firsts = [min(first, n_resamples) for _, first in per_chunk]
    extra = [np.empty(first) for first in firsts]
    start = 0
    with progress(n_resamples, desc, unit="resample") if desc else contextlib.nullcontext() as bar:
        for indices in resample_indices(blocks[0].shape[0], n_resamples, seed, chunk_size):
            counts = resample_counts(indices)
            for block, left, right in zip(blocks, edges[:-1], edges[1:]):
                sums[start:start + len(indices), left:right] = counts @ block
            if start < max(firsts, default=0):
                per_sample = counts if clusters is None else counts[:, clusters]  # each sample as often as its cluster
                for (function, _), first, out in zip(per_chunk, firsts, extra):
                    if start < first:
                        head = per_sample[:first - start]
                        out[start:start + len(head)] = function(head)
            start += len(indices)
            if bar is not None:
                bar.update(len(indices))
    return sums, extra


class Resampled(NamedTuple):
    """What :func:`bootstrap_metrics` returns."""

    point: np.ndarray  # P x S x 2: [NLL, ECE] on the original sample
    resampled: np.ndarray  # B x P x S x 2
    smooth_point: np.ndarray  # S: smooth ECE of each score (NaN without smece_resamples)
    smooth_resampled: np.ndarray  # min(smece_resamples, B) x S, native prevalence, bandwidth fixed
    extra: list[np.ndarray]  # one array per ``extra`` function: its values on its first resamples


def bootstrap_score_sets(y: np.ndarray, score_sets: Sequence[np.ndarray], prevalences: Sequence[str | float], *,
                         n_resamples: int, seed: int, chunk_size: int = 256, n_bins: int = 15, eps: float = metrics.EPS,
                         smece_resamples: int = 0, clusters: np.ndarray | None = None,
                         extra: Sequence[Sequence[tuple[Callable[[np.ndarray], np.ndarray], int]]] = (),
                         desc: str | None = None) -> list[Resampled]:
    """:func:`bootstrap_metrics` of several score sets on the same samples (e.g. every model of one
    evaluation split) from one stream of resamples: drawing and counting the resamples, most of the
    cost, is done once; each set's sums are its own product with the shared count chunk, so every
    set's result is the one it would get alone. ``extra``: one list of per-chunk functions per set;
    ``desc``: a progress bar in the job's log.
    """
    weights = np.array([class_weights(y, prevalence) for prevalence in prevalences])
    score_sets = [np.atleast_2d(scores) for scores in score_sets]
    extra = list(extra) or [()] * len(score_sets)
    designs = [design_matrix(y, scores, n_bins, eps) for scores in score_sets]
    smooth_points, per_chunk, owners = [], [], []
    if smece_resamples:
        from prompt_reliability.analysis import smooth_ece
    for k, scores in enumerate(score_sets):
        smooth_point = np.full(scores.shape[0], np.nan)
        if smece_resamples:
            for j, p in enumerate(scores):
                smooth_point[j], sigma = smooth_ece.smece(y, p)
                per_chunk.append((smooth_ece.FixedBandwidth(y, p, sigma), smece_resamples))
                owners.append((k, "smooth"))
        smooth_points.append(smooth_point)
        for function in extra[k]:
            per_chunk.append(function)
            owners.append((k, "extra"))
    widths = np.cumsum([0, *(design.shape[1] for design in designs)])
    sums, values = resampled_sums(designs, n_resamples, seed, chunk_size, per_chunk, clusters, desc)
    results = []
    for k, (scores, design) in enumerate(zip(score_sets, designs)):
        n_scores = scores.shape[0]
        point = metrics_from_sums(weighted_sums(design.sum(axis=0), weights, n_scores))
        resampled = metrics_from_sums(weighted_sums(sums[:, widths[k]:widths[k + 1]], weights, n_scores))
        smooth = [v for v, (owner, kind) in zip(values, owners) if owner == k and kind == "smooth"]
        results.append(Resampled(point, resampled, smooth_points[k],
                                 np.column_stack(smooth) if smooth else np.empty((0, n_scores)),
                                 [v for v, (owner, kind) in zip(values, owners) if owner == k and kind == "extra"]))
    return results


def bootstrap_metrics(y: np.ndarray, scores: np.ndarray, prevalences: Sequence[str | float], *, n_resamples: int, seed: int,
                      chunk_size: int = 256, n_bins: int = 15, eps: float = metrics.EPS,
                      smece_resamples: int = 0, clusters: np.ndarray | None = None,
                      extra: Sequence[tuple[Callable[[np.ndarray], np.ndarray], int]] = ()) -> Resampled:
    """Point and resampled [NLL, ECE] of every score (rows of ``scores``) at every prevalence, and its smooth ECE.

    The smooth ECE's resamples are at native prevalence, on the first ``smece_resamples`` resamples
    (bandwidth fixed, :mod:`.smooth_ece`). ``clusters``: each sample's cluster
    (:func:`.resampling.cluster_index`) for a clustered bootstrap; None = independent. ``extra``:
    further ``(function of a per-sample count chunk, first resamples)`` computed on the same resamples.
    """
    return bootstrap_score_sets(y, [scores], prevalences, n_resamples=n_resamples, seed=seed, chunk_size=chunk_size,
                                n_bins=n_bins, eps=eps, smece_resamples=smece_resamples, clusters=clusters,
                                extra=[extra])[0]


def percentile_ci(deltas: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval over axis 0 (2.5 / 97.5 for 95%), numpy's default linear interpolation."""
    tail = 100.0 * (1.0 - confidence) / 2.0
    low, high = np.percentile(deltas, [tail, 100.0 - tail], axis=0)
    return low, high


def bootstrap_p_value(deltas: np.ndarray) -> np.ndarray:
    """Two-sided bootstrap p-value over axis 0: ``min(1, 2 * min(P*(delta <= 0), P*(delta >= 0)))``."""
    return np.minimum(1.0, 2.0 * np.minimum(np.mean(deltas <= 0, axis=0), np.mean(deltas >= 0, axis=0)))


def bootstrap_deltas(y: np.ndarray, selected: np.ndarray, mean: np.ndarray, prevalences: Sequence[str | float], *,
                     n_resamples: int, seed: int, chunk_size: int = 256, confidence: float = 0.95, n_bins: int = 15,
                     eps: float = metrics.EPS, smece_resamples: int = 0, clusters: np.ndarray | None = None,
                     unit: str = "sample") -> pl.DataFrame:
    """One row per (prevalence, metric): ``prevalence, metric, delta, ci_low, ci_high, p_value, n_resamples, ci_method,
    unit, clusters``, and with ``smece_resamples`` a native-prevalence ``smece`` row. ``clusters``: each sample's
    cluster for the resampling ``unit`` (None: every sample its own).

    The same resamples serve every prevalence, both scores and the smooth ECE (a paired bootstrap).
    """
    draws = bootstrap_metrics(
        y, np.stack([selected, mean]), prevalences, n_resamples=n_resamples, seed=seed, chunk_size=chunk_size,
        n_bins=n_bins, eps=eps, smece_resamples=smece_resamples, clusters=clusters)
    return delta_table(draws, prevalences, n_resamples=n_resamples, confidence=confidence, unit=unit,
                       n_clusters=unit_count(clusters, len(y)))


def delta_table(draws: Resampled, prevalences: Sequence[str | float], *, n_resamples: int, confidence: float, unit: str,
                n_clusters: int) -> pl.DataFrame:
    """The selected - mean rows of :func:`bootstrap_deltas` from the draws of the score pair (selected, mean)."""
    point, resampled, smooth_point, smooth_resampled = draws.point, draws.resampled, draws.smooth_point, draws.smooth_resampled
    delta = point[:, 0] - point[:, 1]  # P x 2: selected - mean
    deltas = resampled[:, :, 0] - resampled[:, :, 1]  # B x P x 2
    low, high = percentile_ci(deltas, confidence)
    p_value = bootstrap_p_value(deltas)
    rows = [
        {"prevalence": prevalence_label(prevalence), "metric": metric, "delta": float(delta[j, m]),
         "ci_low": float(low[j, m]), "ci_high": float(high[j, m]), "p_value": float(p_value[j, m]),
         "n_resamples": n_resamples, "ci_method": CI_METHOD}
        for j, prevalence in enumerate(prevalences) for m, metric in enumerate(METRICS)
    ]
    if len(smooth_resampled):
        smooth_deltas = smooth_resampled[:, 0] - smooth_resampled[:, 1]
        smooth_low, smooth_high = percentile_ci(smooth_deltas, confidence)
        rows.append({"prevalence": NATIVE, "metric": SMOOTH, "delta": float(smooth_point[0] - smooth_point[1]),
                     "ci_low": float(smooth_low), "ci_high": float(smooth_high),
                     "p_value": float(bootstrap_p_value(smooth_deltas)), "n_resamples": len(smooth_deltas),
                     "ci_method": SMOOTH_CI_METHOD})
    return pl.DataFrame(rows).with_columns(pl.lit(unit).alias("unit"), pl.lit(n_clusters, dtype=pl.Int64).alias("clusters"))


def sample_clusters(rows: pl.DataFrame, manifest: pl.DataFrame, unit: str, source: str = "") -> np.ndarray | None:
    """Each row's cluster for the resampling ``unit`` (None for ``sample``), from the dataset manifest's key column."""
    column = UNITS[unit]
    if column is None:
        return None
    if column not in manifest.columns:
        raise ValueError(f"{source}: analysis.bootstrap.unit is {unit!r} but the manifest has no {column!r} column; "
                         "set analysis.bootstrap.unit: sample, or give the dataset that column")
    keys = rows.select("sample_id").join(manifest.select("sample_id", column), on="sample_id", how="left",
                                         maintain_order="left")[column]
    return cluster_index(keys.to_list())[0]


def bootstrap_summary(table: pl.DataFrame) -> pl.DataFrame:
    """Per metric and prevalence: pairs, CI-positive wins (``ci_low > 0``) and CI-negative losses (``ci_high < 0``)."""
    return table.group_by("metric", "prevalence", maintain_order=True).agg(
        pl.len().alias("pairs"),
        (pl.col("ci_low") > 0).sum().alias("ci_wins"),
        (pl.col("ci_high") < 0).sum().alias("ci_losses"),
    ).sort(pl.col("metric").replace_strict({m: k for k, m in enumerate((*METRICS, SMOOTH))}, return_dtype=pl.Int64),
           maintain_order=True)


def write_bootstrap_summary(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(bootstrap_summary(pl.read_parquet(table)), summary, csv, md, "bootstrap_summary")
