"""Binary reliability metrics of an unsafe probability against labels (1 = unsafe).

NLL clips p to [eps, 1 - eps]; ECE uses equal-width bins ``min(floor(p * M), M - 1)`` or equal-mass
bins (sorted p split with ``numpy.array_split``); error is at a fixed threshold (p >= t means unsafe).
AUROC / AUPRC follow scikit-learn's definitions (trapezoidal ROC area, step-wise average
precision) and are NaN when only one class is present.
Brier is ``mean (p - y)^2``; MacroCE is ``mean |p - y|`` (the UnSAF paper's eq. 6, no bins); MCE is
the largest ``|mean y - mean p|`` over the non-empty ECE bins.

Selective classification (:func:`eaurc`, :func:`augrc`) takes a per-sample ``error`` indicator and a
``confidence`` (larger = accepted first). The working points are the distinct confidence values,
highest first; at each the accepted set is every sample with confidence >= it (ties enter together),
with coverage ``c = n_accepted / N``, selective risk ``r = errors_accepted / n_accepted`` and
generalised risk ``g = errors_accepted / N``.

- AURC (Geifman & El-Yaniv): the step sum ``sum_j (c_j - c_{j-1}) r_j`` (c_0 = 0); without ties this is
  ``(1/N) sum_{i=1..N} risk of the i most confident``, the fd-shifts AURC.
- E-AURC = AURC - optimal AURC, the fd-shifts "excess" AURC. The optimum accepts every correct sample
  before any error, one sample at a time: ``(1/N) sum_{k=1..E} k / (N - E + k)`` with E errors. E-AURC
  is 0 for a tie-free confidence that ranks every error last; tied confidences are charged the
  risk of the whole tie group.
- AUGRC (Traub et al. 2024, fd-shifts): the trapezoidal area under ``g(c)`` from ``(0, 0)``; within a
  tie group g grows linearly, which is its expectation under random tie-breaking.
- PRR, the prediction rejection ratio (LM-Polygraph's ``PredictionRejectionArea``, normalised), with
  quality ``q = 1 - error``: samples are accepted most confident first; the prediction-rejection
  area is ``A = (1/N) sum_{k=1..N} (mean q of the k accepted)``; ``PRR = (A - A_random) / (A_oracle -
  A_random)`` with ``A_random`` = mean q (the expectation under a random order; LM-Polygraph averages
  random permutations) and ``A_oracle`` = A with every correct sample first. Within a tie group the
  accepted sum grows linearly (its expectation under random tie-breaking). 1 = oracle ranking, 0 =
  random, negative = worse than random; NaN when every sample is right or every one wrong (0/0).
"""

from __future__ import annotations

import numpy as np

EPS = 1e-12


def nll_terms(y: np.ndarray, p: np.ndarray, eps: float = EPS) -> np.ndarray:
    """Per-sample negative log-likelihood ``-(y log p + (1 - y) log(1 - p))``, p clipped to [eps, 1 - eps]."""
    y = np.asarray(y, dtype=np.float64)
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1.0 - eps)
    return -(y * np.log(p) + (1.0 - y) * np.log1p(-p))


def nll(y: np.ndarray, p: np.ndarray, eps: float = EPS) -> float:
    return float(np.mean(nll_terms(y, p, eps)))


def equal_width_bins(p: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin index of each probability: ``min(floor(p * M), M - 1)``."""
    return np.minimum(np.floor(np.asarray(p, dtype=np.float64) * n_bins).astype(np.int64), n_bins - 1)


#: Relative tolerance under which two values are the same for ranks, wins and tie-breaks: values of
#: algebraically identical rules differ by rounding only (~1e-16 relative), real differences by far more.
RANK_RTOL = 1e-12


def snap_ties(values: np.ndarray, rtol: float = RANK_RTOL) -> np.ndarray:
    """``values`` with every run of near-equal values replaced by the run's smallest value.

    Sorted neighbours ``a <= b`` are near-equal when ``b - a <= rtol * max(|a|, |b|)``; runs chain
    (single linkage), which at 1e-12 never joins values that differ by more than rounding.
    NaN stays NaN. Exact comparisons on the result treat rounding differences as ties.
    """
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    close = np.abs(np.diff(ordered)) <= rtol * np.maximum(np.abs(ordered[1:]), np.abs(ordered[:-1]))
    starts = np.concatenate([[True], ~close]) if len(ordered) else np.zeros(0, dtype=bool)
    first = np.maximum.accumulate(np.where(starts, np.arange(len(ordered)), 0))
    out = np.empty_like(values)
    out[order] = ordered[first]
    return out


def stable_id_hash(ids) -> np.ndarray:
    """A uint64 per id from its text (blake2b), the same in every run, file order and platform."""
    import hashlib

    return np.array([int.from_bytes(hashlib.blake2b(str(i).encode(), digest_size=8).digest(), "big") for i in ids],
                    dtype=np.uint64)


def equal_mass_bins(p: np.ndarray, n_bins: int, tiebreak: np.ndarray | None = None) -> np.ndarray:
    """Bin index after sorting p and splitting into ``n_bins`` near-equal groups.

    Ties (values equal within :data:`RANK_RTOL`) are ordered by ``tiebreak`` (e.g.
    :func:`stable_id_hash` of the sample ids) when given, else by position (stable sort).
    """
    p = np.asarray(p, dtype=np.float64)
    if tiebreak is None:
        order = np.argsort(p, kind="stable")
    else:
        order = np.lexsort((np.asarray(tiebreak), snap_ties(p)))
    bins = np.empty(len(order), dtype=np.int64)
    for b, members in enumerate(np.array_split(order, n_bins)):
        bins[members] = b
    return bins


def ece(y: np.ndarray, p: np.ndarray, n_bins: int = 15, strategy: str = "width") -> float:
    """Expected calibration error: ``sum_b |B_b|/n * |mean(y in B_b) - mean(p in B_b)|``."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if strategy == "width":
        bins = equal_width_bins(p, n_bins)
    elif strategy == "mass":
        bins = equal_mass_bins(p, n_bins)
    else:
        raise ValueError(f"ECE strategy must be 'width' or 'mass', got {strategy!r}")
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    label_sums = np.bincount(bins, weights=y, minlength=n_bins)
    prob_sums = np.bincount(bins, weights=p, minlength=n_bins)
    # |count * (mean y - mean p)| = |sum y - sum p|; empty bins contribute 0
    return float(np.abs(label_sums - prob_sums).sum() / counts.sum())


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Brier score ``mean (p - y)^2``."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return float(np.mean((p - y) ** 2))


def macro_ce(y: np.ndarray, p: np.ndarray) -> float:
    """MacroCE as the UnSAF paper's eq. 6: ``mean |p - y|`` (no binning)."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    return float(np.mean(np.abs(p - y)))


def mce(y: np.ndarray, p: np.ndarray, n_bins: int = 15) -> float:
    """Maximum calibration error: ``max_b |mean(y in B_b) - mean(p in B_b)|`` over the non-empty equal-width ECE bins."""
    y = np.asarray(y, dtype=np.float64)
    p = np.asarray(p, dtype=np.float64)
    if len(p) == 0:
        return float("nan")
    bins = equal_width_bins(p, n_bins)
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    filled = counts > 0
    gaps = np.abs(np.bincount(bins, weights=y, minlength=n_bins)[filled] - np.bincount(bins, weights=p, minlength=n_bins)[filled])
    return float(np.max(gaps / counts[filled]))


def _working_points(error: np.ndarray, confidence: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per distinct confidence (highest first): accepted count, accepted errors, and N."""
    error = np.asarray(error, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    order = np.argsort(-confidence, kind="stable")
    c_sorted, e_sorted = confidence[order], error[order]
    cum_errors = np.cumsum(e_sorted)
    # last position of each tie group in the sorted order
    last = np.flatnonzero(np.r_[c_sorted[1:] != c_sorted[:-1], True])
    return (last + 1).astype(np.float64), cum_errors[last], np.float64(len(error))


def aurc(error: np.ndarray, confidence: np.ndarray) -> float:
    """Area under the selective risk-coverage curve as a step sum over the working points (module docstring)."""
    if len(error) == 0:
        return float("nan")
    accepted, errors, n = _working_points(error, confidence)
    coverage = accepted / n
    return float(np.sum(np.diff(np.r_[0.0, coverage]) * errors / accepted))


def eaurc(error: np.ndarray, confidence: np.ndarray) -> float:
    """Excess AURC: :func:`aurc` minus the optimal AURC ``(1/N) sum_{k=1..E} k / (N - E + k)``."""
    error = np.asarray(error, dtype=np.float64)
    if len(error) == 0:
        return float("nan")
    n, n_errors = len(error), int(np.rint(error.sum()))
    k = np.arange(1, n_errors + 1, dtype=np.float64)
    return aurc(error, confidence) - float(np.sum(k / (n - n_errors + k)) / n)


def augrc(error: np.ndarray, confidence: np.ndarray) -> float:
    """Area under the generalised risk-coverage curve (trapezoid from (0, 0); module docstring)."""
    if len(error) == 0:
        return float("nan")
    accepted, errors, n = _working_points(error, confidence)
    return float(np.trapezoid(np.r_[0.0, errors / n], np.r_[0.0, accepted / n]))


def _rejection_area(quality: np.ndarray, confidence: np.ndarray) -> float:
    """``(1/N) sum_k`` mean quality of the k most confident, ties entering in expectation (module docstring)."""
    order = np.argsort(-confidence, kind="stable")
    c_sorted, q_sorted = confidence[order], quality[order]
    n = len(q_sorted)
    group_end = np.flatnonzero(np.r_[c_sorted[1:] != c_sorted[:-1], True])  # last index of each tie group
    group_start = np.r_[0, group_end[:-1] + 1]
    sums = np.cumsum(q_sorted)
    before = np.r_[0.0, sums][group_start]  # quality accepted before each group
    group_mean = (sums[group_end] - before) / (group_end - group_start + 1)
    member_group = np.repeat(np.arange(len(group_start)), group_end - group_start + 1)
    k = np.arange(1, n + 1)
    expected_sum = before[member_group] + (k - group_start[member_group]) * group_mean[member_group]
    return float(np.mean(expected_sum / k))


def prr(error: np.ndarray, confidence: np.ndarray) -> float:
    """Prediction rejection ratio with quality ``1 - error`` (module docstring); NaN when it is 0/0."""
    error = np.asarray(error, dtype=np.float64)
    confidence = np.asarray(confidence, dtype=np.float64)
    if len(error) == 0:
        return float("nan")
    quality = 1.0 - error
    random = float(quality.mean())
    oracle = _rejection_area(quality, quality)  # correct samples first (ties among equals change nothing)
    if oracle - random <= 0:
        return float("nan")
    return (_rejection_area(quality, confidence) - random) / (oracle - random)


def error_rate(y: np.ndarray, p: np.ndarray, threshold: float = 0.5) -> float:
    return float(np.mean((np.asarray(p) >= threshold).astype(np.int64) != np.asarray(y)))


def _counts_at_thresholds(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """True and false positives when every sample with score >= t is called unsafe, for each
    distinct score t from the highest down (tied scores enter together)."""
    y = np.asarray(y)
    p = np.asarray(p, dtype=np.float64)
    if not np.isfinite(p).all():
        raise ValueError("ranking metrics need finite scores: got NaN or infinity")
    order = np.argsort(-p, kind="stable")
    ranked = p[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(ranked)), len(ranked) - 1]
    true_pos = np.cumsum((y[order] == 1).astype(np.float64))[last_of_each_score]
    false_pos = 1.0 + last_of_each_score - true_pos
    return true_pos, false_pos


# AUROC and AUPRC are computed here rather than by scikit-learn (whose import costs ~2 s per
# process, more than the analysis itself). The arithmetic follows the same steps, so the results
# equal roc_auc_score / average_precision_score to the last bit (tests/test_metrics.py checks).
def auroc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (trapezoids through the distinct-score points; ties count half)."""
    if len(np.unique(y)) != 2:
        return float("nan")
    true_pos, false_pos = _counts_at_thresholds(y, p)
    if len(true_pos) > 2:  # points inside a straight segment add nothing but rounding: drop them
        bends = np.logical_or(np.diff(false_pos, 2), np.diff(true_pos, 2))
        keep = np.flatnonzero(np.r_[True, bends, True])
        true_pos, false_pos = true_pos[keep], false_pos[keep]
    true_pos, false_pos = np.r_[0.0, true_pos], np.r_[0.0, false_pos]
    return float(np.trapezoid(true_pos / true_pos[-1], false_pos / false_pos[-1]))


def auprc(y: np.ndarray, p: np.ndarray) -> float:
    """Average precision: ``sum_k (R_k - R_{k-1}) P_k`` over the distinct scores, highest first."""
    if len(np.unique(y)) != 2:
        return float("nan")
    true_pos, false_pos = _counts_at_thresholds(y, p)
    precision = np.r_[(true_pos / (true_pos + false_pos))[::-1], 1.0]
    recall = np.r_[(true_pos / true_pos[-1])[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


class CountedAUROC:
    """AUROC of resamples given as count matrices (rows = resamples, columns = how often each sample was
    drawn): a resample is never materialised, so a chunk of bootstrap resamples costs a few passes over it.

    With the safe samples sorted by score and ``Z`` the running total of their drawn counts, each
    unsafe sample ``i`` beats ``Z[#safe below p_i]`` safe draws and ties ``Z[#safe <= p_i] - Z[#safe
    below p_i]``, so ``2 x wins + ties = sum_i c_i (Z_below + Z_through)`` over the unsafe samples
    (ties count half, as in :func:`auroc`) and ``AUROC = that / (2 P N)``. Counts are whole numbers,
    so every sum is exact in float64; NaN for a resample that drew one class only.
    """

    def __init__(self, y: np.ndarray, p: np.ndarray):
        p = np.asarray(p, dtype=np.float64)
        if not np.isfinite(p).all():
            raise ValueError("ranking metrics need finite scores: got NaN or infinity")
        unsafe = np.asarray(y) == 1
        safe_index = np.flatnonzero(~unsafe)
        self.safe_columns = safe_index[np.argsort(p[safe_index], kind="stable")]
        safe_scores = p[self.safe_columns]
        self.unsafe_columns = np.flatnonzero(unsafe)
        self.below = np.searchsorted(safe_scores, p[self.unsafe_columns], side="left")
        self.through = np.searchsorted(safe_scores, p[self.unsafe_columns], side="right")
        self.tied = not np.array_equal(self.below, self.through)

    def __call__(self, counts: np.ndarray) -> np.ndarray:
        counts = np.atleast_2d(np.asarray(counts, dtype=np.float64))
        running = np.zeros((len(counts), len(self.safe_columns) + 1))
        np.cumsum(np.take(counts, self.safe_columns, axis=1), axis=1, out=running[:, 1:])  # take: 2x a fancy index
        unsafe_drawn = np.take(counts, self.unsafe_columns, axis=1)
        beaten = np.take(running, self.below, axis=1)
        if self.tied:
            beaten += np.take(running, self.through, axis=1)
        else:  # no unsafe score equals a safe one: through == below, one gather fewer
            beaten *= 2.0
        beaten *= unsafe_drawn
        twice_wins = beaten.sum(axis=1)
        pairs = unsafe_drawn.sum(axis=1) * running[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(pairs > 0, twice_wins / (2.0 * pairs), np.nan)


def average_ranks(values: np.ndarray, axis: int = -1) -> np.ndarray:
    """Ranks 1..n along ``axis``, tied values sharing the mean of their ranks (scipy's
    ``rankdata(method="average")``, without importing scipy.stats)."""
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    ranks = np.empty(values.shape, dtype=np.float64)
    flat_values, flat_ranks = values.reshape(-1, values.shape[-1]), ranks.reshape(-1, values.shape[-1])
    for row, out in zip(flat_values, flat_ranks):  # one row per ranking (pairs or models), not per sample
        order = np.argsort(row, kind="stable")
        ranked = row[order]
        group_starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        group_ends = np.r_[group_starts[1:], len(row)]
        sizes = group_ends - group_starts
        out[order] = np.repeat(0.5 * (group_starts + group_ends + 1), sizes)
    return np.moveaxis(ranks, -1, axis)


def reliability_metrics(y: np.ndarray, p: np.ndarray, n_bins: int = 15, eps: float = EPS, threshold: float = 0.5) -> dict[str, float]:
    """ECE, NLL, AUROC, AUPRC, error, Brier, MacroCE and MCE of one score."""
    return {
        "ece": ece(y, p, n_bins),
        "nll": nll(y, p, eps),
        "auroc": auroc(y, p),
        "auprc": auprc(y, p),
        "error": error_rate(y, p, threshold),
        "brier": brier(y, p),
        "macro_ce": macro_ce(y, p),
        "mce": mce(y, p, n_bins),
    }
