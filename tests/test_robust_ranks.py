"""Ranks and groups that do not react to rounding or to row order (issue 13, points 4 and the tie rule)."""

from __future__ import annotations

import numpy as np
import polars as pl

from prompt_reliability.analysis import aggregation, fragility, metrics, selective


def test_snap_ties_joins_rounding_only():
    values = np.array([1.0, 1.0 + 2.2e-16, 0.5, 0.5 + 1e-6, np.nan])
    snapped = metrics.snap_ties(values)
    assert snapped[0] == snapped[1] == 1.0
    assert snapped[2] == 0.5 and snapped[3] == 0.5 + 1e-6 and np.isnan(snapped[4])


def test_algebraically_identical_rules_always_tie_in_wins_and_ranks():
    rng = np.random.default_rng(0)
    rows = []
    for pair in range(6):
        y = rng.integers(0, 2, 300)
        p = 1 / (1 + np.exp(-(2 * y[:, None] - 1 + rng.normal(0, 1.5, (300, 15)))))
        table = aggregation.aggregation_sweep(y, p).with_columns(
            pl.lit("m").alias("model"), pl.lit(f"d{pair}").alias("dataset"), pl.lit("test").alias("split"))
        rows.append(table)
    table = pl.concat(rows)
    nll = {r: table.filter(pl.col("rule") == r)["nll"].to_numpy() for r in ("mean_logit", "bias_corrected_logit_mean")}
    assert np.allclose(nll["mean_logit"], nll["bias_corrected_logit_mean"], rtol=1e-12, atol=0)
    summary = {r["rule"]: r for r in aggregation.aggregation_summary(table).iter_rows(named=True)}
    for key in ("nll_wins", "avg_nll_rank"):
        assert summary["mean_logit"][key] == summary["bias_corrected_logit_mean"][key] == summary["mean_logit_uniform"][key]


def test_one_ulp_never_decides_a_win():
    base = 0.3
    table = pl.DataFrame({"model": ["m"] * 3, "dataset": ["d"] * 3, "split": ["t"] * 3,
                          "rule": ["a", "b", "c"], "nll": [base, np.nextafter(base, 1), 0.4]})
    summary = {r["rule"]: r for r in aggregation.aggregation_summary(table).iter_rows(named=True)}
    assert summary["a"]["nll_wins"] == summary["b"]["nll_wins"] == 1 and summary["c"]["nll_wins"] == 0
    assert summary["a"]["avg_nll_rank"] == summary["b"]["avg_nll_rank"] == 1.5


def _matrix(order):
    n, k = 200, 6
    rng = np.random.default_rng(1)
    agree = rng.random(n) < 0.6  # many samples with all prompts equal: sd ties at exactly 0
    base = rng.random(n)
    p = np.where(agree[:, None], base[:, None], rng.random((n, k)))
    frame = pl.DataFrame({"sample_id": [f"s{i:03d}" for i in range(n)], "split": ["test"] * n,
                          "label": rng.integers(0, 2, n).astype(np.int8),
                          **{f"A{j + 1}": p[:, j] for j in range(k)}})
    return frame[order]


def test_fragility_deciles_do_not_depend_on_row_order():
    family_of = {f"A{j + 1}": "A" for j in range(6)}
    forward = fragility.fragility_table(_matrix(np.arange(200)), "test", family_of)
    shuffled = fragility.fragility_table(_matrix(np.random.default_rng(2).permutation(200)), "test", family_of)
    reverse = fragility.fragility_table(_matrix(np.arange(200)[::-1]), "test", family_of)
    assert forward.equals(shuffled) and forward.equals(reverse)


def test_abstention_ties_do_not_depend_on_row_order():
    rng = np.random.default_rng(3)
    n = 101
    uncertainty = np.round(rng.random(n), 1)  # 11 distinct values: many ties
    ids = [f"x{i}" for i in range(n)]
    tiebreak = metrics.stable_id_hash(ids)
    perm = rng.permutation(n)
    kept = selective.retained(uncertainty, 0.5, tiebreak)
    kept_perm = selective.retained(uncertainty[perm], 0.5, tiebreak[perm])
    assert sorted(np.array(ids)[kept]) == sorted(np.array(ids)[perm][kept_perm])
