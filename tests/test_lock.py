"""The lock: selected prompt (NLL, then ECE, then error, then registry order), random prompt, order."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
from conftest import analysis_defaults

from prompt_reliability.analysis import lock, metrics
from prompt_reliability.data.matrix import MatrixError

ANALYSIS = {**analysis_defaults(), "seed": 42, "ece_bins": 15, "eps": 1e-12, "threshold": 0.5}


def make_matrix(columns: dict[str, list[float]], labels: list[int], split: str = "train") -> pl.DataFrame:
    n = len(labels)
    return pl.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "split": [split] * n, "label": labels, **columns})


def build(matrix: pl.DataFrame, prompt_ids: list[str], **analysis) -> dict:
    return lock.build_lock(matrix, model="m", dataset="d", split="train", prompt_ids=prompt_ids, analysis={**ANALYSIS, **analysis})


def test_selected_prompt_has_minimum_lock_nll():
    labels = [1, 1, 0, 0]
    matrix = make_matrix({"P1": [0.6, 0.6, 0.4, 0.4], "P2": [0.9, 0.8, 0.1, 0.2], "P3": [0.2, 0.3, 0.8, 0.7]}, labels)
    result = build(matrix, ["P1", "P2", "P3"])
    assert result["selected_prompt"] == "P2"
    assert result["prompt_order"] == ["P2", "P1", "P3"]
    for pid in ("P1", "P2", "P3"):
        assert result["per_prompt"][pid]["nll"] == pytest.approx(metrics.nll(np.array(labels), matrix[pid].to_numpy()))


def test_identical_prompts_tie_on_every_metric_and_keep_registry_order():
    column = [0.7, 0.2, 0.4, 0.9]
    matrix = make_matrix({"Z": column, "Y": column, "X": column}, [1, 0, 1, 1])
    result = build(matrix, ["Z", "Y", "X"])
    assert result["selected_prompt"] == "Z"
    assert result["prompt_order"] == ["Z", "Y", "X"]
    # registry order is the order given, not the alphabetical one
    assert build(matrix, ["X", "Y", "Z"])["prompt_order"] == ["X", "Y", "Z"]


def test_nll_tie_is_broken_by_ece_then_error(monkeypatch):
    labels = [1, 1, 0, 0]
    # P1: calibrated but wrong on half; P2: overconfident and wrong on half; P3: right, badly calibrated
    matrix = make_matrix({"P1": [0.5, 0.5, 0.5, 0.5], "P2": [0.99, 0.01, 0.01, 0.99], "P3": [0.6, 0.6, 0.4, 0.4]}, labels)
    ece = {pid: metrics.ece(np.array(labels), matrix[pid].to_numpy()) for pid in ("P1", "P2", "P3")}
    assert ece["P1"] < ece["P3"] < ece["P2"]
    monkeypatch.setattr(lock.metrics, "nll", lambda y, p, eps=1e-12: 0.5)  # every prompt ties on NLL
    assert build(matrix, ["P2", "P3", "P1"])["prompt_order"] == ["P1", "P3", "P2"]

    monkeypatch.setattr(lock.metrics, "ece", lambda y, p, n_bins=15, strategy="width": 0.1)  # ... and on ECE
    errors = {pid: metrics.error_rate(np.array(labels), matrix[pid].to_numpy()) for pid in ("P1", "P2", "P3")}
    assert errors == {"P1": 0.5, "P2": 0.5, "P3": 0.0}
    # P3 has the lowest error; P1 and P2 tie on everything and keep registry order
    assert build(matrix, ["P2", "P3", "P1"])["prompt_order"] == ["P3", "P2", "P1"]


def test_random_prompt_is_seeded_draw_in_registry_order():
    ids = [f"{family}{i}" for family in "ABC" for i in range(1, 6)]
    matrix = make_matrix({pid: [0.3, 0.6] for pid in ids}, [0, 1])
    for seed in (42, 0, 7):
        expected = ids[int(np.random.default_rng(seed).integers(len(ids)))]
        result = build(matrix, ids, seed=seed)
        assert result["random_prompt"] == expected
        assert result["random_seed"] == seed
    assert lock.random_prompt(ids, 42) == ids[int(np.random.default_rng(42).integers(15))]


def test_lock_reads_only_the_lock_split():
    train = make_matrix({"P1": [0.9, 0.1], "P2": [0.6, 0.4]}, [1, 0])
    test = make_matrix({"P1": [0.0, 1.0], "P2": [1.0, 0.0]}, [1, 0], split="test").with_columns(
        pl.col("sample_id") + "-test")
    alone, mixed = build(train, ["P1", "P2"]), build(pl.concat([train, test]), ["P1", "P2"])
    assert alone == mixed
    assert mixed["n"] == 2 and mixed["selected_prompt"] == "P1"


def test_missing_lock_split_names_the_split_and_the_fix():
    matrix = make_matrix({"P1": [0.2]}, [0], split="test")
    with pytest.raises(MatrixError, match=r"no samples in split 'train'.*lock.split"):
        build(matrix, ["P1"])


def test_locked_scores_pick_columns_and_average_all_prompts():
    matrix = make_matrix({"P1": [0.1, 0.9], "P2": [0.5, 0.5], "P3": [0.3, 1.0]}, [0, 1])
    state = {"prompt_ids": ["P1", "P2", "P3"], "selected_prompt": "P3", "random_prompt": "P1"}
    scores = lock.locked_scores(matrix, state)
    np.testing.assert_array_equal(scores["selected"], [0.3, 1.0])
    np.testing.assert_array_equal(scores["random"], [0.1, 0.9])
    np.testing.assert_allclose(scores["mean"], [0.3, 0.8])


def test_write_lock_is_plain_json_with_the_documented_keys(tmp_path):
    matrix = make_matrix({"P1": [0.2, 0.7], "P2": [0.4, 0.6]}, [0, 1])
    path = tmp_path / "matrix.parquet"
    matrix.write_parquet(path)
    written = lock.write_lock(matrix=str(path), lock=str(tmp_path / "lock" / "m.json"), model="m", dataset="d", split="train",
                              prompt_ids=["P1", "P2"], analysis=ANALYSIS)
    on_disk = json.loads((tmp_path / "lock" / "m.json").read_text())
    assert on_disk == written
    assert {"model", "lock", "n", "prompt_ids", "selected_prompt", "random_prompt", "random_seed", "prompt_order",
            "per_prompt", "calibrators"} <= set(on_disk)
    assert on_disk["lock"] == {"dataset": "d", "split": "train"}
