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
    "models": {"good": {"backend": "hf", "path": "good"}, "bad": {"backend": "hf", "path": "broken"}},
    "lock": {"dataset": "synth"},
    "evaluate": [{"dataset": "synth"}],
}


def test_a_bad_model_fails_in_the_preflight_before_any_scoring_job(tmp_path, tiny_models):
    # two model folders (the session's tiny qwen2_vl): one good, and one the config check cannot
    # fault (its folder exists) but that cannot be scored, as it lacks its chat template
    for name in ("good", "broken"):
        shutil.copytree(tiny_models["qwen2_vl"], tmp_path / name)
    template = tmp_path / "broken/chat_template.jinja"
    saved = template.read_text()
    template.unlink()
    config_file = write_config(tmp_path, CONFIG)
    planned = dry_run_jobs(tmp_path, "--configfile", str(config_file))
    assert planned["preflight"] == 1 and planned["score_family"] == 2 * 3

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
    assert "preflight" not in planned and planned["score_family"] == 6
