"""Labeled post-hoc calibrators, fit on the lock split only and stored as plain numbers.

Three calibrators of a score ``s`` (an unsafe probability), with ``x = logit(clip(s, eps, 1 - eps))``:

- temperature scaling ``sigmoid(x / T)``: T minimises the lock-split NLL, by bounded scalar
  minimisation over ``log T`` within ``temperature_bounds``;
- Platt ``sigmoid(a * x + b)``: unregularised logistic regression of the label on x
  (``scipy.optimize.minimize``, trust-region Newton);
- isotonic: the non-decreasing least-squares fit of the label on s (``scipy.optimize.isotonic_regression``
  on the pooled tied scores; the thresholds of scikit-learn's ``IsotonicRegression(out_of_bounds="clip")``),
  stored as its threshold arrays and applied by linear interpolation (``numpy.interp``, constant beyond
  the end points).

Each is fit to the ``selected`` and the ``mean`` score of :func:`lockfile.locked_scores`; the lock file holds
``calibrators: {score: {"temperature": {"T"}, "platt": {"a", "b"}, "isotonic": {"x": [..], "y": [..]}}}``.
Evaluation applies them unchanged (no refit) and names the results ``ts_<score>``, ``platt_<score>``,
``iso_<score>``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.special import expit, logit

from prompt_reliability.analysis import metrics, smooth_ece
from prompt_reliability.analysis.lockfile import locked_scores, read_lock
from prompt_reliability.base import io, tables
from prompt_reliability.data.matrix import split_rows

log = logging.getLogger("prompt_reliability")

CALIBRATED_SCORES = ("selected", "mean")
KINDS = ("temperature", "platt", "isotonic")
PREFIX = {"temperature": "ts", "platt": "platt", "isotonic": "iso"}
DEFAULT_TEMPERATURE_BOUNDS = (0.01, 100.0)
METRICS = ("nll", "ece", "auroc", "auprc")
PAIR = ("model", "dataset", "split")
PANEL = {"selected": "A", "mean": "B"}


class CalibrationError(ValueError):
    """Calibrators cannot be fit or applied; the message names the data or lock field and the fix."""


def method_name(kind: str, score: str) -> str:
    return f"{PREFIX[kind]}_{score}"


def score_logits(s: np.ndarray, eps: float = metrics.EPS) -> np.ndarray:
    return logit(np.clip(np.asarray(s, dtype=np.float64), eps, 1.0 - eps))


# fitting (lock split only)
def fit_temperature(s: np.ndarray, y: np.ndarray, eps: float = metrics.EPS,
                    bounds: Sequence[float] = DEFAULT_TEMPERATURE_BOUNDS) -> dict[str, float]:
    """``{"T": T}`` minimising ``nll(y, sigmoid(logit(s) / T))`` over ``log T`` in ``log(bounds)``."""
    low, high = (float(b) for b in bounds)
    if not 0 < low < high:
        raise CalibrationError(f"config key 'analysis.temperature_bounds' must be [low, high] with 0 < low < high, got {list(bounds)}")
    x = score_logits(s, eps)
    y = np.asarray(y, dtype=np.float64)
    from scipy.optimize import minimize_scalar  # imported where used: the workflow imports this module to parse

    result = minimize_scalar(lambda log_t: metrics.nll(y, expit(x / np.exp(log_t)), eps), bounds=(np.log(low), np.log(high)),
                             method="bounded", options={"xatol": 1e-10})
    temperature = float(np.exp(result.x))
    if min(abs(result.x - np.log(low)), abs(result.x - np.log(high))) < 1e-6:
        log.warning("temperature scaling: T = %.4g lies at a bound of analysis.temperature_bounds %s; widen the bounds", temperature, list(bounds))
    return {"T": temperature}


def fit_platt(s: np.ndarray, y: np.ndarray, eps: float = metrics.EPS, max_iter: int = 100) -> dict[str, float]:
    """``{"a", "b"}`` of the unregularised logistic regression ``P(y=1) = sigmoid(a * logit(s) + b)``.

    The mean log-loss is minimised by ``scipy.optimize.minimize`` (``trust-exact``: Newton steps
    with the exact gradient and Hessian inside a trust region, so a step never increases the
    convex loss), from ``a = 1, b = 0`` (the untreated score), then polished by
    ``scipy.optimize.root`` on the gradient.
    """
    y = np.asarray(y, dtype=np.float64)
    x = score_logits(s, eps)
    separable = len(np.unique(y)) == 2 and (x[y == 0].max() <= x[y == 1].min() or x[y == 1].max() <= x[y == 0].min())
    if separable:
        log.warning("Platt scaling: logit(s) separates the lock-split classes, so the maximum-likelihood (a, b) do not exist; "
                    "the fit stops where the likelihood no longer changes in floating point")
    design = np.column_stack([x, np.ones(len(y))])

    def loss(beta: np.ndarray) -> float:
        t = design @ beta
        return float(np.mean(np.logaddexp(0.0, t) - y * t))

    def gradient(beta: np.ndarray) -> np.ndarray:
        return design.T @ (expit(design @ beta) - y) / len(y)

    def hessian(beta: np.ndarray) -> np.ndarray:
        q = expit(design @ beta)
        return (design * (q * (1.0 - q))[:, None]).T @ design / len(y)

    from scipy.optimize import minimize, root  # imported where used: the workflow imports this module to parse

    result = minimize(loss, np.array([1.0, 0.0]), jac=gradient, hess=hessian, method="trust-exact",
                      options={"gtol": 1e-12, "maxiter": max_iter})
    beta = result.x
    if not separable:
        # Near the optimum a step changes the loss by less than its rounding, so the trust region
        # stops at a gradient of ~1e-9; Newton on the score equations (gradient = 0) takes it to ~1e-17.
        # (hybr reports "no further improvement" once it is there: the gradient, not its flag, decides)
        polished = root(gradient, beta, jac=hessian, method="hybr", options={"xtol": 1e-15})
        if np.all(np.isfinite(polished.x)) and np.abs(gradient(polished.x)).max() <= np.abs(gradient(beta)).max():
            beta = polished.x
        if not result.success and np.abs(gradient(beta)).max() > 1e-9:
            log.warning("Platt scaling did not converge (a = %.4g, b = %.4g; %s): the lock split is (nearly) separable "
                        "by this score, so the maximum-likelihood parameters diverge", beta[0], beta[1], result.message)
    a, b = (float(v) for v in beta)
    return {"a": a, "b": b}


def fit_isotonic(s: np.ndarray, y: np.ndarray) -> dict[str, list[float]]:
    """Threshold arrays ``{"x", "y"}`` of the least-squares non-decreasing fit of y on s.

    Scores closer than :data:`SCORE_RESOLUTION` to the first score of their pool are pooled first
    (their mean label, weighted by their count; the pool keeps that first score); pool-adjacent-
    violators then merges neighbouring pools until the means increase strictly. Of each run of
    equal fitted values only its two end points are kept: linear interpolation between the stored
    points gives back the step function. These are scikit-learn's ``IsotonicRegression``
    ``X_thresholds_`` / ``y_thresholds_`` (the tests compare), without its ~1.7 s import.
    """
    s = np.asarray(s, dtype=np.float64)
    order = np.argsort(s, kind="stable")
    x_sorted = s[order]
    starts = _pool_starts(x_sorted)
    pool_of = np.cumsum(starts) - 1
    x = x_sorted[starts]
    weights = np.bincount(pool_of).astype(np.float64)
    label_sums = np.bincount(pool_of, weights=np.asarray(y, dtype=np.float64)[order])
    fitted = _pool_adjacent_violators(label_sums, weights)
    keep = np.ones(len(x), dtype=bool)  # the ends of each run of equal fitted values
    keep[1:-1] = (fitted[1:-1] != fitted[:-2]) | (fitted[1:-1] != fitted[2:])
    return {"x": x[keep].tolist(), "y": fitted[keep].tolist()}


# Scores this close count as one: sigmoid outputs saturate to neighbouring floats just below 1.0
# (1 - 1.1e-16, 1.0), which must not become two pools with a vertical step between them.
SCORE_RESOLUTION = float(np.finfo(np.float64).resolution)  # 1e-15


def _pool_starts(x_sorted: np.ndarray) -> np.ndarray:
    """Mask of the sorted scores that open a pool: at least SCORE_RESOLUTION above the pool's first."""
    starts = np.r_[True, np.diff(x_sorted) >= SCORE_RESOLUTION]  # a gap this wide always opens one
    bounds = np.r_[np.flatnonzero(starts), len(x_sorted)]
    for first, end in zip(bounds[:-1], bounds[1:]):  # runs of close scores: rare, and short
        if x_sorted[end - 1] - x_sorted[first] >= SCORE_RESOLUTION:
            pool_first = x_sorted[first]
            for i in range(first + 1, end):
                if x_sorted[i] - pool_first >= SCORE_RESOLUTION:
                    starts[i], pool_first = True, x_sorted[i]
    return starts


def _pool_adjacent_violators(label_sums: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted non-decreasing least-squares fit of the means ``label_sums / weights`` (one per pool).

    ``scipy.optimize.isotonic_regression`` finds the blocks (pool-adjacent-violators); each block's
    value is then one division of its exact label sum by its count, so blocks of equal mean (5/16,
    10/32) get the same float and their samples tie, as exact arithmetic says.
    """
    from scipy.optimize import isotonic_regression  # imported where used, as above

    blocks = isotonic_regression(label_sums / weights, weights=weights).blocks
    starts = blocks[:-1]
    means = np.add.reduceat(label_sums, starts) / np.add.reduceat(weights, starts)
    return np.repeat(means, np.diff(blocks))


def fit_calibrators(scores: Mapping[str, np.ndarray], y: np.ndarray, *, eps: float = metrics.EPS,
                    temperature_bounds: Sequence[float] = DEFAULT_TEMPERATURE_BOUNDS,
                    score_names: Sequence[str] = CALIBRATED_SCORES, source: str = "") -> dict[str, dict[str, Any]]:
    """Every calibrator fit to every score in ``score_names`` (lock-split scores and labels)."""
    y = np.asarray(y)
    classes = set(np.unique(y).tolist())
    if classes != {0, 1}:
        raise CalibrationError(f"{source}: calibrators are fit on the lock split, which has labels {sorted(classes)}; they need both "
                               "safe (0) and unsafe (1) samples. Choose a lock split with both classes (config key 'lock')")
    return {
        name: {
            "temperature": fit_temperature(scores[name], y, eps, temperature_bounds),
            "platt": fit_platt(scores[name], y, eps),
            "isotonic": fit_isotonic(scores[name], y),
        }
        for name in score_names
    }


# applying (never refits)
def apply_temperature(params: Mapping[str, float], s: np.ndarray, eps: float = metrics.EPS) -> np.ndarray:
    return expit(score_logits(s, eps) / params["T"])


def apply_platt(params: Mapping[str, float], s: np.ndarray, eps: float = metrics.EPS) -> np.ndarray:
    return expit(params["a"] * score_logits(s, eps) + params["b"])


def apply_isotonic(params: Mapping[str, Sequence[float]], s: np.ndarray, eps: float = metrics.EPS) -> np.ndarray:
    return np.interp(np.asarray(s, dtype=np.float64), np.asarray(params["x"], dtype=np.float64), np.asarray(params["y"], dtype=np.float64))


APPLY = {"temperature": apply_temperature, "platt": apply_platt, "isotonic": apply_isotonic}


def check_calibrator(kind: str, params: Any, where: str) -> None:
    """Fail with the lock field and the fix when stored parameters are missing or malformed."""
    fix = "re-run the lock rule (snakemake --forcerun lock) to refit the calibrators"
    if not isinstance(params, Mapping):
        raise CalibrationError(f"{where}: missing; {fix}")
    if kind == "temperature":
        if not isinstance(params.get("T"), (int, float)) or not params["T"] > 0:
            raise CalibrationError(f"{where}.T must be a positive number, got {params.get('T')!r}; {fix}")
    elif kind == "platt":
        for key in ("a", "b"):
            if not isinstance(params.get(key), (int, float)):
                raise CalibrationError(f"{where}.{key} must be a number, got {params.get(key)!r}; {fix}")
    else:
        x, y = params.get("x"), params.get("y")
        if not isinstance(x, list) or not isinstance(y, list) or not x or len(x) != len(y):
            raise CalibrationError(f"{where}: 'x' and 'y' must be non-empty lists of equal length; {fix}")
        if np.any(np.diff(np.asarray(x, dtype=np.float64)) <= 0):
            raise CalibrationError(f"{where}.x must be strictly increasing; {fix}")


def calibrated_scores(scores: Mapping[str, np.ndarray], calibrators: Mapping[str, Any], eps: float = metrics.EPS,
                      source: str = "") -> dict[str, np.ndarray]:
    """Untreated and calibrated scores, in order ``selected, ts_selected, platt_selected, iso_selected, mean, ...``."""
    out: dict[str, np.ndarray] = {}
    for name in CALIBRATED_SCORES:
        out[name] = scores[name]
        for kind in KINDS:
            params = (calibrators.get(name) or {}).get(kind)
            check_calibrator(kind, params, f"{source}: calibrators.{name}.{kind}")
            out[method_name(kind, name)] = APPLY[kind](params, scores[name], eps)
    return out


def calibration_table(rows: pl.DataFrame, lock: Mapping[str, Any], n_bins: int = 15, eps: float = metrics.EPS,
                      source: str = "") -> pl.DataFrame:
    """One row per method (untreated and calibrated): ``method, nll, ece, auroc, auprc, smece`` on ``rows``
    (``smece``: relplot's smooth ECE, :mod:`.smooth_ece`)."""
    y = rows["label"].to_numpy()
    scores = calibrated_scores(locked_scores(rows, lock), lock.get("calibrators") or {}, eps, source)
    records = []
    for method, score in scores.items():
        values = metrics.reliability_metrics(y, score, n_bins=n_bins, eps=eps)
        records.append({"method": method, **{m: values[m] for m in METRICS}, "smece": smooth_ece.smece(y, score)[0]})
    return pl.DataFrame(records, schema={"method": pl.String, **{m: pl.Float64 for m in (*METRICS, "smece")}})


def write_calibration(*, matrix: str, lock: str, table: str, model: str, dataset: str, split: str,
                      analysis: Mapping[str, Any]) -> pl.DataFrame:
    """Calibration metrics of one evaluation pair as ``model, dataset, split, method, nll, ece, auroc, auprc, smece``."""
    full = pl.read_parquet(matrix)
    rows = split_rows(full, split, matrix)
    result = calibration_table(rows, read_lock(lock, full), analysis["ece_bins"], analysis["eps"], lock)
    result = tables.label_pair(result, model, dataset, split)
    io.write_parquet(result, table)
    return result


def calibration_summary(table: pl.DataFrame, baseline: str = "mean") -> pl.DataFrame:
    """Head-to-head of each calibrated method against the untreated ``baseline`` across pairs (Table 3).

    Panel A: calibrated selected prompt; panel B: calibrated mean. ``*_wins`` / ``*_losses`` count pairs where
    the method's metric is lower / higher than the baseline's (ties apart); ``avg_*_gain`` is the mean of
    ``baseline - method`` (positive: the calibrator helps). The mean's wins over ``ts_selected`` are its losses.
    """
    base = table.filter(pl.col("method") == baseline).select(*PAIR, *(pl.col(m).alias(f"base_{m}") for m in ("nll", "ece")))
    if not len(base):
        raise CalibrationError(f"calibration table has no rows of the baseline method {baseline!r}")
    records = []
    for score in CALIBRATED_SCORES:
        for kind in KINDS:
            method = method_name(kind, score)
            joined = table.filter(pl.col("method") == method).join(base, on=list(PAIR), how="inner")
            if not len(joined):
                continue
            record = {"panel": PANEL[score], "method": method, "baseline": baseline, "n_pairs": len(joined)}
            for m in ("nll", "ece"):
                gain = joined[f"base_{m}"].to_numpy() - joined[m].to_numpy()
                record.update({f"{m}_wins": int((gain > 0).sum()), f"{m}_ties": int((gain == 0).sum()),
                               f"{m}_losses": int((gain < 0).sum()), f"avg_{m}_gain": float(gain.mean())})
            records.append(record)
    return pl.DataFrame(records)


def write_calibration_summary(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    return tables.write_table(calibration_summary(pl.read_parquet(table)), summary, csv, md, "calibration_summary")
