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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis.lockfile import locked_scores, read_lock
from prompt_reliability.analysis.resampling import cluster_index, resample_counts, resample_indices
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import split_rows

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


def cluster_sums(design: np.ndarray, clusters: np.ndarray, n_clusters: int) -> np.ndarray:
    """(n_clusters x m) sums of ``design``'s rows per cluster (``clusters``: each row's cluster)."""
    out = np.zeros((n_clusters, design.shape[1]))
    np.add.at(out, clusters, design)
    return out


def resampled_sums(design: np.ndarray, n_resamples: int, seed: int, chunk_size: int,
                   per_chunk: Sequence[Any] = (), per_chunk_resamples: int = 0,
                   clusters: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(n_resamples x m) column sums of ``design`` over every resample: ``C @ design``, chunk by chunk;
    and (per_chunk_resamples x len(per_chunk)) values of each function of a per-sample count chunk in
    ``per_chunk`` on the first ``per_chunk_resamples`` resamples (the same count matrices).

    With ``clusters`` (each row's cluster, numbered 0..G-1) the resamples draw G clusters with
    replacement; ``C`` is then over clusters and multiplies the per-cluster sums of ``design``.
    """
    if clusters is None:
        units = design
    else:
        units = cluster_sums(design, clusters, int(clusters.max()) + 1 if len(clusters) else 0)
    sums = np.empty((n_resamples, design.shape[1]))
    extra = np.empty((per_chunk_resamples, len(per_chunk)))
    start = 0
    for indices in resample_indices(units.shape[0], n_resamples, seed, chunk_size):
        counts = resample_counts(indices)
        sums[start:start + len(indices)] = counts @ units
        if start < per_chunk_resamples:
            head = counts[:per_chunk_resamples - start]
            if clusters is not None:
                head = head[:, clusters]  # each sample counted as often as its cluster was drawn
            extra[start:start + len(head)] = np.column_stack([function(head) for function in per_chunk])
        start += len(indices)
    return sums, extra


def bootstrap_metrics(y: np.ndarray, scores: np.ndarray, prevalences: Sequence[str | float], *, n_resamples: int, seed: int,
                      chunk_size: int = 256, n_bins: int = 15, eps: float = metrics.EPS,
                      smece_resamples: int = 0,
                      clusters: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Point and resampled [NLL, ECE] of every score (rows of ``scores``) at every prevalence, and its smooth ECE.

    Returns ``point`` (P x S x 2) on the original sample, ``resampled`` (B x P x S x 2), the smooth
    ECE point estimates (S) and, at native prevalence, ``smece_resamples`` resamples of it
    (min(smece_resamples, B) x S; bandwidth fixed, :mod:`.smooth_ece`). ``clusters``: each sample's
    cluster (:func:`.resampling.cluster_index`) for a clustered bootstrap; None = independent.
    """
    weights = np.array([class_weights(y, prevalence) for prevalence in prevalences])
    design = design_matrix(y, scores, n_bins, eps)
    scores = np.atleast_2d(scores)
    n_scores = scores.shape[0]
    smooth_point = np.full(n_scores, np.nan)
    smooth = []
    smece_resamples = min(smece_resamples, n_resamples)
    if smece_resamples:
        from prompt_reliability.analysis import smooth_ece

        for k, p in enumerate(scores):
            smooth_point[k], sigma = smooth_ece.smece(y, p)
            smooth.append(smooth_ece.FixedBandwidth(y, p, sigma))
    point = metrics_from_sums(weighted_sums(design.sum(axis=0), weights, n_scores))
    sums, smooth_resampled = resampled_sums(design, n_resamples, seed, chunk_size, smooth, smece_resamples, clusters)
    resampled = metrics_from_sums(weighted_sums(sums, weights, n_scores))
    return point, resampled, smooth_point, smooth_resampled


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
    point, resampled, smooth_point, smooth_resampled = bootstrap_metrics(
        y, np.stack([selected, mean]), prevalences, n_resamples=n_resamples, seed=seed, chunk_size=chunk_size,
        n_bins=n_bins, eps=eps, smece_resamples=smece_resamples, clusters=clusters)
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
    n_clusters = len(y) if clusters is None else (int(clusters.max()) + 1 if len(clusters) else 0)
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


def write_bootstrap(*, matrix: str, lock: str, manifest: str, table: str, model: str, dataset: str, split: str,
                    analysis: Mapping[str, Any]) -> pl.DataFrame:
    """Bootstrap one evaluation pair with the locked selected prompt and the mean ensemble."""
    full = pl.read_parquet(matrix)
    rows = split_rows(full, split, matrix)
    scores = locked_scores(rows, read_lock(lock, full))
    settings = analysis["bootstrap"]
    unit = settings["unit"]
    clusters = None if UNITS[unit] is None else sample_clusters(
        rows, pl.read_parquet(manifest, columns=["sample_id", UNITS[unit]]), unit, manifest)
    deltas = bootstrap_deltas(
        rows["label"].to_numpy(), scores["selected"], scores["mean"], settings["prevalences"],
        n_resamples=settings["resamples"], seed=settings["seed"], chunk_size=settings["chunk_size"],
        confidence=settings["confidence"], n_bins=analysis["ece_bins"], eps=analysis["eps"],
        smece_resamples=settings["smece_resamples"], clusters=clusters, unit=unit,
    )
    deltas = tables.label_pair(deltas, model, dataset, split)
    io.write_parquet(deltas, table)
    return deltas


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
