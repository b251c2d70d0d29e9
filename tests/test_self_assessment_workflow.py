"""The embedded default plans one stage-1 and one stage-2 job per model x dataset x setting; off by default elsewhere."""

import pytest
import yaml
from conftest import REPO, dry_run_jobs, write_config

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
