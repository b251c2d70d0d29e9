"""The preflight rule: every hf scoring job waits for it, and a bad model stops the run there."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import dry_run_jobs, run_snakemake, write_config

pytestmark = pytest.mark.workflow
pytest.importorskip("transformers")

CONFIG = {
    "datasets": {"synth": {"adapter": "synthetic", "seed": 1, "image_size": 32,
                           "splits": {"train": {"n": 4}, "test": {"n": 4}}}},
    "models": {"good": {"backend": "hf", "tiny": {"arch": "qwen2_vl"}}},
    "lock": {"dataset": "synth"},
    "evaluate": [{"dataset": "synth"}],
}


def test_a_bad_model_fails_in_the_preflight_before_any_scoring_job(tmp_path):
    # a model the config check cannot fault (its folder exists) but that cannot be scored: a copy
    # of a built tiny model without its chat template
    config_file = write_config(tmp_path, CONFIG)
    run_snakemake(tmp_path, "--configfile", str(config_file), "--cores", "1", "results/models/good")
    shutil.copytree(tmp_path / "results/models/good", tmp_path / "broken")
    template = tmp_path / "broken/chat_template.jinja"
    saved = template.read_text()
    template.unlink()
    config = {**CONFIG, "models": {**CONFIG["models"], "bad": {"backend": "hf", "path": "broken"}}}
    write_config(tmp_path, config)
    planned = dry_run_jobs(tmp_path, "--configfile", str(config_file))
    assert planned["preflight"] == 1 and planned["score_family_hf_cpu"] == 2 * 3

    failed = run_snakemake(tmp_path, "--configfile", str(config_file), "--cores", "2", check=False)
    assert failed.returncode != 0
    log = (tmp_path / "results/logs/preflight/hf_models.log").read_text()
    assert "model 'bad': 'broken' has no chat template" in log and "model 'good':" not in log
    assert not (tmp_path / "results/preflight/hf_models.json").exists()
    assert not (tmp_path / "results/scores").exists() and not (tmp_path / "results/logs/scores").exists(), \
        "no scoring job may start before the preflight passes"

    template.write_text(saved)  # fixed
    run_snakemake(tmp_path, "--configfile", str(config_file), "--cores", "1", "preflight")
    report = json.loads((tmp_path / "results/preflight/hf_models.json").read_text())["models"]
    assert {name: facts["model_type"] for name, facts in report.items()} == {"good": "qwen2_vl", "bad": "qwen2_vl"}
    assert report["bad"]["labels"]["strings"] == ["U", "S"]
    planned = dry_run_jobs(tmp_path, "--configfile", str(config_file))
    assert "preflight" not in planned and planned["score_family_hf_cpu"] == 6
