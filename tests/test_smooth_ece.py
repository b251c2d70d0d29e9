"""Smooth ECE: the tables' value is relplot.smECE; the bootstrap's batched resamples equal relplot's smECE_sigma
on each resampled data set; the selected - mean CI row is built from them."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from prompt_reliability.analysis import bootstrap as bs
from prompt_reliability.analysis import smooth_ece as se

relplot = pytest.importorskip("relplot")


def _scores(n: int, seed: int, skew: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    p = rng.beta(2, 5, n)
    y = (rng.random(n) < np.clip(p * skew, 0, 1)).astype(np.int64)
    return y, p


@pytest.mark.parametrize("n, skew", [(300, 1.4), (1500, 0.7)])
def test_point_estimate_is_relplot(n, skew):
    y, p = _scores(n, 3, skew)
    value, sigma = se.smece(y, p)
    assert value == relplot.smECE(p, y.astype(float))
    assert (value, sigma) == relplot.smECE(p, y.astype(float), return_width=True)
    assert se.smece(y[:0], p[:0]) != se.smece(y[:0], p[:0])  # NaN without samples


@pytest.mark.parametrize("sigma", [0.08, 0.02, 0.004])  # 0.004 needs relplot's finer grid (20 / sigma points)
def test_resamples_equal_relplot_at_fixed_bandwidth(sigma):
    y, p = _scores(700, 5, 1.3)
    indices = next(bs.resample_indices(len(y), 12, 42, 12))
    batched = se.resampled_smece(y, p, sigma, bs.resample_counts(indices))
    reference = [relplot.smECE_sigma(p[i], y[i].astype(float), sigma) for i in indices]
    np.testing.assert_allclose(batched, reference, rtol=1e-10, atol=1e-13)
    # the original sample at its own sigma* is the point estimate (the search's fixed point)
    value, own_sigma = se.smece(y, p)
    assert se.resampled_smece(y, p, own_sigma, np.ones((1, len(y))))[0] == pytest.approx(value, rel=1e-10)


def test_bootstrap_row_is_the_percentile_interval_of_paired_resamples():
    y, selected = _scores(500, 7, 1.5)
    mean = np.clip(selected * 1.2, 0, 1)
    table = bs.bootstrap_deltas(y, selected, mean, ["native", 0.1], n_resamples=60, seed=4, chunk_size=25,
                                smece_resamples=40)
    row = table.filter(pl.col("metric") == "smece").row(0, named=True)
    assert table.filter(pl.col("metric") == "smece").height == 1 and row["prevalence"] == "native"
    assert row["n_resamples"] == 40 and "bandwidth fixed" in row["ci_method"]
    (s_sel, sig_sel), (s_mean, sig_mean) = se.smece(y, selected), se.smece(y, mean)
    assert row["delta"] == pytest.approx(s_sel - s_mean, rel=1e-12)
    indices = np.concatenate(list(bs.resample_indices(len(y), 60, 4, 25)))[:40]  # the first 40 of the same resamples
    deltas = np.array([relplot.smECE_sigma(selected[i], y[i].astype(float), sig_sel)
                       - relplot.smECE_sigma(mean[i], y[i].astype(float), sig_mean) for i in indices])
    low, high = np.percentile(deltas, [2.5, 97.5])
    assert (row["ci_low"], row["ci_high"]) == (pytest.approx(low, abs=1e-12), pytest.approx(high, abs=1e-12))
    assert table.filter(pl.col("metric") != "smece")["ci_method"].unique().to_list() == ["percentile"]
    # without smooth resamples there is no row
    assert "smece" not in bs.bootstrap_deltas(y, selected, mean, ["native"], n_resamples=10, seed=4)["metric"].to_list()


def test_smoothed_curve_is_relplots_smoother_with_a_resampled_band():
    from relplot.estimators import KernelSmoother
    from relplot.kernels import ReflectedGaussianKernel

    y, p = _scores(800, 11, 1.2)
    curve = se.smoothed_curve(y, p, n_resamples=30, seed=3)
    reference = relplot.prepare_rel_diagram(p, y.astype(float), plot_confidence_band=False, report_CE_std=False)
    np.testing.assert_allclose(curve["mesh"], reference["mesh"])
    np.testing.assert_allclose(curve["mu"], reference["mu"], rtol=1e-9, atol=1e-12)
    assert curve["smece"] == reference["ce"] and curve["sigma"] == reference["sigma"]
    # the band: percentiles of the same smoother refit on each seeded resample
    smoother = KernelSmoother(ReflectedGaussianKernel(curve["sigma"]))
    bags = np.array([smoother.fit(p[i].reshape(-1, 1), y[i]).predict(curve["mesh"].reshape(-1, 1))
                     for i in np.concatenate(list(bs.resample_indices(len(p), 30, 3, 256)))])
    np.testing.assert_allclose(curve["lower"], np.percentile(bags, 2.5, axis=0), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(curve["upper"], np.percentile(bags, 97.5, axis=0), rtol=1e-9, atol=1e-12)
    assert (curve["lower"] <= curve["mu"] + 1e-12).mean() > 0.9 and (curve["mu"] <= curve["upper"] + 1e-12).mean() > 0.9


@pytest.mark.parametrize(("points", "sigma"), [(201, 0.05), (200, 0.3), (1001, 0.16)])
def test_the_reflected_operator_is_relplots_convolution_of_each_unit(points, sigma):
    from relplot.kernels import ReflectedGaussianKernel

    kernel = ReflectedGaussianKernel(sigma)
    by_relplot = np.stack([kernel.convolve(unit, points) for unit in np.eye(points)])
    np.testing.assert_allclose(se._reflected_operator(points, sigma), by_relplot, rtol=1e-12, atol=1e-12)
