"""The distillation path as workflow rules: the .test/distillation scenario end to end, and the paper's shape
on the SLURM profile (dry run, offline)."""

from __future__ import annotations

import re
import shutil

import polars as pl
import pytest
import yaml
from conftest import REPO, run_snakemake

from prompt_reliability.base.config import validate_config
from prompt_reliability.base.resources import scoring_resources

PAPER = REPO / "config/distillation_paper.yaml"
SCHEMA = str(REPO / "workflow/schemas/config.schema.yaml")
KEYS = {"OPENAI_API_KEY": "not-a-key", "MOONSHOT_API_KEY": "not-a-key", "HF_HUB_OFFLINE": "1"}


def test_paper_shape_dry_runs_to_27_gpu_training_jobs_on_the_slurm_profile(tmp_path):
    out = run_snakemake(tmp_path, "-n", "--profile", str(REPO / "config/profiles/slurm"), "--configfile", str(PAPER),
                        env=KEYS).stdout
    config = validate_config(yaml.safe_load(PAPER.read_text()), SCHEMA)
    training = [block for block in re.split(r"\n(?=(?:local)?rule \w+:)", out) if block.startswith("rule distillation_train_gpu:")]
    assert len(training) == 3 * 3 * 3
    seen = set()
    for block in training:
        wildcards = dict(re.findall(r"(\w+)=([\w.-]+)", re.search(r"wildcards: (.*)", block).group(1)))
        seen.add((wildcards["student"], wildcards["teacher"], wildcards["strategy"]))
        resources = dict(item.split("=", 1) for item in re.search(r"resources: (.*)", block).group(1).split(", "))
        want = scoring_resources(config["distillation"]["students"][wildcards["student"]])
        assert int(resources["gpu"]) == want["gpu"] >= 1 and resources["gpu_model"] == "h100"
        assert int(resources["mem_mb"]) == want["mem_mb"] and int(resources["runtime"]) == want["runtime"]
    assert {s for s, _, _ in seen} == {"internvl2-8b", "qwen-vl-chat-7b", "mplug-owl3-7b"}
    assert {g for _, _, g in seen} == {"qa", "iq", "joint"} and len({t for _, t, _ in seen}) == 3
    # the students' evaluation: base + 9 adapters each, on GPUs too
    assert len(re.findall(r"^rule distillation_generate_gpu:", out, flags=re.M)) == 3 * 10
    assert not re.search(r"^rule distillation_train:", out, flags=re.M)  # no student trains on a CPU here


@pytest.mark.workflow
def test_distillation_scenario_runs_the_whole_path(tmp_path):
    workdir = tmp_path / "distillation"
    shutil.copytree(REPO / ".test/distillation", workdir, ignore=shutil.ignore_patterns("results", ".snakemake"))
    run_snakemake(workdir, "--configfile", "config.yaml", "--cores", "2", timeout=600)
    results = workdir / "results"
    table = pl.read_parquet(results / "tables/distillation.parquet")
    assert table.select("strategy").to_series().to_list() == ["baseline", "qa", "iq", "joint"]
    base, iq = (table.filter(pl.col("strategy") == s).row(0, named=True) for s in ("baseline", "iq"))
    assert base["parse_rate"] == 0.0 and iq["parse_rate"] > base["parse_rate"]  # trained on the format
    assert iq["d_parse_rate"] == iq["parse_rate"] - base["parse_rate"]
    assert base["n_probes"] == 12 and base["n_captions"] == 6 and 0 <= base["pope_f1"] <= 1
    # no image is both trained on and evaluated on
    held = set(pl.read_parquet(results / "distillation/heldout_images.parquet")["image_sha256"])
    for strategy in ("qa", "iq", "joint"):
        data = pl.read_parquet(results / f"distillation/data/teacher/{strategy}.parquet")
        assert data.height and not set(data["image_sha256"]) & held
    # adapters are safetensors + JSON; the checkpoints of finished jobs are gone
    adapter = results / "distillation/adapters/tiny-student/teacher/iq"
    assert {p.name for p in adapter.iterdir()} >= {"adapter_model.safetensors", "adapter_config.json", "training.json"}
    assert not [p for p in results.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".pkl", ".pickle")]
    assert not (results / "distillation/checkpoints").exists() or not any((results / "distillation/checkpoints").rglob("*.json"))
    claims = pl.read_parquet(results / "tables/claims.parquet").filter(pl.col("paper_name") == "UnSAF distillation")
    assert claims.height == 3
    report = (results / "REPORT.md").read_text()
    assert "## Uncertainty-aware distillation" in report and "not that distillation helps" in report
    dry = run_snakemake(workdir, "--configfile", "config.yaml", "--cores", "2", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    # training is keyed on what determines the adapter: how the job runs re-trains nothing, the learning rate does
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["distillation"]["training"].update(checkpoint_steps=7, gradient_checkpointing=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    dry = run_snakemake(workdir, "--configfile", "config.yaml", "--cores", "2", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr  # REPORT.md neither: its config hash leaves them out
    # the study elsewhere, results/ copied with its times, no .snakemake, every other file new (a clone): nothing
    moved = tmp_path / "moved"
    shutil.copytree(workdir, moved, ignore=shutil.ignore_patterns(".snakemake"))
    for path in moved.rglob("*"):
        if "results" not in path.relative_to(moved).parts:
            path.touch()
    dry = run_snakemake(moved, "--configfile", "config.yaml", "--cores", "2", "-n")
    assert "Nothing to be done" in dry.stdout + dry.stderr
    config["distillation"]["training"]["learning_rate"] = 0.001
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    planned = run_snakemake(workdir, "--configfile", "config.yaml", "--cores", "2", "-n", "--quiet", "rules").stdout
    assert re.search(r"^distillation_train\s+3$", planned, flags=re.M), planned
