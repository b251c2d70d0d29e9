"""The 15 training-free aggregation rules: hand-computed examples, identities, a brute-force reference."""

from __future__ import annotations

import math
import statistics

import numpy as np
import polars as pl
import pytest
from scipy.special import expit

from prompt_reliability.analysis import aggregation, metrics
from prompt_reliability.analysis.aggregation import (
    RULES,
    AggregationError,
    aggregate,
    aggregation_summary,
    aggregation_sweep,
    bias_scale_shrink,
    logits,
    write_aggregation,
    write_aggregation_summary,
)
from prompt_reliability.analysis.lock import locked_scores
from prompt_reliability.base import io

PAPER_RULES = [
    "mean", "trimmed_mean", "median_prob", "entropy_weighted_mean",
    "mean_logit", "mean_logit_uniform", "trimmed_logit_mean", "median_logit",
    "bias_corrected_logit_mean", "bias_scale_logit_mean",
    "bias_scale_shrink_0.9", "bias_scale_shrink_0.75", "bias_scale_shrink_0.5", "bias_scale_shrink_0.25", "bias_scale_shrink_0.1",
]

UNTRIMMED = [r for r in PAPER_RULES if not r.startswith("trimmed")]  # rules defined for K = 2

# three samples x five prompts: a spread row, an all-0.5 row, a row with exact 0 and 1
HAND_P = np.array([
    [0.1, 0.2, 0.6, 0.9, 0.8],
    [0.5, 0.5, 0.5, 0.5, 0.5],
    [0.0, 1.0, 0.3, 0.7, 0.5],
])


def _sigmoid(t: float) -> float:
    return 1.0 / (1.0 + math.exp(-t))


def _logit(p: float, eps: float = 1e-12) -> float:
    p = min(max(p, eps), 1.0 - eps)
    return math.log(p / (1.0 - p))


def test_registry_holds_the_paper_rules_in_order():
    assert list(RULES) == PAPER_RULES


def test_probability_space_rules_on_hand_example():
    scores = aggregate(HAND_P)
    np.testing.assert_allclose(scores["mean"], [0.52, 0.5, 0.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(scores["trimmed_mean"], [1.6 / 3, 0.5, 0.5], rtol=0, atol=1e-15)
    np.testing.assert_allclose(scores["median_prob"], [0.6, 0.5, 0.5], rtol=0, atol=1e-15)
    # entropy weights 1 - H(p)/log 2; all-0.5 row: every weight is 0 -> uniform; row 2 is symmetric -> 0.5
    def w(p):
        h = -(p * math.log(p) + (1 - p) * math.log(1 - p))
        return 1 - h / math.log(2)
    row0 = HAND_P[0]
    expected0 = sum(w(p) * p for p in row0) / sum(w(p) for p in row0)
    np.testing.assert_allclose(scores["entropy_weighted_mean"], [expected0, 0.5, 0.5], rtol=1e-14, atol=1e-15)


def test_logit_space_rules_on_hand_example():
    scores = aggregate(HAND_P)
    z0 = [_logit(p) for p in HAND_P[0]]
    np.testing.assert_allclose(scores["mean_logit"][0], _sigmoid(sum(z0) / 5), rtol=1e-13)
    # logit(0.2) = -logit(0.8): the trimmed logit mean of row 0 is logit(0.6) / 3
    np.testing.assert_allclose(scores["trimmed_logit_mean"], [_sigmoid(_logit(0.6) / 3), 0.5, 0.5], rtol=1e-12)
    np.testing.assert_allclose(scores["median_logit"], [0.6, 0.5, 0.5], rtol=1e-12)
    # p = 0 and p = 1 are clipped to eps and 1 - eps before the logit: finite and symmetric
    assert np.isfinite(logits(HAND_P)).all()
    assert logits(HAND_P)[2, 0] == pytest.approx(-_logit(1 - 1e-12), rel=1e-6)
    z2 = [_logit(p) for p in HAND_P[2]]  # logit(1e-12) + logit(1 - 1e-12) is not exactly 0 in floating point
    np.testing.assert_allclose(scores["mean_logit"][1:], [0.5, _sigmoid(sum(z2) / 5)], rtol=1e-12)


def test_prompt_wise_corrections_on_hand_example():
    # prompt 1 logits: mean 0, sd 1; prompt 2: mean 2, sd 2 -> pooled mu = 1, sd = 1.5
    z = np.array([[-1.0, 0.0], [-1.0, 4.0], [1.0, 0.0], [1.0, 4.0]])
    raw_mean = np.array([-0.5, 1.5, 0.5, 2.5])
    # z'' = standardised * 1.5 + 1: prompt 1 [-.5, -.5, 2.5, 2.5], prompt 2 [-.5, 2.5, -.5, 2.5]
    bias_scale_mean = np.array([-0.5, 1.0, 1.0, 2.5])
    scores = aggregate(expit(z), rules=UNTRIMMED)
    np.testing.assert_allclose(scores["mean_logit"], expit(raw_mean), rtol=1e-12)
    # shifting every prompt to the pooled mean leaves the mean over prompts unchanged
    np.testing.assert_allclose(scores["bias_corrected_logit_mean"], expit(raw_mean), rtol=1e-12)
    np.testing.assert_allclose(scores["bias_scale_logit_mean"], expit(bias_scale_mean), rtol=1e-12)
    for lam in aggregation.SHRINK_LAMBDAS:
        np.testing.assert_allclose(scores[f"bias_scale_shrink_{lam}"], expit(lam * bias_scale_mean + (1 - lam) * raw_mean), rtol=1e-12)


def test_constant_prompt_gets_the_pooled_mean_instead_of_nan():
    p = np.column_stack([expit(np.array([-1.0, 1.0])), np.full(2, 0.3)])
    scores = aggregate(p, rules=UNTRIMMED)
    assert all(np.isfinite(s).all() for s in scores.values())
    z = logits(p)
    mu, sd = z.mean(axis=0).mean(), z.std(axis=0).mean()
    # prompt 1 standardised to [-1, 1]; prompt 2 has sd 0 and contributes mu
    expected = expit(((np.array([-1.0, 1.0]) * sd + mu) + mu) / 2)
    np.testing.assert_allclose(scores["bias_scale_logit_mean"], expected, rtol=1e-12)


def _brute_force(p: np.ndarray, eps: float = 1e-12) -> dict[str, list[float]]:
    """All 15 rules with Python loops and the statistics module, written from the issue's definitions."""
    n, k = p.shape
    z = [[_logit(float(p[i, j]), eps) for j in range(k)] for i in range(n)]
    mu_k = [statistics.fmean(z[i][j] for i in range(n)) for j in range(k)]
    sd_k = [statistics.pstdev([z[i][j] for i in range(n)]) for j in range(k)]
    mu, sd = statistics.fmean(mu_k), statistics.fmean(sd_k)
    out: dict[str, list[float]] = {name: [] for name in PAPER_RULES}
    for i in range(n):
        row, zr = [float(v) for v in p[i]], z[i]
        out["mean"].append(statistics.fmean(row))
        out["trimmed_mean"].append(statistics.fmean(sorted(row)[1:-1]))
        out["median_prob"].append(statistics.median(row))
        weights = [1 - (-(q * math.log(q) if q > 0 else 0) - ((1 - q) * math.log(1 - q) if q < 1 else 0)) / math.log(2) for q in row]
        weights = weights if sum(weights) > 0 else [1.0] * k
        out["entropy_weighted_mean"].append(sum(w * q for w, q in zip(weights, row)) / sum(weights))
        out["mean_logit"].append(_sigmoid(statistics.fmean(zr)))
        out["mean_logit_uniform"].append(_sigmoid(statistics.fmean(zr)))
        out["trimmed_logit_mean"].append(_sigmoid(statistics.fmean(sorted(zr)[1:-1])))
        out["median_logit"].append(_sigmoid(statistics.median(zr)))
        z1 = [zr[j] - mu_k[j] + mu for j in range(k)]
        z2 = [(zr[j] - mu_k[j]) / sd_k[j] * sd + mu for j in range(k)]
        out["bias_corrected_logit_mean"].append(_sigmoid(statistics.fmean(z1)))
        out["bias_scale_logit_mean"].append(_sigmoid(statistics.fmean(z2)))
        for lam in (0.9, 0.75, 0.5, 0.25, 0.1):
            out[f"bias_scale_shrink_{lam}"].append(_sigmoid(statistics.fmean(lam * a + (1 - lam) * b for a, b in zip(z2, zr))))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_every_rule_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    p = expit(rng.normal(0, 2, size=(40, 15)) + rng.normal(0, 1, size=15))
    p[0, :3] = [0.0, 1.0, 0.5]
    p[1] = 0.5
    expected = _brute_force(p)
    scores = aggregate(p)
    for name in PAPER_RULES:
        np.testing.assert_allclose(scores[name], expected[name], rtol=1e-10, atol=1e-13, err_msg=name)


def test_identities_hold_exactly():
    rng = np.random.default_rng(3)
    # Fortran-ordered input, as polars' to_numpy often returns: identities must not depend on memory layout
    p = np.asfortranarray(expit(rng.normal(0, 3, size=(257, 15))))
    p[5, 2], p[9, 4] = 0.0, 1.0
    scores = aggregate(p)
    z = logits(p)
    assert np.array_equal(scores["mean_logit_uniform"], scores["mean_logit"])  # rule 6 = rule 5
    assert np.array_equal(bias_scale_shrink(p, z, lam=1.0), scores["bias_scale_logit_mean"])  # shrink 1 = rule 10
    assert np.array_equal(bias_scale_shrink(p, z, lam=0.0), scores["mean_logit"])  # shrink 0 = rule 5
    # rule 9 equals rule 5 mathematically (the shifts average to zero over prompts), up to rounding only
    np.testing.assert_allclose(scores["bias_corrected_logit_mean"], scores["mean_logit"], rtol=1e-12)
    # a shrink strictly between 0 and 1 is neither end
    assert not np.allclose(scores["bias_scale_shrink_0.5"], scores["mean_logit"])
    assert not np.allclose(scores["bias_scale_shrink_0.5"], scores["bias_scale_logit_mean"])


def test_sweep_reports_every_rule_and_identical_twins():
    rng = np.random.default_rng(4)
    y = (np.arange(120) % 3 == 0).astype(np.int8)
    p = expit(2.0 * (2 * y[:, None] - 1) + rng.normal(0, 1.5, size=(120, 15)))
    table = aggregation_sweep(y, p, n_bins=15)
    assert table.columns == ["rule", "nll", "ece", "auroc", "auprc"]
    assert table["rule"].to_list() == PAPER_RULES
    rows = {r["rule"]: r for r in table.iter_rows(named=True)}
    assert {k: v for k, v in rows["mean_logit"].items() if k != "rule"} == {k: v for k, v in rows["mean_logit_uniform"].items() if k != "rule"}
    mean = p.mean(axis=1)
    assert rows["mean"]["nll"] == metrics.nll(y, mean)
    assert rows["mean"]["ece"] == metrics.ece(y, mean, 15)
    assert rows["mean"]["auroc"] == metrics.auroc(y, mean)


def test_sweep_self_check_fails_when_a_twin_drifts(monkeypatch):
    monkeypatch.setitem(RULES, "mean_logit_uniform", lambda p, z: expit(z.mean(axis=1)) * (1 - 1e-12))
    p = expit(np.random.default_rng(0).normal(size=(20, 15)))
    with pytest.raises(AggregationError, match="self-check failed: rule 'mean_logit_uniform' must equal 'mean_logit'"):
        aggregation_sweep(np.arange(20) % 2, p)


def test_adding_a_rule_is_one_function(monkeypatch):
    monkeypatch.setattr(aggregation, "RULES", dict(RULES))

    @aggregation.register("max_prob")
    def max_prob(p, z):
        return p.max(axis=1)

    p = expit(np.random.default_rng(0).normal(size=(20, 15)))
    table = aggregation_sweep(np.arange(20) % 2, p)
    assert table["rule"].to_list() == [*PAPER_RULES, "max_prob"]
    with pytest.raises(ValueError, match="registered twice"):
        aggregation.register("mean")(max_prob)


def test_trimmed_rules_need_three_prompts():
    with pytest.raises(AggregationError, match="need K >= 3 prompts, got K = 2.*'prompts'"):
        aggregate(np.full((4, 2), 0.4), rules=["trimmed_mean"])
    with pytest.raises(AggregationError, match="unknown aggregation rules \\['nope'\\]"):
        aggregate(np.full((4, 3), 0.4), rules=["nope"])


def _pair_table(values: dict[tuple[str, str, str], dict[str, float]]) -> pl.DataFrame:
    return pl.DataFrame([{"model": m, "dataset": d, "split": s, "rule": rule, "nll": nll, "ece": 0.0, "auroc": 0.5, "auprc": 0.5}
                         for (m, d, s), rules in values.items() for rule, nll in rules.items()])


def test_summary_counts_exact_ties_as_wins_and_averages_ranks(tmp_path):
    tie = 0.1 + 0.2  # 0.30000000000000004: must survive the CSV round trip
    table = _pair_table({
        ("m1", "d", "test"): {"r1": tie, "r2": 0.1 + 0.2, "r3": 0.4},
        ("m2", "d", "test"): {"r1": 0.5, "r2": 0.2, "r3": 0.6},
        ("m1", "e", "test"): {"r1": 0.1, "r2": 0.7, "r3": 0.7},
    })
    summary = aggregation_summary(table)
    assert summary.columns == ["rule", "n_pairs", "nll_wins", "avg_nll_rank", "mean_nll"]
    assert summary["rule"].to_list() == ["r1", "r2", "r3"]
    assert summary["nll_wins"].to_list() == [2, 2, 0]
    assert summary["n_pairs"].to_list() == [3, 3, 3]
    np.testing.assert_allclose(summary["avg_nll_rank"], [(1.5 + 2 + 1) / 3, (1.5 + 1 + 2.5) / 3, (3 + 3 + 2.5) / 3])
    io.write_parquet(table, tmp_path / "aggregation.parquet")
    from_file = write_aggregation_summary(table=str(tmp_path / "aggregation.parquet"), summary=str(tmp_path / "s.parquet"),
                                          csv=str(tmp_path / "s.csv"), md=str(tmp_path / "s.md"))
    assert from_file.equals(summary) and pl.read_parquet(tmp_path / "s.parquet").equals(summary)
    assert pl.read_csv(tmp_path / "s.csv")["nll_wins"].to_list() == [2, 2, 0]
    assert "| r1 | 3 | 2 | 1.5000 |" in (tmp_path / "s.md").read_text()


def test_summary_needs_every_rule_in_every_pair():
    table = _pair_table({("m1", "d", "test"): {"r1": 0.1, "r2": 0.2}, ("m2", "d", "test"): {"r1": 0.3}})
    with pytest.raises(AggregationError, match="every pair must report every rule"):
        aggregation_summary(table)


def test_write_aggregation_uses_the_split_and_labels_the_pair(tmp_path):
    rng = np.random.default_rng(5)
    prompt_ids = [f"{f}{i}" for f in "ABC" for i in range(1, 6)]
    n = 30
    p = expit(rng.normal(size=(2 * n, 15)))
    matrix = pl.DataFrame({"sample_id": [f"s{i}" for i in range(2 * n)], "split": ["train"] * n + ["test"] * n,
                           "label": (np.arange(2 * n) % 2).astype(np.int8), **{pid: p[:, k] for k, pid in enumerate(prompt_ids)}})
    io.write_parquet(matrix, tmp_path / "m.parquet")
    table = write_aggregation(matrix=str(tmp_path / "m.parquet"), table=str(tmp_path / "out.parquet"), model="m", dataset="d", split="test",
                              prompt_ids=prompt_ids, analysis={"ece_bins": 10, "eps": 1e-12})
    assert pl.read_parquet(tmp_path / "out.parquet").equals(table)
    assert table.columns == ["model", "dataset", "split", "rule", "nll", "ece", "auroc", "auprc"]
    assert table.select("model", "dataset", "split").unique().rows() == [("m", "d", "test")]
    y_test = matrix["label"].to_numpy()[n:]
    np.testing.assert_allclose(table.filter(pl.col("rule") == "mean")["nll"].item(), metrics.nll(y_test, p[n:].mean(axis=1)), rtol=1e-14)
    # bit-identical to the mean ensemble of the lock module (reliability and calibration tables)
    lock = {"prompt_ids": prompt_ids, "selected_prompt": "A1", "random_prompt": "A2"}
    mean = locked_scores(matrix.filter(pl.col("split") == "test"), lock)["mean"]
    assert table.filter(pl.col("rule") == "mean")["nll"].item() == metrics.nll(y_test, mean)
    assert table.filter(pl.col("rule") == "mean")["ece"].item() == metrics.ece(y_test, mean, 10)
