"""Safety calibration in the workflow (issue 14): SRA tables, variants, response mode, trade-off, figures."""

from __future__ import annotations

import polars as pl
import pytest
from conftest import run_snakemake, write_config

pytestmark = pytest.mark.workflow
pytest.importorskip("transformers")

CONFIG = {
    "datasets": {
        "synth": {"adapter": "synthetic", "seed": 0, "image_size": 32,
                  "splits": {"train": {"n": 16, "unsafe_rate": 0.5}, "test": {"n": 12, "unsafe_rate": 0.5}}},
        "pope": {"adapter": "synthetic", "kind": "pope", "seed": 0, "image_size": 32, "splits": {"test": {"n": 8}}},
        "sqa": {"adapter": "synthetic", "kind": "science_mc", "seed": 0, "image_size": 32, "splits": {"test": {"n": 4}}},
    },
    "models": {"tiny": {"backend": "hf", "tiny": {"arch": "qwen2_vl", "seed": 0}}},
    "prompts": ["A"],
    "lock": {"dataset": "synth", "split": "train"},
    "evaluate": [{"dataset": "synth", "split": "test"}],
    "safety_calibration": {
        "models": ["tiny"],
        "few_shot": {"shots": [1]},
        "steering": {"layers": [1], "alphas": [0.0, 1.5]},
        "helpfulness": {"dataset": "pope", "multiple_choice": "sqa"},
        "responses": {"enabled": True, "max_new_tokens": 4, "judges": ["phrase", "tiny"]},
    },
}
TARGETS = ["results/tables/safety_calibration.csv", "results/tables/safety_tradeoff.csv", "results/tables/safety_responses.csv",
           "results/tables/safety_judges.csv", "results/figures/safety_pareto.png", "results/figures/safety_calibration_synth.png"]


def test_safety_calibration_targets(tmp_path):
    write_config(tmp_path, CONFIG)
    run_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--cores", "2", *TARGETS)
    table = pl.read_csv(tmp_path / "results/tables/safety_calibration.csv")
    assert {"selected", "random", "mean", "family:A", "none", "fewshot-1", "iar-L1-a0", "iar-L1-a1.5"} == set(table["method"])
    assert set(table["protocol"]) == {"first-token score (adaptation)"}
    assert table.columns == ["model", "dataset", "split", "method", "protocol", "category", "n_safe", "n_unsafe", "sra_s", "sra_u", "sra_a", "accuracy",
                             "verdict"]
    overall = table.filter(pl.col("category") == "all")
    assert (overall["n_safe"] + overall["n_unsafe"] == 12).all()
    tradeoff = pl.read_parquet(tmp_path / "results/tables/safety_tradeoff.parquet")
    assert set(tradeoff["method"]) == {"none", "fewshot-1", "iar-L1-a0", "iar-L1-a1.5"}
    zero = tradeoff.filter(pl.col("method") == "iar-L1-a0").row(0, named=True)
    assert all(zero[f"d_{m}"] == 0.0 for m in ("sra_s", "sra_u", "sra_a", "helpfulness", "helpfulness_mc", "nll", "ece",
                                                "auroc")), zero
    # ScienceQA-style multiple choice beside POPE: every option probed with the yes/no family, accuracy per question
    assert tradeoff["helpfulness_mc"].is_between(0, 1).all()
    probes = pl.read_parquet(tmp_path / "results/safety_calibration/scores/tiny/none/sqa.parquet")
    assert probes.height == 12 and set(probes["family"]) == {"pope"}
    steered = tradeoff.filter(pl.col("method") == "iar-L1-a1.5").row(0, named=True)
    assert steered["d_nll"] != 0.0
    # response mode: every variant's responses, judged by every judge (VSCBench's protocol)
    for variant in ("none", "fewshot-1", "iar-L1-a0", "iar-L1-a1.5"):
        responses = pl.read_parquet(tmp_path / f"results/safety_calibration/responses/tiny/{variant}/synth.parquet")
        assert responses.height == 12 and responses["response"].dtype == pl.Utf8
    unsteered = pl.read_parquet(tmp_path / "results/safety_calibration/responses/tiny/none/synth.parquet")
    zero = pl.read_parquet(tmp_path / "results/safety_calibration/responses/tiny/iar-L1-a0/synth.parquet")
    assert zero["response"].to_list() == unsteered["response"].to_list(), "strength 0 reproduces unsteered responses"
    judged = pl.read_csv(tmp_path / "results/tables/safety_responses.csv")
    overall = judged.filter(pl.col("category") == "all")
    assert set(zip(overall["method"], overall["judge"])) == {(v, j) for v in ("none", "fewshot-1", "iar-L1-a0", "iar-L1-a1.5")
                                                             for j in ("phrase", "tiny")}
    assert set(judged["protocol"]) == {"judged responses (VSCBench)"}
    assert (overall["n_safe"] + overall["n_unsafe"] + overall["n_unjudged"] == 12).all()
    judges_table = pl.read_csv(tmp_path / "results/tables/safety_judges.csv")
    assert judges_table["judge"].to_list() == ["phrase", "tiny"] and (judges_table["n"] >= 60).all()
    for figure in TARGETS[4:]:
        assert (tmp_path / figure).read_bytes()[:4] == b"\x89PNG"


def test_a_served_judge_is_wired_as_local_request_steps(tmp_path, monkeypatch):
    """The paper's GPT-4o setup: a served model as judge of every variant's responses and of the labelled table."""
    from conftest import dry_run_jobs

    config = {**CONFIG, "models": {**CONFIG["models"],
                                   "gpt": {"backend": "served", "url": "http://127.0.0.1:9/v1", "model": "gpt-4o",
                                           "api_key_env": "JUDGE_TEST_KEY"}}}
    config["safety_calibration"] = {**CONFIG["safety_calibration"],
                                    "responses": {"enabled": True, "max_new_tokens": 4, "judges": ["phrase", "gpt"]}}
    write_config(tmp_path, config)
    monkeypatch.setenv("JUDGE_TEST_KEY", "sk-test")
    jobs = dry_run_jobs(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--cores", "2",
                        "results/tables/safety_responses.csv", "results/tables/safety_judges.csv")
    assert jobs["safety_judge_responses_served"] == 4 and jobs["safety_judge_labelled_served"] == 1
    assert jobs["safety_response_sra"] == 4 * 2 and jobs["safety_responses"] == 4
    assert "safety_judge_responses" not in jobs
