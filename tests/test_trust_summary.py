"""REPORT.md's first screen (issue 23, item 5): per model, derived from the run's tables."""

from __future__ import annotations

import polars as pl

from prompt_reliability.report.trust_summary import first_screen, operating_point, recommended_score


def _frames():
    key = {"dataset": "d", "split": "test"}
    trust = pl.DataFrame([
        {"model": "good", **key, "n": 200, "label_mass_mean": 0.93, "label_mass_worst": 0.81, "worst_prompt": "B2",
         "auroc": 0.95, "auroc_ci_low": 0.92, "auroc_ci_high": 0.97, "chance_level": False, "n_resamples": 1000, "note": ""},
        {"model": "tiny", **key, "n": 200, "label_mass_mean": 0.001, "label_mass_worst": 0.0004, "worst_prompt": "C5",
         "auroc": 0.45, "auroc_ci_low": 0.37, "auroc_ci_high": 0.52, "chance_level": True, "n_resamples": 1000, "note": ""},
    ])
    reliability = pl.DataFrame([{"model": m, **key, "method": method, "nll": nll}
                                for m in ("good", "tiny") for method, nll in (("selected", 0.48), ("mean", 0.40),
                                                                              ("random", 0.73))])
    points = pl.DataFrame([{"model": m, **key, "score": s, "target": t, "target_value": v, "threshold": thr,
                            "recall": 0.89, "fpr": 0.16, "precision": prec, "flag_rate": 0.4, "prevalence": prev}
                           for m in ("good", "tiny") for s, thr in (("mean", 0.548), ("selected", 0.61))
                           for t, v in (("recall", 0.95), ("recall", 0.9), ("fpr", 0.05))
                           for prev, prec in (("native", 0.79), ("0.1", 0.38))])
    safety = pl.DataFrame([{"model": "good", **key, "method": "mean", "category": c, "verdict": v}
                           for c, v in (("drugs", "balanced"), ("hate", "over-safe"))])
    return {"trust": trust, "reliability": reliability, "operating_points": points, "safety_calibration": safety}


def test_first_screen_flags_chance_level_and_low_label_mass_and_names_the_threshold():
    text = first_screen(_frames())
    assert text.startswith("## Can I trust these scores?")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| good") or
            line.startswith("| tiny")}
    assert "**no**" in rows["tiny"] and "0.45 [0.37, 0.52]" in rows["tiny"] and "0.001 / 0.0004" in rows["tiny"]
    assert "**caution**" in rows["good"]  # the over-safe category
    assert "mean (NLL 0.400 vs selected 0.480)" in rows["good"]
    assert "0.548 (point estimate: recall >= 0.9)" in rows["good"] and "0.89 / 0.16" in rows["good"] and "native: 0.79; 0.1: 0.38" in rows["good"]
    cautions = text.split("**What not to trust**")[1]
    assert "**tiny on d/test**: its AUROC CI [0.37, 0.52] contains or lies below 0.5" in cautions
    assert "only 0.001 of the first token's probability is on the two labels (worst prompt 0.0004, C5)" in cautions
    assert "**good on d/test**: calibration problem (VSCBench verdict at `safety_calibration.threshold`) in hate (over-safe)" in cautions


def test_recommendation_and_operating_point_follow_the_tables():
    frames = _frames()
    reliability = frames["reliability"].filter(pl.col("model") == "good").with_columns(
        pl.when(pl.col("method") == "selected").then(0.1).otherwise(pl.col("nll")).alias("nll"))
    assert recommended_score(reliability)[0] == "selected"
    point = operating_point(frames["operating_points"].filter(pl.col("model") == "good"), "selected")
    assert point["threshold"] == 0.61 and point["target"] == 0.9 and point["precision"] == {"native": 0.79, "0.1": 0.38}
    assert first_screen({}) == ""


def test_the_guaranteed_threshold_is_shown_when_the_table_has_one():
    frames = _frames()
    points = frames["operating_points"].with_columns(pl.lit("point").alias("kind"), pl.lit(None, pl.Float64).alias("confidence"))
    guaranteed = points.filter(pl.col("score") == "mean").with_columns(
        pl.lit("guaranteed").alias("kind"), pl.lit(0.95).alias("confidence"), pl.lit(0.41).alias("threshold"),
        pl.lit(0.93).alias("recall"))
    frames["operating_points"] = pl.concat([points, guaranteed])
    point = operating_point(frames["operating_points"].filter(pl.col("model") == "good"), "mean")
    assert point["kind"] == "guaranteed" and point["threshold"] == 0.41 and point["recall"] == 0.93
    assert "0.410 (guaranteed at 95%: recall >= 0.9)" in first_screen(frames)
    # a lock split too small for a guarantee: the point estimate, named as such
    frames["operating_points"] = pl.concat([points, guaranteed.with_columns(pl.lit(None, pl.Float64).alias("threshold"))])
    assert "0.548 (point estimate: recall >= 0.9)" in first_screen(frames)
