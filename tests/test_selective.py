"""Selective prediction: signals, retained sets, risk-coverage, AURC and the win summary on hand-made inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis import selective as sel
from prompt_reliability.base import selective_targets as st
from prompt_reliability.base.config import ConfigError

SCHEMA = Path(__file__).resolve().parents[1] / "workflow/schemas/config.schema.yaml"


def selective_defaults() -> dict:
    schema = yaml.safe_load(SCHEMA.read_text())
    properties = schema["properties"]["analysis"]["properties"]["selective"]["properties"]
    return {key: value["default"] for key, value in properties.items()}


def test_signals_by_hand():
    p = np.array([[0.2, 0.4], [0.5, 0.5], [0.0, 0.0], [1.0, 1.0], [0.9, 0.3]])
    selected = p[:, 1]
    signals = sel.uncertainty_signals(p, selected)
    assert signals["std"] == pytest.approx([0.1, 0.0, 0.0, 0.0, 0.3])
    pbar = np.array([0.3, 0.5, 0.0, 1.0, 0.6])
    entropy = [-(q * np.log(q) + (1 - q) * np.log(1 - q)) if 0 < q < 1 else 0.0 for q in pbar]
    assert signals["entropy"] == pytest.approx(entropy)
    assert signals["entropy"][1] == pytest.approx(np.log(2))
    assert signals["margin"] == pytest.approx([1 - 0.2, 1.0, 0.0, 0.0, 1 - 0.4])


def test_n_retained_is_ceil_without_representation_noise():
    assert 0.07 * 100 > 7  # the float product overshoots ...
    assert sel.n_retained(0.07, 100) == 7  # ... but 7% of 100 samples is 7
    assert sel.n_retained(0.5, 5) == 3
    assert sel.n_retained(0.95, 200) == 190
    assert sel.n_retained(0.951, 200) == 191
    assert sel.n_retained(1.0, 37) == 37
    assert sel.n_retained(0.01, 3) == 1


def test_retained_sets_keep_the_least_uncertain_with_ties_in_manifest_order():
    uncertainty = np.array([0.3, 0.1, 0.3, 0.0, 0.2, 0.3])
    assert np.flatnonzero(sel.retained(uncertainty, 0.5)).tolist() == [1, 3, 4]  # ceil(3.0) = 3
    assert np.flatnonzero(sel.retained(uncertainty, 0.6)).tolist() == [0, 1, 3, 4]  # ceil(3.6): first tie is sample 0
    assert np.flatnonzero(sel.retained(uncertainty, 0.8)).tolist() == [0, 1, 2, 3, 4]  # sample 5 is the last tie
    assert sel.retained(uncertainty, 1.0).all()


def test_risk_coverage_is_the_metrics_on_the_retained_subsets():
    rng = np.random.default_rng(0)
    n = 57
    y = (rng.random(n) < 0.4).astype(int)
    p = rng.random(n)
    p[:3] = [0.0, 0.5, 1.0]
    uncertainty = rng.integers(0, 5, n).astype(float)  # many ties
    curve = sel.risk_coverage(y, p, uncertainty, [0.5, 0.9, 1.0], n_bins=10, threshold=0.4)
    assert curve.columns == ["coverage", "n_retained", "error", "nll", "ece"]
    order = np.argsort(uncertainty, kind="stable")
    for row in curve.iter_rows(named=True):
        keep = np.sort(order[:int(np.ceil(row["coverage"] * n))])
        assert row["n_retained"] == len(keep)
        assert row["error"] == metrics.error_rate(y[keep], p[keep], 0.4)
        assert row["nll"] == metrics.nll(y[keep], p[keep])
        assert row["ece"] == metrics.ece(y[keep], p[keep], 10)


def test_normalised_aurc_by_hand():
    coverage = np.array([0.5, 0.75, 1.0])
    assert sel.normalised_aurc(coverage, np.array([0.0, 1.0, 0.0]), 0.5, 1.0) == pytest.approx(0.5)  # triangle 0.25 / 0.5
    assert sel.normalised_aurc(coverage, np.array([0.2, 0.2, 0.2]), 0.5, 1.0) == pytest.approx(0.2)  # constant risk
    assert sel.normalised_aurc(coverage, np.array([0.0, 1.0, 0.0]), 0.75, 1.0) == pytest.approx(0.5)  # (1 + 0) / 2
    grid = np.arange(50, 101) / 100
    assert sel.normalised_aurc(grid, grid, 0.5, 1.0) == pytest.approx(0.75)  # mean of c over [0.5, 1]
    assert sel.normalised_aurc(grid[::-1], grid[::-1], 0.9, 1.0) == pytest.approx(0.95)  # order of points does not matter


def test_targets_on_a_hand_made_curve():
    curves = pl.DataFrame({
        "signal": ["std"] * 3 + ["margin"] * 3,
        "coverage": [0.5, 0.9, 1.0] * 2,
        "n_retained": [5, 9, 10] * 2,
        "error": [0.0, 0.1, 0.2, 0.1, 0.1, 0.2],
        "nll": [0.1, 0.2, 0.3, 0.1, 0.2, 0.3],
        "ece": [0.0, 0.0, 0.1, 0.05, 0.0, 0.1],
    })
    targets = st.parse_targets(["aurc_error_full", "aurc_error_high", "error@90", "ece@90"],
                                {"full": [0.5, 1.0], "high": [0.9, 1.0]}, [0.5, 0.9, 1.0])
    values = sel.target_values(curves, targets)
    got = {(r["signal"], r["target"]): r["value"] for r in values.iter_rows(named=True)}
    # std: (0 + 0.1) / 2 * 0.4 + (0.1 + 0.2) / 2 * 0.1 = 0.035 over width 0.5
    assert got[("std", "aurc_error_full")] == pytest.approx(0.07)
    assert got[("margin", "aurc_error_full")] == pytest.approx((0.1 * 0.4 + 0.15 * 0.1) / 0.5)
    assert got[("std", "aurc_error_high")] == pytest.approx(0.15)
    assert got[("std", "error@90")] == 0.1 and got[("margin", "ece@90")] == 0.0


def test_default_targets_parse_and_the_grid_drops_repeats():
    defaults = selective_defaults()
    grid = st.coverage_grid(defaults["coverage"])
    assert len(grid) == 8 + 11 and grid[0] == 0.5 and grid[-1] == 1.0
    targets = st.parse_targets(defaults["targets"], defaults["aurc_ranges"], defaults["coverage"])
    assert [t.name for t in targets] == ["aurc_error_full", "aurc_error_high", "aurc_nll_high", "aurc_ece_high",
                                         "error@95", "nll@95", "ece@95", "error@90", "nll@90", "ece@90"]
    assert targets[0].low == 0.5 and targets[0].high == 1.0 and targets[4].is_point and targets[4].low == 0.95


@pytest.mark.parametrize(("targets", "ranges", "message"), [
    (["aurc_error_mid"], {"full": [0.5, 1.0]}, "range 'mid' is not under 'analysis.selective.aurc_ranges'"),
    (["error@97"], {"full": [0.5, 1.0]}, "coverage 0.97 is not in 'analysis.selective.coverage'"),
    (["accuracy@90"], {"full": [0.5, 1.0]}, "'analysis.selective.targets' has 'accuracy@90'"),
    (["error@90"], {"full": [0.55, 1.0]}, "'analysis.selective.aurc_ranges.full' is [0.55, 1.0], but both ends"),
    (["error@90"], {"full": [1.0, 0.5]}, "low < high"),
])
def test_bad_targets_name_the_config_key(targets, ranges, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        st.parse_targets(targets, ranges, [0.5, 0.9, 1.0])


def test_selective_curves_cover_every_signal_and_grid_point():
    rng = np.random.default_rng(1)
    n = 80
    y = (rng.random(n) < 0.5).astype(int)
    p = rng.random((n, 4))
    signals = sel.uncertainty_signals(p, p[:, 0])
    curves = sel.selective_curves(y, p.mean(axis=1), signals, [1.0, 0.5, 0.9, 0.9])
    assert curves["signal"].unique(maintain_order=True).to_list() == list(sel.SIGNALS)
    assert curves.filter(pl.col("signal") == "std")["coverage"].to_list() == [0.5, 0.9, 1.0]
    # at full coverage every signal keeps every sample, so the risks agree exactly
    full = curves.filter(pl.col("coverage") == 1.0)
    assert full["n_retained"].to_list() == [n] * 3 and full["nll"].n_unique() == 1 and full["ece"].n_unique() == 1


def test_summary_counts_wins_and_credits_ties_to_every_tied_signal():
    rows = [("d1", "std", 0.1), ("d1", "entropy", 0.2), ("d1", "margin", 0.3),
            ("d2", "std", 0.2), ("d2", "entropy", 0.2), ("d2", "margin", 0.3),
            ("d3", "std", 0.5), ("d3", "entropy", 0.4), ("d3", "margin", 0.3)]
    table = pl.DataFrame([{"model": "m", "dataset": d, "split": "test", "signal": s, "target": "error@90", "value": v}
                          for d, s, v in rows])
    assert sel.selective_summary(table).rows() == [("error@90", 3, 2, 1, 1)]
