"""Calibrators: recovery of known parameters, independent references, lock-only fitting, Table 3."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import yaml
from brute_force import platt_newton
from conftest import REPO, dry_run_jobs, run_snakemake
from scipy.special import expit, logit

from prompt_reliability.analysis import calibration, metrics
from prompt_reliability.analysis.calibration import (
    CalibrationError,
    apply_isotonic,
    calibrated_scores,
    calibration_summary,
    fit_calibrators,
    fit_isotonic,
    fit_platt,
    fit_temperature,
    write_calibration,
    write_calibration_summary,
)
from prompt_reliability.analysis.lock import build_lock
from prompt_reliability.base import io

PROMPT_IDS = [f"{f}{i}" for f in "ABC" for i in range(1, 6)]
ANALYSIS = {"seed": 42, "ece_bins": 15, "eps": 1e-12, "threshold": 0.5, "temperature_bounds": [0.01, 100.0]}
METHODS = ["selected", "ts_selected", "platt_selected", "iso_selected", "mean", "ts_mean", "platt_mean", "iso_mean"]


def _drawn(n: int, seed: int, true_logit) -> tuple[np.ndarray, np.ndarray]:
    """Scores s with logit x ~ N(0, 2.5) and labels drawn from sigmoid(true_logit(x))."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 2.5, n)
    return expit(x), (rng.uniform(size=n) < expit(true_logit(x))).astype(np.int8)


def test_temperature_recovers_t_equal_2_and_matches_a_grid_search():
    s, y = _drawn(100_000, 0, lambda x: x / 2)
    t = fit_temperature(s, y)["T"]
    assert t == pytest.approx(2.0, abs=0.04)
    # the bounded minimiser finds the grid minimum of the lock NLL (independent brute force)
    grid = np.linspace(1.9, 2.1, 201)
    losses = [metrics.nll(y, expit(logit(s) / g)) for g in grid]
    assert t == pytest.approx(grid[int(np.argmin(losses))], rel=1e-3)
    assert metrics.nll(y, expit(logit(s) / t)) <= min(losses) + 1e-12


def test_temperature_bounds_are_checked_and_bind(caplog):
    s, y = _drawn(2_000, 1, lambda x: x / 2)
    with pytest.raises(CalibrationError, match="'analysis.temperature_bounds' must be \\[low, high\\] with 0 < low < high"):
        fit_temperature(s, y, bounds=[2.0, 1.0])
    t = fit_temperature(s, y, bounds=[0.5, 1.2])["T"]
    assert t == pytest.approx(1.2, rel=1e-4)
    assert "lies at a bound" in caplog.text


def test_platt_recovers_known_parameters_and_matches_sklearn():
    from sklearn.linear_model import LogisticRegression

    s, y = _drawn(200_000, 2, lambda x: 0.5 * x - 1.0)
    params = fit_platt(s, y)
    assert params["a"] == pytest.approx(0.5, abs=0.01)
    assert params["b"] == pytest.approx(-1.0, abs=0.02)
    for n, seed in ((200_000, 2), (150, 3)):
        s, y = _drawn(n, seed, lambda x: 0.5 * x - 1.0)
        params = fit_platt(s, y)
        # unregularised (C = inf is scikit-learn >= 1.8's spelling of penalty=None)
        reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(logit(s)[:, None], y)
        assert params["a"] == pytest.approx(reference.coef_[0, 0], rel=1e-5)
        assert params["b"] == pytest.approx(reference.intercept_[0], rel=1e-5, abs=1e-6)


def test_platt_solves_the_score_equations_to_rounding():
    # the maximum-likelihood (a, b) zero the log-loss gradient: sum (q - y) x = sum (q - y) = 0
    for n, seed in ((64, 5), (2_000, 6)):
        s, y = _drawn(n, seed, lambda x: 0.8 * x + 0.3)
        params = fit_platt(s, y)
        x = logit(s)
        residual = expit(params["a"] * x + params["b"]) - y
        assert abs(np.mean(residual * x)) < 1e-14 and abs(np.mean(residual)) < 1e-14


def test_platt_predictions_equal_a_converged_newton_fit():
    # 300 random lock splits (30 to 3000 samples, slopes and offsets around the paper's): the scipy fit's
    # predictions against Newton's method run to a 1e-15 step (tests/brute_force.py). The issue asks 1e-9;
    # both solve the score equations to rounding, so they agree to a few ulps.
    rng = np.random.default_rng(0)
    worst, fits = 0.0, 0
    for _ in range(300):
        n = int(rng.integers(30, 3000))
        z = rng.normal(0.0, 2.0, n)
        y = (rng.uniform(size=n) < expit(rng.normal(0.8, 0.5) * z + rng.normal(0.0, 1.0))).astype(np.int8)
        if len(np.unique(y)) < 2:
            continue
        s = expit(z)
        x = calibration.score_logits(s)
        params = fit_platt(s, y)
        a, b = platt_newton(x, y)
        worst = max(worst, float(np.abs(expit(params["a"] * x + params["b"]) - expit(a * x + b)).max()))
        fits += 1
    assert fits > 250
    assert worst <= 1e-12, worst


def test_platt_on_separable_scores_warns_instead_of_looping(caplog):
    s = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    y = np.array([0, 0, 0, 1, 1, 1])
    params = fit_platt(s, y)
    assert params["a"] > 5  # the likelihood keeps growing with a
    assert "separates the lock-split classes" in caplog.text


def test_isotonic_from_stored_thresholds_equals_sklearn_predict():
    from sklearn.isotonic import IsotonicRegression

    # The fit is this package's pool-adjacent-violators, not scikit-learn's: block means are summed in
    # another order, so a prediction may differ in the last bit (and where two neighbouring blocks
    # have equal means, one of the two may keep an extra threshold between them).
    rng = np.random.default_rng(4)
    just_below_one = 1.0 - np.spacing(0.5) * np.arange(14)  # neighbouring floats: one pool per 1e-15
    for trial in range(60):
        n = int(rng.integers(2, 3_000))
        s = [rng.uniform(0.05, 0.95, n), np.round(rng.uniform(0.05, 0.95, n), 2),  # ties in s
             expit(rng.normal(0.0, 25.0, n)), rng.choice(np.r_[just_below_one, 0.5, 0.2], n)][trial % 4]  # saturated
        y = (rng.uniform(size=n) < s ** rng.uniform(0.3, 3)).astype(np.int8)
        stored = json.loads(json.dumps(fit_isotonic(s, y)))  # through JSON, as in the lock file
        assert set(stored) == {"x", "y"} and all(isinstance(v, float) for v in stored["x"] + stored["y"])
        assert np.all(np.diff(stored["x"]) > 0) and np.all(np.diff(stored["y"]) >= 0)
        reference = IsotonicRegression(out_of_bounds="clip").fit(s, y)
        new = np.concatenate([rng.uniform(-0.2, 1.2, 5_000), [0.0, 1.0, 0.05, 0.95], stored["x"], s])
        assert np.max(np.abs(apply_isotonic(stored, new) - reference.predict(new))) <= 4e-16


def _exact_isotonic(s, y):
    """Brute-force reference in exact arithmetic: pool equal scores, then merge neighbouring pools
    while a mean does not exceed its left neighbour's, comparing fractions (no rounding at all)."""
    from fractions import Fraction

    pools = []  # [score, label sum, count]
    for score, label in sorted(zip(s.tolist(), y.tolist())):
        if pools and pools[-1][0] == score:
            pools[-1][1] += label
            pools[-1][2] += 1
        else:
            pools.append([score, label, 1])
    blocks = []  # [label sum, count, number of pools]
    for _, total, count in pools:
        blocks.append([total, count, 1])
        while len(blocks) > 1 and Fraction(blocks[-2][0], blocks[-2][1]) >= Fraction(blocks[-1][0], blocks[-1][1]):
            total, count, size = blocks.pop()
            blocks[-1] = [blocks[-1][0] + total, blocks[-1][1] + count, blocks[-1][2] + size]
    fitted = [Fraction(total, count) for total, count, size in blocks for _ in range(size)]
    return [p[0] for p in pools], fitted


def test_isotonic_equals_exact_arithmetic_and_ties_blocks_of_equal_mean():
    # Neighbouring blocks with the same mean (5/16 and 10/32) are one block, so their samples tie:
    # rank metrics of the calibrated score (AUROC) count such ties half. scikit-learn's running
    # sums can leave two such blocks 1 ulp apart (untied); label sums here are exact integers.
    rng = np.random.default_rng(11)
    for _ in range(30):
        n = int(rng.integers(2, 400))
        s = np.round(rng.uniform(0, 1, n), int(rng.integers(1, 3)))
        y = (rng.uniform(size=n) < s).astype(np.int64)
        scores, fitted = _exact_isotonic(s, y)
        stored = fit_isotonic(s, y)
        assert np.array_equal(apply_isotonic(stored, np.array(scores)), np.array([float(f) for f in fitted]))
    s = np.r_[np.full(16, 0.3), np.full(32, 0.4)]
    y = np.r_[np.ones(5), np.zeros(11), np.ones(10), np.zeros(22)].astype(np.int64)
    assert fit_isotonic(s, y) == {"x": [0.3, 0.4], "y": [0.3125, 0.3125]}


def test_isotonic_pools_ties_and_violators_by_hand():
    # s = 0.2 twice (labels 1, 0: mean 0.5); 0.4 -> 0 violates it and pools to (1 + 0 + 0) / 3;
    # 0.6 -> 1 and 0.8 -> 1 form one run of 1s, of which both ends are kept
    stored = fit_isotonic(np.array([0.4, 0.2, 0.8, 0.2, 0.6, 0.1]), np.array([0, 1, 1, 0, 1, 0]))
    assert stored == {"x": [0.1, 0.2, 0.4, 0.6, 0.8], "y": [0.0, 1 / 3, 1 / 3, 1.0, 1.0]}


def test_fit_calibrators_writes_plain_numbers_for_each_score():
    s1, y = _drawn(500, 5, lambda x: x / 2)
    s2 = expit(logit(s1) * 0.5)
    fitted = fit_calibrators({"selected": s1, "mean": s2, "random": s1}, y)
    assert list(fitted) == ["selected", "mean"]
    for name in fitted:
        assert list(fitted[name]) == ["temperature", "platt", "isotonic"]
        assert set(fitted[name]["platt"]) == {"a", "b"} and set(fitted[name]["temperature"]) == {"T"}
    assert json.loads(json.dumps(fitted)) == fitted
    # a score shrunk by 0.5 in logit space needs the temperature halved
    assert fitted["mean"]["temperature"]["T"] == pytest.approx(fitted["selected"]["temperature"]["T"] / 2, rel=1e-5)


def test_fit_calibrators_needs_both_classes():
    with pytest.raises(CalibrationError, match=r"lock.parquet: .*labels \[1\].*both safe \(0\) and unsafe \(1\).*'lock'"):
        fit_calibrators({"selected": np.full(5, 0.3), "mean": np.full(5, 0.4)}, np.ones(5, dtype=int), source="lock.parquet")


def test_applied_without_refitting_from_stored_numbers():
    s = np.array([0.2, 0.5, 0.9])
    m = np.array([0.3, 0.6, 0.4])
    stored = {
        "temperature": {"T": 2.0},
        "platt": {"a": 0.5, "b": -1.0},
        "isotonic": {"x": [0.25, 0.75], "y": [0.1, 0.7]},
    }
    out = calibrated_scores({"selected": s, "mean": m, "random": s}, {"selected": stored, "mean": stored})
    assert list(out) == METHODS
    np.testing.assert_allclose(out["ts_selected"], expit(logit(s) / 2))
    np.testing.assert_allclose(out["platt_selected"], expit(0.5 * logit(s) - 1))
    np.testing.assert_allclose(out["iso_selected"], [0.1, 0.1 + 0.6 * 0.5, 0.7])  # clipped below / interpolated / clipped above
    np.testing.assert_allclose(out["iso_mean"], [0.16, 0.52, 0.28])
    assert out["selected"] is s and out["mean"] is m


@pytest.mark.parametrize(("field", "value", "message"), [
    ("platt", None, "calibrators.mean.platt: missing; re-run the lock rule"),
    ("temperature", {"T": -1}, "calibrators.mean.temperature.T must be a positive number"),
    ("isotonic", {"x": [0.5, 0.2], "y": [0.1, 0.2]}, "calibrators.mean.isotonic.x must be strictly increasing"),
    ("isotonic", {"x": [0.5], "y": []}, "calibrators.mean.isotonic: 'x' and 'y' must be non-empty lists of equal length"),
])
def test_malformed_stored_calibrator_names_the_lock_field(field, value, message):
    good = {"temperature": {"T": 1.0}, "platt": {"a": 1.0, "b": 0.0}, "isotonic": {"x": [0.0, 1.0], "y": [0.0, 1.0]}}
    bad = {**good, field: value}
    s = np.array([0.2, 0.7])
    with pytest.raises(CalibrationError, match=f"lock/m.json: {message}".replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        calibrated_scores({"selected": s, "mean": s}, {"selected": good, "mean": bad}, source="lock/m.json")


def _matrix(seed: int, n_train: int = 120, n_test: int = 80) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = (rng.uniform(size=n) < 0.4).astype(np.int8)
    z = (2 * y[:, None] - 1) * rng.uniform(0.5, 2.5, size=15) + rng.normal(0, 1.2, size=(n, 15)) + rng.normal(0.5, 0.8, size=15)
    return pl.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "split": ["train"] * n_train + ["test"] * n_test, "label": y,
                         **{pid: expit(z[:, k]) for k, pid in enumerate(PROMPT_IDS)}})


def _lock(matrix: pl.DataFrame) -> dict:
    return build_lock(matrix, model="m", dataset="d", split="train", prompt_ids=PROMPT_IDS, analysis=ANALYSIS)


def test_lock_calibrators_are_fit_on_the_lock_split_only():
    matrix = _matrix(6)
    lock = _lock(matrix)
    train = matrix.filter(pl.col("split") == "train")
    y = train["label"].to_numpy()
    selected = train[lock["selected_prompt"]].to_numpy()
    mean = train.select(PROMPT_IDS).to_numpy().mean(axis=1)
    assert lock["calibrators"] == fit_calibrators({"selected": selected, "mean": mean}, y)
    # flipping every evaluation label leaves the lock byte-identical ...
    flipped = matrix.with_columns(pl.when(pl.col("split") == "test").then(1 - pl.col("label")).otherwise(pl.col("label")).alias("label"))
    assert json.dumps(_lock(flipped)) == json.dumps(lock)
    # ... while one flipped lock-split label changes the calibrators
    one = matrix.with_columns(pl.when(pl.col("sample_id") == "s0").then(1 - pl.col("label")).otherwise(pl.col("label")).alias("label"))
    assert _lock(one)["calibrators"] != lock["calibrators"]


def test_write_calibration_applies_the_lock_to_the_evaluation_split(tmp_path):
    matrix = _matrix(7)
    lock = _lock(matrix)
    io.write_parquet(matrix, tmp_path / "m.parquet")
    io.write_json(lock, tmp_path / "lock.json")
    table = write_calibration(matrix=str(tmp_path / "m.parquet"), lock=str(tmp_path / "lock.json"), table=str(tmp_path / "out.parquet"), model="m", dataset="d",
                              split="test", analysis={"ece_bins": 15, "eps": 1e-12})
    assert table.columns == ["model", "dataset", "split", "method", "nll", "ece", "auroc", "auprc", "smece"]
    assert table["method"].to_list() == METHODS
    test = matrix.filter(pl.col("split") == "test")
    y = test["label"].to_numpy()
    selected = test[lock["selected_prompt"]].to_numpy()
    T = lock["calibrators"]["selected"]["temperature"]["T"]
    row = table.filter(pl.col("method") == "ts_selected").row(0, named=True)
    assert row["nll"] == pytest.approx(metrics.nll(y, expit(logit(selected) / T)), rel=1e-12)
    import relplot

    assert rows_smece_equal(table, "selected", relplot.smECE(selected, y.astype(float)))
    # temperature and Platt (a > 0) are monotone: ranking metrics are those of the untreated score
    rows = {r["method"]: r for r in table.iter_rows(named=True)}
    assert rows["ts_mean"]["auroc"] == rows["mean"]["auroc"] and rows["platt_selected"]["auprc"] == rows["selected"]["auprc"]
    # calibrating on the lock split improves the lock split NLL of the mean (sanity of the fit direction)
    train = matrix.filter(pl.col("split") == "train")
    train_table = calibration.calibration_table(train, lock)
    assert train_table.filter(pl.col("method") == "platt_mean")["nll"].item() <= train_table.filter(pl.col("method") == "mean")["nll"].item()


def test_summary_is_table_3_head_to_head_against_the_untreated_mean(tmp_path):
    nll = {  # per pair: mean, ts_selected, ts_mean (other methods equal the mean -> ties)
        "d1": (0.50, 0.40, 0.45),
        "d2": (0.50, 0.60, 0.45),
        "d3": (0.30, 0.70, 0.40),
    }
    records = []
    for d, (mean, ts_sel, ts_mean) in nll.items():
        values = {m: mean for m in METHODS} | {"selected": 0.9, "ts_selected": ts_sel, "ts_mean": ts_mean}
        records += [{"model": "m", "dataset": d, "split": "test", "method": m, "nll": v, "ece": v / 10, "auroc": 0.8, "auprc": 0.7}
                    for m, v in values.items()]
    table = pl.DataFrame(records)
    summary = calibration_summary(table)
    assert summary["panel"].to_list() == ["A", "A", "A", "B", "B", "B"]
    assert summary["method"].to_list() == ["ts_selected", "platt_selected", "iso_selected", "ts_mean", "platt_mean", "iso_mean"]
    ts_sel = summary.row(0, named=True)
    assert (ts_sel["nll_wins"], ts_sel["nll_ties"], ts_sel["nll_losses"]) == (1, 0, 2)  # the mean wins 2/3 pairs
    assert ts_sel["avg_nll_gain"] == pytest.approx((0.1 - 0.1 - 0.4) / 3)
    assert ts_sel["avg_ece_gain"] == pytest.approx((0.01 - 0.01 - 0.04) / 3)
    ts_mean = summary.row(3, named=True)
    assert (ts_mean["nll_wins"], ts_mean["nll_losses"], ts_mean["n_pairs"]) == (2, 1, 3)
    assert ts_mean["avg_nll_gain"] == pytest.approx((0.05 + 0.05 - 0.1) / 3, abs=1e-15)
    platt_sel = summary.row(1, named=True)
    assert (platt_sel["nll_ties"], platt_sel["avg_nll_gain"]) == (3, 0.0)
    io.write_parquet(table, tmp_path / "calibration.parquet")
    assert write_calibration_summary(table=str(tmp_path / "calibration.parquet"), summary=str(tmp_path / "s.parquet"),
                                     csv=str(tmp_path / "s.csv"), md=str(tmp_path / "s.md")).equals(summary)


def test_schema_default_bounds_match_the_library_default():
    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    default = schema["properties"]["analysis"]["properties"]["temperature_bounds"]["default"]
    assert tuple(default) == calibration.DEFAULT_TEMPERATURE_BOUNDS


@pytest.mark.workflow
def test_lock_file_is_unchanged_when_evaluation_labels_change(import_run_copy):
    import_workdir = import_run_copy  # the import config, already run to the end
    config = ["--configfile", str(import_workdir / "config.yaml")]
    targets = ["results/tables/calibration.csv"]
    locks = {m: (import_workdir / f"results/lock/{m}.json").read_bytes() for m in ("m1", "m2")}
    assert set(json.loads(locks["m1"])["calibrators"]) == {"selected", "mean"}
    before = pl.read_csv(import_workdir / "results/tables/calibration.csv")
    # flip the label of every evaluation row (ds_a test, ds_b test), consistently in both models' files;
    # the ds_a train rows (the lock split) keep theirs
    for path in sorted((import_workdir / "imports").glob("*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        for row in rows:
            if row["split"] == "test":
                row["label"] = 1 - row["label"]
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    # the lock dataset's matrix changed, so both locks are recomputed, not merely kept
    assert dry_run_jobs(import_workdir, f"--configfile={import_workdir / 'config.yaml'}", *targets).get("lock") == 2
    run_snakemake(import_workdir, *config, "--cores", "2", *targets)
    for model, content in locks.items():
        assert (import_workdir / f"results/lock/{model}.json").read_bytes() == content, model
    after = pl.read_csv(import_workdir / "results/tables/calibration.csv")
    assert after.select("model", "dataset", "split", "method").equals(before.select("model", "dataset", "split", "method"))
    assert after.height == 2 * 2 * len(METHODS)
    # ... while every evaluation pair saw its new labels (flipped labels: AUROC -> 1 - AUROC)
    np.testing.assert_allclose(after["auroc"], 1 - before["auroc"], rtol=1e-12)
    assert (after["nll"] != before["nll"]).all()


def rows_smece_equal(table: pl.DataFrame, method: str, reference: float) -> bool:
    """The table's smooth ECE of ``method`` is relplot's value exactly (the point estimate is relplot's call)."""
    return table.filter(pl.col("method") == method)["smece"][0] == reference
