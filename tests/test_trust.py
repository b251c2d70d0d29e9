"""Trust table: label mass and the AUROC of the mean with its bootstrap CI, against brute-force references."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from prompt_reliability.analysis import bootstrap, trust


def _resample_by_hand(y, p, indices):
    from sklearn.metrics import roc_auc_score

    out = []
    for idx in indices.astype(np.int64):
        out.append(roc_auc_score(y[idx], p[idx]) if len(np.unique(y[idx])) == 2 else np.nan)
    return np.array(out)


@pytest.mark.parametrize("decimals", [1, None])  # many ties (they count half, as in scikit-learn); none
def test_resampled_auroc_equals_scikit_learn_on_each_materialised_resample(decimals):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 60)
    p = rng.random(60) if decimals is None else np.round(rng.random(60), decimals)
    indices = np.vstack(list(bootstrap.resample_indices(60, 50, seed=7, chunk_size=16)))
    np.testing.assert_allclose(trust.resampled_auroc(y, p, indices), _resample_by_hand(y, p, indices), rtol=0, atol=1e-12)


def test_a_resample_with_one_class_has_no_auroc():
    y, p = np.array([0, 1, 1]), np.array([0.1, 0.8, 0.9])
    indices = np.array([[1, 1, 2], [0, 1, 2]])
    got = trust.resampled_auroc(y, p, indices)
    assert np.isnan(got[0]) and got[1] == 1.0


def test_ci_brackets_the_point_and_flags_chance_level():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    informative = np.clip(0.5 + 0.3 * (y - 0.5) + 0.2 * rng.standard_normal(400), 0, 1)
    noise = rng.random(400)
    settings = dict(n_resamples=500, seed=1, chunk_size=128)
    good = trust.auroc_with_ci(y, informative, **settings)
    coin = trust.auroc_with_ci(y, noise, **settings)
    assert good[1] <= good[0] <= good[2] and good[1] > 0.5 and good[3] == 500
    assert coin[1] <= 0.5 <= coin[2]
    # the percentile interval of the materialised resamples, by hand
    indices = np.vstack(list(bootstrap.resample_indices(400, 500, 1, 128)))
    low, high = np.percentile(_resample_by_hand(y, informative, indices), [2.5, 97.5])
    assert good[1] == pytest.approx(low, abs=1e-12) and good[2] == pytest.approx(high, abs=1e-12)


def _cache(split, prompt_masses):
    return pl.DataFrame([{"sample_id": f"{split}{i}", "prompt_id": pid, "label_mass": m}
                         for pid, masses in prompt_masses.items() for i, m in enumerate(masses)])


def test_label_mass_mean_and_worst_prompt_on_the_split_only():
    caches = [_cache("test", {"A1": [0.9, 0.7], "A2": [0.2, 0.4]}), _cache("test", {"B1": [0.8, 0.8]}),
              _cache("train", {"A1": [0.0, 0.0]})]
    mean, worst, prompt = trust.label_mass(caches, ["test0", "test1"])
    assert mean == pytest.approx((0.9 + 0.7 + 0.2 + 0.4 + 0.8 + 0.8) / 6)
    assert worst == pytest.approx(0.3) and prompt == "A2"


def test_missing_data_is_nan_with_a_reason_not_zero():
    imported = [pl.DataFrame({"sample_id": ["a", "b"], "prompt_id": ["A1", "A1"], "label_mass": [None, None]},
                             schema_overrides={"label_mass": pl.Float64})]
    auroc = trust.auroc_with_ci(np.array([1, 1]), np.array([0.2, 0.9]), n_resamples=10, seed=0)
    row = trust.trust_row(np.array([1, 1]), imported, ["a", "b"], auroc)
    assert np.isnan(row["label_mass_mean"]) and np.isnan(row["auroc"]) and row["chance_level"] is None
    assert "imported" in row["note"] and "one class" in row["note"]
