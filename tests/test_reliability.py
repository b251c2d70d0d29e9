"""Reliability of locked single prompts vs the mean: metric cross-checks, tables, win counts."""

from __future__ import annotations

import math

import brute_force
import numpy as np
import polars as pl
import pytest
import relplot
from conftest import PROMPT_IDS, analysis_defaults

from prompt_reliability.analysis import metrics, reliability
from prompt_reliability.analysis.lock import build_lock

FAMILY_OF = {pid: pid[0] for pid in PROMPT_IDS}
ANALYSIS = {**analysis_defaults(), "seed": 42, "ece_bins": 15, "eps": 1e-12, "threshold": 0.5}


def random_scores(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, size=n)
    p = rng.uniform(size=n)
    p[:6] = [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]
    return y, p


# --- the metric definitions against independent implementations --------------------------------


def test_nll_matches_sklearn_log_loss_and_clips_at_eps():
    from sklearn.metrics import log_loss

    y, p = random_scores()
    # sklearn clips at machine epsilon, this package at 1e-12: compare where clipping cannot matter
    inside = (p > 0) & (p < 1)
    assert metrics.nll(y[inside], p[inside]) == pytest.approx(log_loss(y[inside], p[inside]), rel=1e-12)
    # a confident mistake costs -log(eps), a confident hit costs -log(1 - eps)
    assert metrics.nll(np.array([1, 0]), np.array([0.0, 1.0])) == pytest.approx(-math.log(1e-12))
    assert metrics.nll(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(1e-12, rel=1e-3)
    assert metrics.nll(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(math.log(2))


@pytest.mark.parametrize("n_bins,strategy", [(10, "width"), (15, "width"), (20, "width"), (15, "mass"), (7, "mass")])
def test_ece_matches_a_brute_force_bin_loop(n_bins, strategy):
    y, p = random_scores(n=211, seed=n_bins)
    assert metrics.ece(y, p, n_bins, strategy) == pytest.approx(brute_force.ece(y, p, n_bins, strategy), abs=1e-12)


def test_ece_on_exact_0_half_and_1_with_empty_bins():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.0, 0.5, 1.0, 1.0])
    # bins 0 ({0}), 7 ({0.5}: floor(7.5)) and 14 ({1, 1}: p = 1 goes to the last bin); the other 12 are empty
    np.testing.assert_array_equal(metrics.equal_width_bins(p, 15), [0, 7, 14, 14])
    assert metrics.ece(y, p, 15) == pytest.approx((0 + 0.5 + 2 * 0.5) / 4)
    assert metrics.ece(np.array([1, 0]), np.array([0.5, 0.5]), 15) == 0.0


def test_auroc_and_auprc_match_brute_force_definitions():
    y, p = random_scores(n=120, seed=5)
    p = np.round(p, 1)  # many ties
    pos, neg = p[y == 1], p[y == 0]
    pairs = [(a > b) + 0.5 * (a == b) for a in pos for b in neg]
    assert metrics.auroc(y, p) == pytest.approx(np.mean(pairs))
    # average precision: sum over distinct thresholds (descending) of recall gain x precision
    ap, previous_recall = 0.0, 0.0
    for t in sorted(set(p), reverse=True):
        predicted = p >= t
        recall = (predicted & (y == 1)).sum() / (y == 1).sum()
        ap += (recall - previous_recall) * (predicted & (y == 1)).sum() / predicted.sum()
        previous_recall = recall
    assert metrics.auprc(y, p) == pytest.approx(ap)
    assert math.isnan(metrics.auroc(np.ones(4), p[:4]))


# --- per-pair tables ----------------------------------------------------------------------------


def paper_like_matrix(n_train: int = 200, n_test: int = 150, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = (rng.uniform(size=n) < 0.4).astype(np.int8)
    bias = rng.normal(0, 1, size=15)
    z = (2 * y - 1)[:, None] * 1.5 + bias + rng.normal(0, 1.5, size=(n, 15))
    p = 1 / (1 + np.exp(-z))
    ids = pl.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "split": ["train"] * n_train + ["test"] * n_test, "label": y})
    return ids.with_columns([pl.Series(pid, p[:, k]) for k, pid in enumerate(PROMPT_IDS)])


@pytest.fixture(scope="module")
def pair():
    matrix = paper_like_matrix()
    lock = build_lock(matrix, model="m", dataset="d", split="train", prompt_ids=PROMPT_IDS, analysis=ANALYSIS)
    test = matrix.filter(pl.col("split") == "test")
    return matrix, lock, test["label"].to_numpy(), test.select(PROMPT_IDS).to_numpy()


def test_reliability_table_scores_locked_prompts_mean_and_family_means(pair):
    matrix, lock, y, p = pair
    table = reliability.reliability_table(matrix, "test", lock, FAMILY_OF)
    assert table.columns == ["split", "method", "n", "ece", "nll", "auroc", "auprc", "error", "brier", "macro_ce", "mce",
                             "smece"]
    assert table["method"].to_list() == ["selected", "random", "mean", "mean_A", "mean_B", "mean_C"]
    expected = {
        "selected": p[:, PROMPT_IDS.index(lock["selected_prompt"])],
        "random": p[:, PROMPT_IDS.index(lock["random_prompt"])],
        "mean": p.mean(axis=1),
        "mean_A": p[:, 0:5].mean(axis=1),
        "mean_B": p[:, 5:10].mean(axis=1),
        "mean_C": p[:, 10:15].mean(axis=1),
    }
    for row in table.iter_rows(named=True):
        assert row["n"] == len(y)
        want = metrics.reliability_metrics(y, expected[row["method"]])
        assert {k: row[k] for k in want} == pytest.approx(want)
        assert row["smece"] == relplot.smECE(expected[row["method"]], y.astype(float))  # the reference itself


def test_lock_from_other_prompts_is_rejected(pair):
    matrix, lock, _, _ = pair
    stale = {**lock, "prompt_ids": PROMPT_IDS[:10]}
    with pytest.raises(reliability.LockMismatchError, match="re-run the lock rule"):
        reliability.reliability_table(matrix, "test", stale, FAMILY_OF, source="m.parquet")


def test_ranking_distribution_summarises_single_prompts():
    per_prompt = pl.DataFrame({"prompt_id": ["P1", "P2", "P3", "P4", "P5"], "auroc": [0.6, 0.7, 0.8, 0.5, 0.9],
                               "auprc": [0.4, 0.5, 0.3, 0.6, 0.7]})
    rel = pl.DataFrame({"method": ["selected", "random", "mean"], "auroc": [0.8, 0.6, 0.75], "auprc": [0.3, 0.4, 0.5]})
    lock = {"prompt_ids": ["P1", "P2", "P3", "P4", "P5"], "selected_prompt": "P3", "random_prompt": "P1"}
    table = reliability.ranking_distribution(per_prompt, rel, lock)
    assert table.rows(named=True) == [
        {"metric": "auroc", "k": 5, "sel": 0.8, "rand": 0.6, "min15": 0.5, "med15": 0.7, "mean15": pytest.approx(0.7),
         "max15": 0.9, "mean_ens": 0.75, "mean_beats": 3},
        # a tie (P2 = 0.5) is not a win
        {"metric": "auprc", "k": 5, "sel": 0.3, "rand": 0.4, "min15": 0.3, "med15": 0.5, "mean15": pytest.approx(0.5),
         "max15": 0.7, "mean_ens": 0.5, "mean_beats": 2},
    ]


def test_ece_variants_table_and_summary(pair):
    matrix, lock, y, p = pair
    variants = [{"bins": 10, "strategy": "width"}, {"bins": 15, "strategy": "mass"}]
    table = reliability.ece_variants_table(matrix, "test", lock, variants)
    assert table["variant"].to_list() == ["width-10", "mass-15"]
    selected = p[:, PROMPT_IDS.index(lock["selected_prompt"])]
    for row, variant in zip(table.iter_rows(named=True), variants):
        assert row["selected"] == metrics.ece(y, selected, variant["bins"], variant["strategy"])
        assert row["mean"] == metrics.ece(y, p.mean(axis=1), variant["bins"], variant["strategy"])
        assert row["gain"] == pytest.approx(row["selected"] - row["mean"])
    pieces = pl.DataFrame({"variant": ["w", "w", "w", "m"], "strategy": ["width"] * 3 + ["mass"], "bins": [10] * 3 + [15],
                           "gain": [0.1, -0.05, 0.2, 0.0]})
    summary = reliability.ece_variants_summary(pieces)
    assert summary.rows() == [("w", "width", 10, 3, 2, pytest.approx(0.25 / 3)), ("m", "mass", 15, 1, 0, 0.0)]


def test_win_counts_are_strict_and_skip_undefined_pairs():
    def rel(model, nll, ece):
        return {"model": [model] * 4, "dataset": ["d"] * 4, "split": ["test"] * 4, "method": ["selected", "random", "mean", "mean_A"],
                "nll": nll, "ece": ece}
    table = pl.concat([pl.DataFrame(rel("m1", [0.9, 1.0, 0.5, 0.6], [0.2, 0.3, 0.1, 0.3])),
                       pl.DataFrame(rel("m2", [0.5, 0.7, 0.5, 0.4], [0.1, 0.3, 0.2, 0.1]))])
    ranking = pl.DataFrame({"model": ["m1", "m1", "m2", "m2"], "dataset": ["d"] * 4, "split": ["test"] * 4,
                            "metric": ["auroc", "auprc"] * 2, "sel": [0.6, 0.5, 0.7, 0.6], "rand": [0.7, 0.5, 0.6, 0.7],
                            "med15": [0.65, 0.55, float("nan"), 0.6], "mean15": [0.6, 0.5, 0.6, 0.6], "mean_ens": [0.8, 0.5, 0.65, 0.8]})
    wins = {(r["challenger"], r["baseline"], r["metric"]): r for r in reliability.win_counts(table, ranking).iter_rows(named=True)}
    assert {k: wins[("mean", "selected", "nll")][k] for k in ("wins", "ties", "losses", "pairs")} == {"wins": 1, "ties": 1, "losses": 0, "pairs": 2}
    assert wins[("mean", "selected", "nll")]["mean_gain"] == pytest.approx(0.2)
    assert wins[("mean", "selected", "ece")]["wins"] == 1 and wins[("mean", "selected", "ece")]["losses"] == 1
    assert wins[("mean_A", "selected", "nll")]["wins"] == 2
    assert wins[("mean", "random", "nll")]["wins"] == 2
    assert wins[("mean_ens", "med15", "auroc")]["pairs"] == 1  # m2's Med15 AUROC is undefined
    assert wins[("mean_ens", "sel", "auprc")]["ties"] == 1 and wins[("mean_ens", "sel", "auprc")]["wins"] == 1
    assert wins[("med15", "sel", "auroc")]["wins"] == 1


def test_calibration_curve_bins_agree_with_ece(pair):
    _, _, y, p = pair
    score = p[:, 3].copy()
    score[:3] = [0.0, 0.5, 1.0]
    curve = reliability.calibration_curve(y, score, 15)
    assert curve["count"].sum() == len(y)
    filled = curve.filter(pl.col("count") > 0)
    ece = (filled["count"] / len(y) * (filled["frac_unsafe"] - filled["mean_p"]).abs()).sum()
    assert ece == pytest.approx(metrics.ece(y, score, 15))
    assert curve.filter(pl.col("count") == 0)["mean_p"].is_nan().all()
    assert curve["upper"][-1] == 1.0


def test_method_deltas_sign_convention():
    table = pl.DataFrame({"model": ["m"] * 2, "dataset": ["d"] * 2, "split": ["t"] * 2, "method": ["selected", "mean"],
                          "ece": [0.2, 0.1], "nll": [0.5, 0.6], "auroc": [0.7, 0.8], "auprc": [0.6, 0.6]})
    deltas = {r["metric"]: r for r in reliability.method_deltas(table).iter_rows(named=True)}
    assert deltas["ece"]["delta"] == pytest.approx(-0.1) and deltas["ece"]["better"]
    assert deltas["nll"]["delta"] == pytest.approx(0.1) and not deltas["nll"]["better"]
    assert deltas["auroc"]["better"] and not deltas["auprc"]["better"]
