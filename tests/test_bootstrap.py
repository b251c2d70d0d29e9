"""Bootstrap of mean-vs-selected deltas: kernel vs brute force, prevalence weights, known answers, workflow."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import yaml
from brute_force import brute_force_metrics, ece, weighted_nll
from conftest import dry_run_jobs, run_snakemake

from prompt_reliability.analysis import bootstrap as bs
from prompt_reliability.analysis import metrics, resampling, smooth_ece
from prompt_reliability.analysis.lock import locked_scores
from prompt_reliability.base import io
from prompt_reliability.data.matrix import split_rows

PREVALENCES = ["native", 0.25, 0.10, 0.05]


def pair(n: int = 41, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, a selected score and a mean score, with p exactly 0, 1, 0.5 and on bin edges."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int64)
    y[:2] = [0, 1]
    selected = rng.random(n)
    selected[:6] = [0.0, 1.0, 0.5, 1 / 15, 14 / 15, 1.0]
    mean = np.clip(selected + rng.normal(0, 0.15, n), 0, 1)
    mean[6:9] = [0.0, 1.0, 2 / 15]
    return y, selected, mean


def test_vectorised_equals_brute_force_on_the_same_resamples():
    y, selected, mean = pair()
    scores = np.stack([selected, mean])
    weights = np.stack([bs.prevalence_weights(y, p) for p in PREVALENCES])
    point, resampled, *_ = bs.bootstrap_metrics(y, scores, PREVALENCES, n_resamples=57, seed=42, chunk_size=5)
    # the brute force draws nothing itself: it loops over the kernel's own resample indices, with per-sample weights
    expected = brute_force_metrics(y, scores, weights, bs.resample_indices(len(y), 57, 42, 5))
    assert resampled.shape == expected.shape == (57, 4, 2, 2)
    np.testing.assert_allclose(resampled, expected, rtol=1e-12, atol=1e-14)
    identity = [np.arange(len(y))[None]]
    np.testing.assert_allclose(point, brute_force_metrics(y, scores, weights, identity)[0], rtol=1e-12, atol=1e-14)
    # the summary statistics follow from those numbers
    table = bs.bootstrap_deltas(y, selected, mean, PREVALENCES, n_resamples=57, seed=42, chunk_size=5)
    deltas = expected[:, :, 0] - expected[:, :, 1]
    low, high = np.percentile(deltas, [2.5, 97.5], axis=0)
    np.testing.assert_allclose(table["ci_low"].to_numpy(), low.ravel(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(table["ci_high"].to_numpy(), high.ravel(), rtol=1e-12, atol=1e-14)
    p_value = np.minimum(1, 2 * np.minimum((deltas <= 0).mean(0), (deltas >= 0).mean(0)))
    np.testing.assert_array_equal(table["p_value"].to_numpy(), p_value.ravel())


def test_resample_indices_are_one_stream_whatever_the_chunk_size():
    whole = np.random.default_rng(42).integers(0, 13, size=(50, 13), dtype=np.uint32)
    for chunk_size in (1, 7, 50, 64):
        chunks = list(bs.resample_indices(13, 50, 42, chunk_size))
        assert max(len(c) for c in chunks) == min(chunk_size, 50)
        np.testing.assert_array_equal(np.concatenate(chunks), whole)
    counts = bs.resample_counts(whole)
    np.testing.assert_array_equal(counts, [np.bincount(row, minlength=13) for row in whole])
    assert (counts.sum(axis=1) == 13).all()


def test_chunk_size_changes_only_floating_point_noise():
    y, selected, mean = pair(200)
    small = bs.bootstrap_deltas(y, selected, mean, PREVALENCES, n_resamples=300, seed=1, chunk_size=7)
    large = bs.bootstrap_deltas(y, selected, mean, PREVALENCES, n_resamples=300, seed=1, chunk_size=1000)
    for column in ("delta", "ci_low", "ci_high", "p_value"):
        np.testing.assert_allclose(small[column].to_numpy(), large[column].to_numpy(), rtol=1e-12, atol=1e-14)


def test_native_weighted_metrics_equal_unweighted():
    y, selected, mean = pair(120)
    assert (bs.prevalence_weights(y, "native") == 1).all()
    # a target equal to the native prevalence gives weights of exactly 1 too
    assert (bs.prevalence_weights(y, float(np.mean(y))) == 1).all()
    scores = np.stack([selected, mean])
    point, resampled, *_ = bs.bootstrap_metrics(y, scores, ["native"], n_resamples=40, seed=42)
    for s, p in enumerate(scores):
        assert abs(point[0, s, 0] - metrics.nll(y, p)) < 1e-12
        assert abs(point[0, s, 1] - metrics.ece(y, p)) < 1e-12
    # every resample against the plain (unweighted) metrics of metrics.py on the resampled rows
    indices = np.concatenate(list(bs.resample_indices(len(y), 40, 42, 256))).astype(np.int64)
    unweighted = np.array([[[metrics.nll(y[i], p[i]), metrics.ece(y[i], p[i])] for p in scores] for i in indices])
    np.testing.assert_allclose(resampled[:, 0], unweighted, rtol=1e-12, atol=1e-14)


def test_prevalence_weights_move_the_prevalence_to_the_target():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 1])  # native 0.3
    for target in (0.25, 0.1, 0.05, 0.9):
        w = bs.prevalence_weights(y, target)
        assert np.sum(w * y) / np.sum(w) == pytest.approx(target)
        assert np.sum(w) == pytest.approx(len(y))
        assert set(np.round(w, 12)) == {round(target / 0.3, 12), round((1 - target) / 0.7, 12)}
    with pytest.raises(ValueError, match="only one class.*analysis.bootstrap.prevalences"):
        bs.prevalence_weights(np.zeros(5), 0.1)
    assert (bs.prevalence_weights(np.zeros(5), "native") == 1).all()


def test_weighted_ece_and_nll_by_hand():
    # native prevalence 0.5; target 0.25 weighs unsafe samples 0.5 and safe samples 1.5
    y = np.array([0, 1, 0, 1])
    p = np.array([0.0, 0.04, 0.05, 1.0])
    w = bs.prevalence_weights(y, 0.25)
    assert w.tolist() == [1.5, 0.5, 1.5, 0.5]
    # bin 0 holds the first three (W_b = 3.5): |sum w y - sum w p| = |0.5 - 0.095|; the top bin is calibrated
    expected_ece = abs(0.5 - (0.5 * 0.04 + 1.5 * 0.05)) / 4
    expected_nll = (1.5 * -np.log1p(-1e-12) + 0.5 * -np.log(0.04) + 1.5 * -np.log(0.95) + 0.5 * -np.log(1 - 1e-12)) / 4
    point, *_ = bs.bootstrap_metrics(y, p[None], [0.25], n_resamples=1, seed=0)
    assert point[0, 0, 1] == pytest.approx(expected_ece, rel=1e-12)
    assert point[0, 0, 0] == pytest.approx(expected_nll, rel=1e-12)
    assert ece(y, p, w=w) == pytest.approx(expected_ece, rel=1e-12)
    assert weighted_nll(y, p, w) == pytest.approx(expected_nll, rel=1e-12)


def test_p_value_and_percentile_ci_on_hand_made_deltas():
    deltas = np.array([-2.0, -1, 0, 1, 2, 3, 4, 5, 6, 7])  # P(<= 0) = 0.3, P(>= 0) = 0.8
    assert bs.bootstrap_p_value(deltas) == pytest.approx(0.6)
    assert bs.bootstrap_p_value(np.full(9, 0.5)) == 0.0
    assert bs.bootstrap_p_value(np.zeros(9)) == 1.0  # both tails hold everything: capped at 1
    assert bs.bootstrap_p_value(np.array([-1.0, 1.0])) == 1.0
    low, high = bs.percentile_ci(np.arange(101.0))
    assert (low, high) == pytest.approx((2.5, 97.5), abs=1e-12)
    low, high = bs.percentile_ci(np.arange(101.0), confidence=0.9)
    assert (low, high) == pytest.approx((5.0, 95.0))


def test_two_sample_pair_has_the_binomial_answer():
    # sample 0 favours the mean by log 4 nats, sample 1 has the same score under both:
    # a resample's NLL delta is log(4) * c0 / 2 with c0 ~ Binomial(2, 1/2): 0, log 2, log 4 w.p. 1/4, 1/2, 1/4
    y = np.array([1, 0])
    selected, mean = np.array([0.2, 0.3]), np.array([0.8, 0.3])
    n_resamples = 4000
    row = bs.bootstrap_deltas(y, selected, mean, ["native"], n_resamples=n_resamples, seed=42).filter(pl.col("metric") == "nll").row(0, named=True)
    assert row["delta"] == pytest.approx(np.log(4) / 2)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((0.0, np.log(4)), abs=1e-12)
    se = np.sqrt(0.25 * 0.75 / n_resamples)  # of the frequency of c0 = 0, which is P*(delta <= 0)
    assert abs(row["p_value"] - 0.5) < 2 * 4 * se
    assert row["n_resamples"] == n_resamples


def test_percentile_ci_matches_normal_theory_for_a_mean():
    # NLL delta is a mean of per-sample differences, so its CI is about dbar +- 1.96 sd / sqrt(n)
    rng = np.random.default_rng(5)
    n = 3000
    y = (rng.random(n) < 0.5).astype(int)
    selected = rng.uniform(0.05, 0.95, n)
    mean = np.clip(selected + np.where(y == 1, 0.05, -0.05) + rng.normal(0, 0.05, n), 0.01, 0.99)
    d = metrics.nll_terms(y, selected) - metrics.nll_terms(y, mean)
    row = bs.bootstrap_deltas(y, selected, mean, ["native"], n_resamples=4000, seed=0).row(0, named=True)
    half = 1.96 * d.std() / np.sqrt(n)
    assert row["delta"] == pytest.approx(d.mean(), rel=1e-10)
    assert row["ci_low"] == pytest.approx(d.mean() - half, abs=0.1 * half)
    assert row["ci_high"] == pytest.approx(d.mean() + half, abs=0.1 * half)


def test_identical_scores_give_zero_deltas():
    y, selected, _ = pair()
    table = bs.bootstrap_deltas(y, selected, selected.copy(), PREVALENCES, n_resamples=30, seed=42)
    assert (table["delta"] == 0).all() and (table["ci_low"] == 0).all() and (table["ci_high"] == 0).all()
    assert (table["p_value"] == 1).all()
    assert table["prevalence"].to_list() == ["native", "native", "0.25", "0.25", "0.1", "0.1", "0.05", "0.05"]
    assert table["metric"].to_list() == ["nll", "ece"] * 4


def test_summary_counts_ci_wins_and_losses():
    rows = [("m", "d1", "nll", 0.1, 0.3), ("m", "d2", "nll", -0.1, 0.3), ("m", "d3", "nll", 0.0, 0.2),
            ("m", "d1", "ece", -0.3, -0.1), ("m", "d2", "ece", 0.2, 0.4), ("m", "d3", "ece", -0.2, -0.01)]
    table = pl.DataFrame([{"model": m, "dataset": d, "split": "test", "prevalence": "native", "metric": metric,
                           "ci_low": lo, "ci_high": hi} for m, d, metric, lo, hi in rows])
    summary = bs.bootstrap_summary(table)
    assert summary.rows() == [("nll", "native", 3, 1, 0), ("ece", "native", 3, 1, 2)]


BOOTSTRAP_TARGETS = ["results/tables/bootstrap_summary.csv", "results/tables/selective_summary.csv",
                     *(f"results/figures/selective/{m}/{d}/test/risk_coverage.png"
                       for m in ("m1", "m2") for d in ("ds_a", "ds_b"))]


@pytest.fixture(scope="module")
def bootstrap_run(import_run, tmp_path_factory):
    """A copy of the import run with 300 resamples, run to this issue's outputs only (the full default target
    is the foundation tests' business): the tests below read it, each one output."""
    import shutil

    workdir = tmp_path_factory.mktemp("bootstrap") / "import-run"
    shutil.copytree(import_run, workdir, symlinks=True, ignore=shutil.ignore_patterns("locks", "incomplete"))
    config_path = workdir / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["analysis"] = {"bootstrap": {"resamples": 300, "chunk_size": 64}}
    config_path.write_text(yaml.safe_dump(config))
    run_snakemake(workdir, "--configfile", str(config_path), "--cores", "2", *BOOTSTRAP_TARGETS)
    return workdir


@pytest.mark.workflow
def test_workflow_bootstrap_table_has_every_pair_prevalence_and_metric(bootstrap_run):
    boot = pl.read_csv(bootstrap_run / "results/tables/bootstrap.csv")
    assert boot.columns == list(bs.TABLE_COLUMNS)
    assert boot.height == 2 * 2 * (4 * 2 + 1)  # models x pairs x (prevalences x metrics + native smECE)
    assert boot["prevalence"].unique(maintain_order=True).to_list() == ["native", "0.25", "0.1", "0.05"]
    assert (boot["n_resamples"] == 300).all()  # smece_resamples (2000) is capped by resamples
    assert (boot["ci_low"] <= boot["ci_high"]).all() and boot["p_value"].is_between(0, 1).all()


@pytest.mark.workflow
def test_workflow_bootstrap_summary_counts_every_pair(bootstrap_run):
    summary = pl.read_csv(bootstrap_run / "results/tables/bootstrap_summary.csv")
    assert summary.columns == ["metric", "prevalence", "pairs", "ci_wins", "ci_losses"]
    assert summary.height == 9 and (summary["pairs"] == 4).all()


@pytest.mark.workflow
def test_workflow_native_deltas_are_the_unweighted_metrics_of_the_locked_scores(bootstrap_run):
    boot = pl.read_csv(bootstrap_run / "results/tables/bootstrap.csv")
    rows = split_rows(pl.read_parquet(bootstrap_run / "results/matrix/m2/ds_b.parquet"), "test")
    scores = locked_scores(rows, io.read_json(bootstrap_run / "results/lock/m2.json"))
    y = rows["label"].to_numpy()
    native = boot.filter((pl.col("model") == "m2") & (pl.col("dataset") == "ds_b") & (pl.col("prevalence") == "native"))
    assert native["delta"].to_list() == pytest.approx(
        [metrics.nll(y, scores["selected"]) - metrics.nll(y, scores["mean"]),
         metrics.ece(y, scores["selected"]) - metrics.ece(y, scores["mean"]),
         smooth_ece.smece(y, scores["selected"])[0] - smooth_ece.smece(y, scores["mean"])[0]], abs=1e-12)


@pytest.mark.workflow
def test_workflow_selective_tables_and_figures(bootstrap_run):
    tables = bootstrap_run / "results/tables"
    selective = pl.read_csv(tables / "selective.csv")
    assert selective.columns == ["model", "dataset", "split", "signal", "target", "value"]
    assert selective.height == 4 * 3 * (10 + 3)  # 10 configured targets + eaurc_error, augrc_error, prr_error
    wins = pl.read_csv(tables / "selective_summary.csv")
    assert wins.columns == ["target", "pairs", "std", "entropy", "margin"]
    assert (wins["pairs"] == 4).all() and (wins.select(pl.sum_horizontal("std", "entropy", "margin")) >= 4).to_series().all()
    for model in ("m1", "m2"):
        for dataset in ("ds_a", "ds_b"):
            figure = bootstrap_run / f"results/figures/selective/{model}/{dataset}/test/risk_coverage.png"
            assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.workflow
def test_workflow_changing_a_bootstrap_setting_reruns_the_bootstrap_only(bootstrap_run, tmp_path):
    config = yaml.safe_load((bootstrap_run / "config.yaml").read_text())
    config["analysis"]["bootstrap"]["resamples"] = 200
    changed = tmp_path / "changed.yaml"
    changed.write_text(yaml.safe_dump(config))
    assert set(dry_run_jobs(bootstrap_run, f"--configfile={changed}", *BOOTSTRAP_TARGETS)) == {
        "bootstrap", "bootstrap_table", "bootstrap_summary"}


@pytest.mark.workflow
def test_bad_selective_target_fails_before_any_job(import_workdir):
    config_path = import_workdir / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["analysis"] = {"selective": {"targets": ["error@93.5"]}}
    config_path.write_text(yaml.safe_dump(config))
    result = run_snakemake(import_workdir, "--configfile", str(config_path), "-n", check=False)
    assert result.returncode != 0
    assert "'analysis.selective.targets' names 'error@93.5'" in result.stdout + result.stderr


def _pair(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.4).astype(np.int64)
    selected = np.clip(rng.beta(2, 2, n) * 0.6 + 0.4 * y, 0.001, 0.999)
    mean = np.clip(0.5 * selected + 0.5 * rng.beta(2, 2, n) * 0.5 + 0.25 * y, 0.001, 0.999)
    return y, selected, mean


def test_singleton_clusters_are_the_independent_bootstrap():
    y, selected, mean = _pair(300, 1)
    independent = bs.bootstrap_deltas(y, selected, mean, PREVALENCES, n_resamples=200, seed=5, chunk_size=64,
                                      smece_resamples=50)
    clusters, n_clusters = resampling.cluster_index([f"pair{i}" for i in range(300)])
    clustered = bs.bootstrap_deltas(y, selected, mean, PREVALENCES, n_resamples=200, seed=5, chunk_size=64,
                                    smece_resamples=50, clusters=clusters, unit="pair_id")
    assert n_clusters == 300 and clustered["clusters"].unique().to_list() == [300]
    assert clustered["unit"].unique().to_list() == ["pair_id"] and independent["unit"].unique().to_list() == ["sample"]
    for column in ("delta", "ci_low", "ci_high", "p_value"):  # the same draws: equal up to summation order
        np.testing.assert_allclose(clustered[column].to_numpy(), independent[column].to_numpy(), rtol=1e-12, atol=1e-15)


def test_clusters_of_two_copies_widen_the_interval_by_sqrt_two():
    """Every cluster is two copies of one sample: resampling clusters draws n units for 2n samples, so the CI is
    ~sqrt(2) times the independent bootstrap's on the same 2n samples."""
    y, selected, mean = _pair(1500, 2)
    doubled = [np.repeat(a, 2) for a in (y, selected, mean)]
    clusters, n_clusters = resampling.cluster_index([f"c{i // 2}" for i in range(3000)])
    assert n_clusters == 1500
    kwargs = {"n_resamples": 3000, "seed": 11, "chunk_size": 512}
    independent = bs.bootstrap_deltas(*doubled, ["native"], **kwargs)
    clustered = bs.bootstrap_deltas(*doubled, ["native"], **kwargs, clusters=clusters, unit="pair_id")
    width = {name: (t["ci_high"] - t["ci_low"]).to_numpy() for name, t in (("i", independent), ("c", clustered))}
    np.testing.assert_allclose(width["c"] / width["i"], np.sqrt(2), rtol=0.1)
    np.testing.assert_array_equal(clustered["delta"].to_numpy(), independent["delta"].to_numpy())  # same point


def test_clustered_resample_equals_the_samples_it_draws():
    """One clustered resample's sums equal the brute-force metrics of the samples its clusters contain."""
    y, selected, mean = _pair(40, 3)
    keys = [f"k{i % 13}" if i % 5 else None for i in range(40)]  # shared keys and keyless singletons
    clusters, n_clusters = resampling.cluster_index(keys)
    scores = np.stack([selected, mean])
    _, resampled, *_ = bs.bootstrap_metrics(y, scores, ["native", 0.1], n_resamples=7, seed=9, chunk_size=3,
                                              clusters=clusters)
    drawn = np.concatenate(list(resampling.resample_indices(n_clusters, 7, 9, 3)))
    members = [np.flatnonzero(clusters == c) for c in range(n_clusters)]
    sample_draws = [np.concatenate([members[c] for c in row]) for row in drawn]
    weights = np.stack([np.ones(40), bs.prevalence_weights(y, 0.1)])
    expected = brute_force_metrics(y, scores, weights, [sample_draws])
    np.testing.assert_allclose(resampled, expected, rtol=1e-12, atol=1e-14)


def test_resample_counts_match_a_flat_bincount():
    indices = np.random.default_rng(0).integers(0, 17, size=(9, 17), dtype=np.uint32)
    flat = (indices + (np.arange(9) * 17)[:, None]).ravel()
    np.testing.assert_array_equal(resampling.resample_counts(indices), np.bincount(flat, minlength=9 * 17).reshape(9, 17))
