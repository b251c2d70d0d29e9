import brute_force
import numpy as np
import pytest

from prompt_reliability.analysis import metrics


@pytest.mark.parametrize("seed", range(5))
def test_nll_and_ece_match_references(seed):
    from sklearn.metrics import log_loss

    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 300)
    p = np.clip(rng.beta(0.7, 0.7, 300), 1e-6, 1 - 1e-6)
    assert metrics.nll(y, p) == pytest.approx(log_loss(y, p), rel=1e-12)
    for bins in (10, 15, 20):
        assert metrics.ece(y, p, bins) == pytest.approx(brute_force.ece(y, p, bins), abs=1e-12)


def test_ece_edge_values_and_empty_bins():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.0, 1.0, 0.5, 0.5])
    # p = 1 falls in the last bin, 0.5 in bin 7 of 15; all other bins are empty
    assert metrics.equal_width_bins(p, 15).tolist() == [0, 14, 7, 7]
    assert metrics.ece(y, p, 15) == pytest.approx(0.0)
    assert metrics.ece(np.array([1, 1]), np.array([0.0, 0.0]), 15) == pytest.approx(1.0)


def test_nll_clips_certain_mistakes():
    assert metrics.nll(np.array([1]), np.array([0.0])) == pytest.approx(-np.log(1e-12))
    assert np.isfinite(metrics.nll(np.array([0, 1]), np.array([1.0, 0.0])))


def test_equal_mass_bins_split_sorted_probabilities():
    p = np.array([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8])
    bins = metrics.equal_mass_bins(p, 3)
    # sorted: 0.1 0.2 0.3 | 0.5 0.7 | 0.8 0.9  (array_split puts the remainder first)
    assert bins.tolist() == [2, 0, 1, 0, 1, 0, 2]
    y = np.array([1, 0, 1, 0, 1, 0, 1])
    expected = (3 * abs(0 - 0.2) + 2 * abs(1 - 0.6) + 2 * abs(1 - 0.85)) / 7
    assert metrics.ece(y, p, 3, strategy="mass") == pytest.approx(expected)


def test_error_threshold_is_inclusive_and_auc_needs_two_classes():
    assert metrics.error_rate(np.array([1, 0]), np.array([0.5, 0.49])) == 0.0
    assert np.isnan(metrics.auroc(np.array([1, 1]), np.array([0.2, 0.8])))
    assert metrics.auroc(np.array([0, 1]), np.array([0.2, 0.8])) == 1.0


def _score_cases():
    """(y, p) pairs: continuous scores, heavy ties, rounded scores, tiny and unbalanced samples."""
    rng = np.random.default_rng(7)
    for n in (2, 3, 7, 50, 400, 3000):
        y = rng.integers(0, 2, n)
        y[0], y[-1] = 0, 1  # both classes present
        yield y, rng.beta(0.7, 0.7, n)
        yield y, np.round(rng.random(n), 1)  # ~10 distinct values: many ties across classes
        yield y, rng.integers(0, 3, n).astype(np.float64)
    y = np.r_[np.ones(3), np.zeros(997)].astype(np.int64)  # 0.3 % positives
    yield y, rng.random(1000)
    yield np.array([0, 1, 0, 1]), np.full(4, 0.5)  # every score tied
    yield np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.2, 0.1])  # perfect ranking
    yield np.array([0, 0, 1, 1]), np.array([0.9, 0.8, 0.2, 0.1])  # reversed ranking


def test_auroc_and_auprc_equal_scikit_learn_to_the_last_bit():
    from sklearn.metrics import average_precision_score, roc_auc_score

    for y, p in _score_cases():
        assert metrics.auroc(y, p) == roc_auc_score(y, p)
        assert metrics.auprc(y, p) == average_precision_score(y, p)


def test_auroc_is_the_mann_whitney_pair_count():
    # brute force over every (unsafe, safe) pair: a tie counts one half
    for y, p in _score_cases():
        if len(y) > 400:
            continue
        pos, neg = p[y == 1], p[y == 0]
        wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
        assert metrics.auroc(y, p) == pytest.approx(wins / (len(pos) * len(neg)), rel=1e-12)


def test_ranking_metrics_reject_non_finite_scores():
    with pytest.raises(ValueError, match="finite"):
        metrics.auroc(np.array([0, 1]), np.array([0.2, np.nan]))


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_average_ranks_equal_scipy_rankdata(axis):
    from scipy.stats import rankdata

    rng = np.random.default_rng(3)
    for values in (rng.random((6, 9)), np.round(rng.random((8, 15)), 1), np.ones((3, 4)), rng.integers(0, 3, (5, 5))):
        assert np.array_equal(metrics.average_ranks(values, axis=axis), rankdata(values, method="average", axis=axis))
    flat = np.array([3.0, 1.0, 3.0, 2.0, 1.0])
    assert metrics.average_ranks(flat).tolist() == [4.5, 1.5, 4.5, 3.0, 1.5]
