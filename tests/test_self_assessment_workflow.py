"""The embedded default plans one stage-1 and one stage-2 job per model x dataset x setting; off by default elsewhere."""

import polars as pl
import pytest
import yaml
from conftest import REPO, dry_run_jobs, run_snakemake, write_config

pytestmark = pytest.mark.workflow


def test_default_plans_one_job_per_model_dataset_setting(tmp_path):
    jobs = dry_run_jobs(tmp_path)
    assert jobs["self_assessment_generate"] == 2 and jobs["self_assessment_answer"] == 2  # tiny-llava x synth x {mc, open}
    assert jobs["self_assessment_table"] == 1 and jobs["metric_stability"] == 1 and jobs["metric_sample_size"] == 1


def test_self_assessment_is_off_without_models(tmp_path):
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    del config["self_assessment"]
    jobs = dry_run_jobs(tmp_path, "--configfile", str(write_config(tmp_path, config)))
    assert not any(rule.startswith(("self_assessment", "metric_")) for rule in jobs)


def test_two_stages_run_end_to_end_on_a_tiny_hf_model(tmp_path):
    """Gibberish from random weights: the run finishes and the table says how many questions parsed."""
    config = {
        "datasets": {"synth": {"adapter": "synthetic", "image_size": 32, "splits": {"train": {"n": 8}, "test": {"n": 8}}}},
        "models": {"tiny": {"backend": "hf", "tiny": {"arch": "llava", "seed": 1}}},
        "lock": {"dataset": "synth"},
        "evaluate": [{"dataset": "synth"}],
        "self_assessment": {"models": ["tiny"], "images": 2, "k": 1, "max_new_tokens": 8, "settings": ["open"],
                            "variants": ["default", "cautious"]},
    }
    path = write_config(tmp_path, config)
    run_snakemake(tmp_path, "--configfile", str(path), "--cores", "2", "results/tables/self_assessment.csv",
                  "results/figures/self_assessment/answer_types.png")
    table = pl.read_parquet(tmp_path / "results/tables/self_assessment.parquet")
    assert table["variant"].to_list() == ["default", "cautious"]
    for row in table.iter_rows(named=True):
        assert row["n_questions"] + row["n_unparseable"] == 2 * 2 * 1  # images x kinds x k
        assert row["ta"] + row["fa"] + row["tu"] + row["fu"] + row["n_empty"] == row["n_questions"]
    generations = pl.read_parquet(tmp_path / "results/self_assessment/tiny/synth/open/generations.parquet")
    assert generations.height == 4 and generations["kind"].to_list() == ["answerable", "unanswerable"] * 2
    assert (tmp_path / "results/tables/self_assessment.md").read_text().startswith("# Self-assessment")
    assert (tmp_path / "results/figures/self_assessment/answer_types.png").read_bytes()[:4] == b"\x89PNG"
