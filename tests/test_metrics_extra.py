"""Brier, MacroCE, MCE, E-AURC and AUGRC against slow loops written from their definitions."""

import brute_force
import numpy as np
import pytest

from prompt_reliability.analysis import metrics


def loop_brier(y, p):
    return sum((p[i] - y[i]) ** 2 for i in range(len(y))) / len(y)


def loop_macro_ce(y, p):
    return sum(abs(p[i] - y[i]) for i in range(len(y))) / len(y)


def loop_curves(error, confidence):
    """(coverage, selective risk, generalised risk) at every distinct threshold, highest first."""
    points = []
    for t in sorted(set(confidence.tolist()), reverse=True):
        accepted = [i for i in range(len(error)) if confidence[i] >= t]
        wrong = sum(error[i] for i in accepted)
        points.append((len(accepted) / len(error), wrong / len(accepted), wrong / len(error)))
    return points


def loop_aurc(error, confidence):
    area, previous = 0.0, 0.0
    for coverage, risk, _ in loop_curves(error, confidence):
        area += (coverage - previous) * risk
        previous = coverage
    return area


def loop_augrc(error, confidence):
    area, c0, g0 = 0.0, 0.0, 0.0
    for coverage, _, g in loop_curves(error, confidence):
        area += (coverage - c0) * (g + g0) / 2
        c0, g0 = coverage, g
    return area


def geifman_aurc(error_in_order):
    """(1/N) sum_i risk of the first i samples, for a given acceptance order (no ties)."""
    n = len(error_in_order)
    return sum(sum(error_in_order[:i]) / i for i in range(1, n + 1)) / n


@pytest.mark.parametrize("seed", range(4))
def test_brier_macro_ce_mce_match_loops(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 200)
    p = rng.beta(0.6, 0.6, 200)
    p[:3] = [0.0, 1.0, 0.5]
    assert metrics.brier(y, p) == pytest.approx(loop_brier(y, p), abs=1e-12)
    assert metrics.macro_ce(y, p) == pytest.approx(loop_macro_ce(y, p), abs=1e-12)
    for bins in (5, 15):
        assert metrics.mce(y, p, bins) == pytest.approx(brute_force.mce(y, p, bins), abs=1e-12)
    values = metrics.reliability_metrics(y, p)
    assert values["brier"] == metrics.brier(y, p) and values["macro_ce"] == metrics.macro_ce(y, p)
    assert values["mce"] == metrics.mce(y, p, 15)


def test_hand_counted_brier_macro_ce_mce():
    y = np.array([1, 0, 1, 0])
    p = np.array([0.9, 0.2, 0.4, 0.45])
    assert metrics.brier(y, p) == pytest.approx((0.01 + 0.04 + 0.36 + 0.2025) / 4)
    assert metrics.macro_ce(y, p) == pytest.approx((0.1 + 0.2 + 0.6 + 0.45) / 4)
    # 2 bins: [0, .5) holds 0.2, 0.4, 0.45 (mean y 1/3, mean p 0.35); [.5, 1] holds 0.9 (gap 0.1)
    assert metrics.mce(y, p, 2) == pytest.approx(max(abs(1 / 3 - 0.35), 0.1))
    # MCE is the worst bin, ECE its weighted mean: MCE >= ECE
    assert metrics.mce(y, p, 2) >= metrics.ece(y, p, 2)


@pytest.mark.parametrize("seed", range(4))
def test_aurc_eaurc_augrc_match_loops(seed):
    rng = np.random.default_rng(seed)
    error = rng.integers(0, 2, 60).astype(float)
    confidence = np.round(rng.random(60), 1)  # many ties
    assert metrics.aurc(error, confidence) == pytest.approx(loop_aurc(error, confidence), abs=1e-12)
    assert metrics.augrc(error, confidence) == pytest.approx(loop_augrc(error, confidence), abs=1e-12)
    order = sorted(range(60), key=lambda i: error[i])  # every correct sample first
    optimum = geifman_aurc([error[i] for i in order])
    assert metrics.eaurc(error, confidence) == pytest.approx(loop_aurc(error, confidence) - optimum, abs=1e-12)


def test_aurc_without_ties_is_geifman_and_eaurc_zero_for_oracle():
    error = np.array([0, 1, 0, 0, 1, 0], dtype=float)
    confidence = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    assert metrics.aurc(error, confidence) == pytest.approx(geifman_aurc(error.tolist()))
    # a tie-free confidence that ranks both errors last is optimal
    oracle = np.array([0.9, 0.2, 0.8, 0.7, 0.1, 0.6])
    assert metrics.eaurc(error, oracle) == pytest.approx(0.0, abs=1e-15)
    assert metrics.eaurc(error, confidence) > 0
    # AUGRC by hand for the oracle: g = 0 until coverage 4/6, then 1/6 at 5/6 and 2/6 at 1
    assert metrics.augrc(error, oracle) == pytest.approx((1 / 6) * (1 / 6) / 2 + (1 / 6) * (1 / 6 + 2 / 6) / 2)


def test_no_errors_and_all_errors():
    conf = np.array([0.3, 0.2, 0.1])
    assert metrics.eaurc(np.zeros(3), conf) == 0.0 and metrics.augrc(np.zeros(3), conf) == 0.0
    # every sample wrong: risk 1 everywhere, nothing to rank; AUGRC = area under g = c, i.e. 1/2
    assert metrics.eaurc(np.ones(3), conf) == pytest.approx(0.0)
    assert metrics.augrc(np.ones(3), conf) == pytest.approx(0.5)


def test_selective_threshold_free_targets_per_signal():
    from prompt_reliability.analysis import selective

    y = np.array([1, 0, 1, 0, 1])
    p = np.array([0.9, 0.6, 0.3, 0.1, 0.7])  # errors at threshold 0.5: samples 1 and 2
    signals = {"std": np.array([0.1, 0.5, 0.4, 0.0, 0.2]), "margin": np.array([0.0, 0.0, 0.0, 0.0, 0.0])}
    table = selective.threshold_free_values(y, p, signals, 0.5)
    got = {(r["signal"], r["target"]): r["value"] for r in table.iter_rows(named=True)}
    error = np.array([0, 1, 1, 0, 0], dtype=float)
    assert got[("std", "eaurc_error")] == pytest.approx(0.0, abs=1e-15)  # std puts both errors last
    assert got[("std", "augrc_error")] == pytest.approx(loop_augrc(error, -signals["std"]))
    # one tie group: AURC = 2/5 at coverage 1, E-AURC = 2/5 - (1/5)(1/4 + 2/5)
    assert got[("margin", "eaurc_error")] == pytest.approx(0.4 - (0.25 + 0.4) / 5)
    assert got[("margin", "augrc_error")] == pytest.approx(0.2)


@pytest.mark.parametrize("seed", range(6))
def test_prr_matches_enumeration(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 8))
    error = rng.integers(0, 2, n).astype(float)
    error[0], error[1] = 0.0, 1.0  # both outcomes present
    confidence = np.round(rng.random(n), 1)  # ties
    assert metrics.prr(error, confidence) == pytest.approx(brute_force.prr(error.tolist(), confidence.tolist()), abs=1e-12)


def test_prr_anchors():
    error = np.array([0, 0, 1, 0, 1, 1], dtype=float)
    assert metrics.prr(error, -error) == pytest.approx(1.0)  # oracle: every correct sample first
    assert metrics.prr(error, error) < 0  # every error first: worse than random
    assert metrics.prr(error, np.zeros(6)) == pytest.approx(0.0)  # one tie group: the random order's expectation
    assert np.isnan(metrics.prr(np.zeros(4), np.arange(4.0)))  # nothing to reject: 0/0
    assert np.isnan(metrics.prr(np.ones(4), np.arange(4.0)))
