"""Operating points on hand-made scores: ties, unreachable targets, nothing flagged, precision at prevalence."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from prompt_reliability.analysis import operating_points as op


def brute_recall_threshold(y, s, r):
    cand = sorted(set(s)) + [math.inf]
    ok = [t for t in cand if sum(1 for yi, si in zip(y, s) if yi == 1 and si >= t) / max(1, sum(y)) >= r and sum(y)]
    return max(ok) if ok else None


def brute_fpr_threshold(y, s, f):
    cand = sorted(set(s)) + [math.inf]
    n0 = sum(1 for yi in y if yi == 0)
    ok = [t for t in cand if n0 and sum(1 for yi, si in zip(y, s) if yi == 0 and si >= t) / n0 <= f]
    return min(ok) if ok else None


def test_ties_share_one_candidate():
    # unsafe scores 0.9, 0.7, 0.7, 0.2; safe 0.7, 0.3, 0.1
    y = np.array([1, 1, 1, 1, 0, 0, 0])
    s = np.array([0.9, 0.7, 0.7, 0.2, 0.7, 0.3, 0.1])
    # recall at 0.7 = 3/4 (both tied unsafe 0.7 flagged together); 0.75 needs t = 0.7
    assert op.recall_threshold(y, s, 0.75) == 0.7
    assert op.recall_threshold(y, s, 0.5) == 0.7  # largest t with recall >= 0.5: 0.9 gives 0.25
    assert op.recall_threshold(y, s, 0.9) == 0.2
    # FPR at 0.7 = 1/3 (the tied safe 0.7 is flagged with the unsafe ones), at 0.9 = 0
    assert op.fpr_threshold(y, s, 0.0) == 0.9
    assert op.fpr_threshold(y, s, 0.34) == 0.7
    assert op.fpr_threshold(y, s, 1.0) == 0.1


def test_matches_brute_force():
    rng = np.random.default_rng(0)
    for _ in range(30):
        n = int(rng.integers(2, 30))
        y = rng.integers(0, 2, n)
        s = np.round(rng.random(n), 1)  # many ties
        for r in (0.0, 0.3, 0.9, 1.0):
            assert op.recall_threshold(y, s, r) == brute_recall_threshold(list(y), list(s), r)
        for f in (0.0, 0.05, 0.5, 1.0):
            assert op.fpr_threshold(y, s, f) == brute_fpr_threshold(list(y), list(s), f)


def test_target_no_threshold_reaches_gives_empty_row(caplog):
    lock_y = np.zeros(4, dtype=int)  # no unsafe sample on the lock split: no recall target can be met
    lock_s = np.array([0.1, 0.2, 0.3, 0.4])
    assert op.recall_threshold(lock_y, lock_s, 0.9) is None
    frame = op.operating_points(lock_y, {"mean": lock_s}, np.array([1, 0]), {"mean": np.array([0.5, 0.2])},
                                [0.9], [0.05])
    row = frame.filter(pl.col("target") == "recall").row(0, named=True)
    assert row["threshold"] is None and row["recall"] is None and row["precision"] is None
    assert "no lock-split threshold" in caplog.text
    # all-unsafe lock split: no FPR target can be met
    assert op.fpr_threshold(np.ones(3, dtype=int), np.array([0.1, 0.5, 0.9]), 0.05) is None


def test_nothing_flagged_leaves_precision_empty():
    lock_y = np.array([1, 0, 0, 0])
    lock_s = np.array([0.5, 0.9, 0.8, 0.7])  # every safe sample scores above the unsafe one
    # FPR 0 needs +inf: nothing is flagged
    assert op.fpr_threshold(lock_y, lock_s, 0.0) == math.inf
    frame = op.operating_points(lock_y, {"selected": lock_s}, np.array([1, 1, 0]), {"selected": np.array([1.0, 0.2, 0.3])},
                                [], [0.0], ["native", 0.05]).filter(pl.col("kind") == "point")
    assert frame.height == 2
    for row in frame.iter_rows(named=True):
        assert row["threshold"] == math.inf
        assert row["recall"] == 0.0 and row["fpr"] == 0.0
        assert row["precision"] is None and row["flag_rate"] == 0.0


def test_precision_at_prevalence():
    lock_y = np.array([1, 1, 0, 0])
    lock_s = np.array([0.9, 0.6, 0.5, 0.1])
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    s = np.array([0.95, 0.7, 0.2, 0.65, 0.3, 0.2, 0.1, 0.05])
    frame = op.operating_points(lock_y, {"mean": lock_s}, y, {"mean": s}, [1.0], [], ["native", 0.05])
    assert tuple(frame.columns) == op.COLUMNS[3:]
    assert frame["kind"].to_list() == ["point", "point", "guaranteed", "guaranteed"]
    frame = frame.filter(pl.col("kind") == "point")
    native, low = frame.iter_rows(named=True)
    assert native["threshold"] == 0.6
    assert native["recall"] == pytest.approx(2 / 3) and native["fpr"] == pytest.approx(1 / 5)
    assert native["prevalence"] == "native" and low["prevalence"] == "0.05"
    assert native["precision"] == pytest.approx(2 / 3)  # 2 unsafe of 3 flagged at the native 3/8
    pi = 0.05
    expected = pi * (2 / 3) / (pi * (2 / 3) + (1 - pi) * (1 / 5))
    assert low["precision"] == pytest.approx(expected)
    assert low["flag_rate"] == pytest.approx(pi * (2 / 3) + (1 - pi) / 5)


def _binomial_tail(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) <= k), summed from the definition."""
    return sum(math.comb(n, i) * p ** i * (1 - p) ** (n - i) for i in range(k + 1))


def brute_guaranteed_recall(y, s, r, delta):
    """Learn-then-Test, fixed sequence from the lowest candidate up: keep going while the binomial tail of the
    misses is <= delta; the last candidate passed."""
    m = sum(y)
    chosen = None
    for t in sorted(set(s)):
        misses = sum(1 for yi, si in zip(y, s) if yi == 1 and si < t)
        if not m or _binomial_tail(misses, m, 1 - r) > delta:
            break
        chosen = t
    return chosen


def brute_guaranteed_fpr(y, s, f, delta):
    m0 = sum(1 for yi in y if yi == 0)
    chosen = None
    for t in [math.inf, *sorted(set(s), reverse=True)]:
        alarms = sum(1 for yi, si in zip(y, s) if yi == 0 and si >= t)
        if not m0 or _binomial_tail(alarms, m0, f) > delta:
            break
        chosen = t
    return chosen if chosen is not None and math.isfinite(chosen) else None


def test_guaranteed_thresholds_match_brute_force():
    rng = np.random.default_rng(3)
    for _ in range(25):
        n = int(rng.integers(5, 120))
        y = rng.integers(0, 2, n)
        s = np.round(rng.random(n), 2)  # ties
        for r in (0.5, 0.8, 0.95):
            for delta in (0.05, 0.3):
                assert op.guaranteed_recall_threshold(y, s, r, delta) == brute_guaranteed_recall(list(y), list(s), r, delta)
        for f in (0.05, 0.2, 0.5):
            for delta in (0.05, 0.3):
                assert op.guaranteed_fpr_threshold(y, s, f, delta) == brute_guaranteed_fpr(list(y), list(s), f, delta)


def test_guarantee_is_more_conservative_and_needs_enough_samples(caplog):
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 2000)
    s = 1 / (1 + np.exp(-(rng.normal(0, 1.2, 2000) + np.where(y == 1, 1.0, -1.0))))
    assert op.guaranteed_recall_threshold(y, s, 0.9, 0.05) <= op.recall_threshold(y, s, 0.9)
    assert op.guaranteed_fpr_threshold(y, s, 0.05, 0.05) >= op.fpr_threshold(y, s, 0.05)
    # 20 unsafe samples cannot certify recall >= 0.95 at delta = 0.05 (0.95^20 = 0.36 > 0.05): no threshold
    few = np.r_[np.ones(20, dtype=int), np.zeros(50, dtype=int)]
    assert op.guaranteed_recall_threshold(few, rng.random(70), 0.95, 0.05) is None
    frame = op.operating_points(few, {"mean": rng.random(70)}, np.array([1, 0]), {"mean": np.array([0.5, 0.2])},
                                [0.95], [0.05], delta=0.05)
    row = frame.filter((pl.col("target") == "recall") & (pl.col("kind") == "guaranteed")).row(0, named=True)
    assert row["threshold"] is None and row["confidence"] == pytest.approx(0.95)
    assert "too few samples" in caplog.text


def test_guarantee_holds_over_resplits():
    """The coverage proof in small (benchmarks/guaranteed_thresholds.py runs >= 1,000 resplits): over seeded
    lock samples from a known simulator, the guaranteed threshold's true recall meets the target in
    >= 1 - delta of them up to Monte-Carlo error; the point estimate's in about half."""
    from scipy.stats import norm

    target, delta, resplits, m = 0.9, 0.1, 300, 150
    rng = np.random.default_rng(20261205)
    guaranteed, point = [], []
    for _ in range(resplits):
        unsafe = rng.normal(1.0, 1.0, m)  # logits of the unsafe lock samples; true recall = 1 - Phi(logit(t) - 1)
        safe = rng.normal(-1.0, 1.0, 200)
        y = np.r_[np.ones(m, dtype=int), np.zeros(200, dtype=int)]
        s = 1 / (1 + np.exp(-np.r_[unsafe, safe]))
        for out, t in ((guaranteed, op.guaranteed_recall_threshold(y, s, target, delta)),
                       (point, op.recall_threshold(y, s, target))):
            out.append(1 - norm.cdf(np.log(t / (1 - t)) - 1.0) >= target)
    slack = 3 * math.sqrt(delta * (1 - delta) / resplits)
    assert np.mean(guaranteed) >= 1 - delta - slack
    assert 0.3 <= np.mean(point) <= 0.75
