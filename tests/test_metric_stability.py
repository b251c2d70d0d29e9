"""Footrule and coefficient of variation on hand-made rankings; the stability tables from small inputs."""

import math

import numpy as np
import polars as pl
import pytest

from prompt_reliability.analysis import metric_stability as ms


def test_rank_direction_ties_and_nan():
    assert ms.rank({"a": 0.1, "b": 0.3, "c": 0.2}, higher_better=False) == {"a": 1.0, "b": 3.0, "c": 2.0}
    assert ms.rank({"a": 0.1, "b": 0.3, "c": 0.2}, higher_better=True) == {"a": 3.0, "b": 1.0, "c": 2.0}
    assert ms.rank({"a": 0.5, "b": 0.5, "c": 0.1, "d": float("nan")}, higher_better=False) == {"a": 2.5, "b": 2.5, "c": 1.0}


def test_footrule_on_hand_made_rankings():
    identity = {"m1": 1, "m2": 2, "m3": 3, "m4": 4, "m5": 5}
    reversed_ = {"m1": 5, "m2": 4, "m3": 3, "m4": 2, "m5": 1}
    swap = {"m1": 2, "m2": 1, "m3": 3, "m4": 4, "m5": 5}
    assert ms.footrule(identity, identity) == 0
    assert ms.footrule(identity, swap) == 2
    assert ms.footrule(identity, reversed_) == 12  # the paper's maximum for five models, floor(25 / 2)


def _values(metric, table):
    return pl.DataFrame([{"metric": metric, "dataset": d, "model": m, "value": v}
                         for d, row in table.items() for m, v in row.items()], schema=ms.VALUE_SCHEMA)


def test_ranking_stability_table():
    # ECE (lower better): d1 ranks a<b<c, d2 ranks c<b<a (reversal, F = 4), d3 = d1
    values = pl.concat([
        _values("ece_mean", {"d1": {"a": 0.1, "b": 0.2, "c": 0.3}, "d2": {"a": 0.3, "b": 0.2, "c": 0.1},
                             "d3": {"a": 0.01, "b": 0.02, "c": 0.03}}),
        # UnF1 (higher better): same order everywhere, one model NaN in d2 is left out of that pair
        _values("unf1_mc", {"d1": {"a": 0.9, "b": 0.5, "c": 0.4}, "d2": {"a": 0.8, "b": 0.6, "c": float("nan")}}),
    ])
    table = ms.ranking_stability(values)
    got = {(r["metric"], r["dataset_a"], r["dataset_b"]): (r["n_models"], r["footrule"], r["max_footrule"])
           for r in table.iter_rows(named=True)}
    assert got == {("ece_mean", "d1", "d2"): (3, 4.0, 4.0), ("ece_mean", "d1", "d3"): (3, 0.0, 4.0),
                   ("ece_mean", "d2", "d3"): (3, 4.0, 4.0), ("unf1_mc", "d1", "d2"): (2, 0.0, 2.0)}


def test_coefficient_of_variation_by_hand():
    assert ms.coefficient_of_variation([2.0, 4.0]) == pytest.approx(math.sqrt(2) / 3)  # sd (ddof 1) = sqrt 2, mean 3
    assert ms.coefficient_of_variation([1.0, 1.0, 1.0]) == 0.0
    assert math.isnan(ms.coefficient_of_variation([0.0, 0.0]))
    assert math.isnan(ms.coefficient_of_variation([1.0]))


def test_subsample_sizes_seeding_and_all():
    assert ms.sizes_for([50, 100, "all", 1000], 120) == [50, 100, 120]
    x = np.arange(200, dtype=float)
    rows = ms.subsample_cv(lambda idx: float(np.mean(x[idx])), 200, [10, "all"], draws=5, seed=3, key="k")
    assert [r["n"] for r in rows] == [10, 200]
    assert rows[1]["cv"] == 0.0 and rows[1]["mean"] == pytest.approx(99.5)  # every draw is the whole set
    assert rows[0]["cv"] > 0
    again = ms.subsample_cv(lambda idx: float(np.mean(x[idx])), 200, [10], draws=5, seed=3, key="k")
    assert again[0] == rows[0]
    other = ms.subsample_cv(lambda idx: float(np.mean(x[idx])), 200, [10], draws=5, seed=3, key="other")
    assert other[0]["mean"] != rows[0]["mean"]


def test_unf1_sample_size_uses_classified_answers():
    answers = pl.DataFrame({"question_id": [f"q{i}" for i in range(8)], "kind": ["answerable", "unanswerable"] * 4,
                            "variant": ["default"] * 8, "reply": ["A", "unanswerable"] * 3 + ["", "B"]})
    rows = ms.unf1_sample_size(answers, model="m", dataset="d", setting="mc", sample_sizes=[4, "all"], draws=5, seed=0)
    assert [r["n"] for r in rows] == [4, 7]  # one empty reply is not classified
    assert rows[1]["mean"] == pytest.approx(2 * 0.75 * 1.0 / 1.75)  # TA 3, FA 1, TU 3, FU 0
    assert {r["metric"] for r in rows} == {"unf1_mc"}


def test_report_section_lists_stability_and_cv():
    from prompt_reliability.analysis import self_assessment_scores as sa

    answers = pl.DataFrame({"question_id": ["q1", "q2"], "kind": ["answerable", "unanswerable"], "variant": ["default"] * 2,
                            "reply": ["A", "unanswerable"]})
    counts = pl.DataFrame({"sample_id": ["s"], "kind": ["answerable"], "n_parsed": [2], "n_rejected": [0], "n_unparseable": [2]})
    table = pl.concat([sa.score_table(answers, counts, ["default", "cautious"], model="m", dataset="d", setting="mc")])
    stability = ms.ranking_stability(_values("ece_mean", {"d1": {"a": 0.1, "b": 0.2}, "d2": {"a": 0.3, "b": 0.2}}))
    sizes = pl.DataFrame([{"metric": "ece_mean", "model": "a", "dataset": "d", "n": 50, "draws": 5, "mean": 0.1, "sd": 0.02,
                           "cv": 0.2}], schema=ms.SIZE_SCHEMA)
    from prompt_reliability.report.self_assessment_tables import self_assessment_markdown

    text = self_assessment_markdown(table, stability, sizes)
    assert "Parsed questions: 2 of 4 requested (2 unparseable" in text  # counted once, not per variant
    assert "| ece_mean | 1 | 2 | 2.0000 | 2.0000 | 2.0000 |" in text  # dataset pairs, models, mean, max, max possible
    # the cautious variant has no answers: undefined, said so, left out of rankings
    assert "**Undefined (NaN), left out of every ranking:** m / d / mc / cautious: no answer under this variant (2 " \
           "questions parsed)" in text
    assert "| metric | n=50 |" in text and "| ece_mean | 0.2000 |" in text


def test_classifier_values_and_full_sample_cv(tmp_path):
    from prompt_reliability.analysis import metrics

    rng = np.random.default_rng(0)
    n = 60
    y = rng.integers(0, 2, n)
    p1, p2 = rng.random(n), rng.random(n)
    matrix = pl.DataFrame({"sample_id": [str(i) for i in range(n)], "split": ["test"] * n, "label": y, "P1": p1, "P2": p2})
    lock = {"prompt_ids": ["P1", "P2"], "selected_prompt": "P2", "random_prompt": "P1"}
    rows = ms.classifier_sample_size(matrix, lock, "test", model="m", dataset="d", sample_sizes=[20, "all"], draws=5, seed=1)
    full = {r["metric"]: r for r in rows if r["n"] == n}
    assert set(full) == {f"{m}_{k}" for m in ms.CLASSIFIER_METRICS for k in ms.METHODS}
    assert full["brier_selected"]["mean"] == pytest.approx(metrics.brier(y, p2)) and full["brier_selected"]["cv"] == 0.0
    assert full["mce_mean"]["mean"] == pytest.approx(metrics.mce(y, (p1 + p2) / 2, 15))
    assert all(r["dataset"] == "d/test" for r in rows)

    reliability = pl.DataFrame([{"model": m, "dataset": d, "split": "test", "method": method,
                                 **{k: v + (0.1 if method == "mean" else 0) for k in ms.CLASSIFIER_METRICS}}
                                for m, d, v in [("a", "x", 0.1), ("b", "x", 0.2), ("a", "y", 0.3), ("b", "y", 0.2)]
                                for method in ("selected", "random", "mean")])
    values = ms.classifier_values(reliability)
    assert values.height == 4 * 12 and set(values["dataset"]) == {"x/test", "y/test"}
    table = ms.ranking_stability(values)
    # every metric flips the two models between x and y: footrule 2 (= max for two models)
    assert table.height == 12 and table["footrule"].to_list() == [2.0] * 12


def test_undefined_unf1_is_left_out_of_the_ranking_not_ranked_last():
    from prompt_reliability.analysis import self_assessment_scores as sa

    nothing = pl.DataFrame({"n_unparseable": [8]})
    answered = pl.DataFrame({"kind": ["answerable", "unanswerable"] * 2, "variant": ["default"] * 4,
                             "reply": ["A", "unanswerable", "B", "C"]})
    rows = [sa.score_table(answered, nothing, ["default"], model=m, dataset=d, setting="open")
            for m in ("a", "b") for d in ("d1", "d2")]
    rows.append(sa.score_table(answered.clear(), nothing, ["default"], model="silent", dataset="d1", setting="open"))
    rows.append(sa.score_table(answered.clear(), nothing, ["default"], model="silent", dataset="d2", setting="open"))
    table = pl.concat(rows)
    assert table.filter(pl.col("model") == "silent")["unf1"].is_nan().all()
    stability = ms.ranking_stability(ms.unf1_values(table))
    assert stability["n_models"].to_list() == [2]  # 'silent' is in neither ranking
