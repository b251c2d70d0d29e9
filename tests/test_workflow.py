"""End-to-end: snakemake runs this repository's Snakefile in a temporary working directory."""

from __future__ import annotations

import polars as pl
import pytest
import yaml
from conftest import (
    IMPORT_CONFIG,
    PROMPT_IDS,
    dry_run_jobs,
    run_snakemake,
    write_config,
)

pytestmark = pytest.mark.workflow


def test_import_config_runs_from_any_workdir(import_run):
    import_workdir = import_run  # run by the fixture: -s this repository's Snakefile, -d a temporary folder
    table = pl.read_csv(import_workdir / "results/tables/per_prompt.csv")
    # only the import config's models and datasets: the embedded default must not leak in
    assert sorted(table["model"].unique().to_list()) == ["m1", "m2"]
    assert sorted(table["dataset"].unique().to_list()) == ["ds_a", "ds_b"]
    assert table.columns == ["model", "dataset", "split", "prompt_id", "family", "n", "ece", "nll", "auroc", "auprc", "error", "brier", "macro_ce", "mce", "smece"]
    assert table.height == 2 * 2 * 15
    assert set(table["prompt_id"]) == set(PROMPT_IDS)
    assert table.filter(pl.col("dataset") == "ds_b")["n"].unique().to_list() == [50]
    # smooth ECE is relplot's value on the pair's scores
    import relplot

    rows = pl.read_parquet(import_workdir / "results/matrix/m2/ds_b.parquet").filter(pl.col("split") == "test")
    row = table.filter((pl.col("model") == "m2") & (pl.col("dataset") == "ds_b") & (pl.col("prompt_id") == PROMPT_IDS[3]))
    assert row["smece"][0] == pytest.approx(relplot.smECE(rows[PROMPT_IDS[3]].to_numpy(), rows["label"].to_numpy().astype(float)),
                                            rel=1e-12)  # the CSV round-trip rounds the last digit
    assert not (import_workdir / "results/data/synth.parquet").exists()
    # a second dry run has nothing to do
    assert dry_run_jobs(import_workdir, "--configfile", str(import_workdir / "config.yaml")) == {}


def test_changing_analysis_params_reruns_only_analyses(import_run_copy):
    import_workdir = import_run_copy
    config_path = import_workdir / "config.yaml"
    assert dry_run_jobs(import_workdir, "--configfile", str(config_path)) == {}, "a copied run is complete"
    config = yaml.safe_load(config_path.read_text())
    config["analysis"] = {"ece_bins": 10}
    config_path.write_text(yaml.safe_dump(config))
    jobs = dry_run_jobs(import_workdir, "--configfile", str(config_path))
    assert jobs, "changing ECE bins must re-run the per-prompt metrics"
    assert not {"dataset_manifest", "score_family", "score_matrix"} & set(jobs), jobs


def test_report_reruns_only_on_what_it_renders_and_imports_on_their_content(import_run_copy):
    """REPORT.md renders part of the config (models, prompts, lock, seeds, the hash of what changes
    results): a setting of how jobs run rewrites nothing. Imported score files with new times and the
    same bytes (a clone) rebuild no manifest."""
    workdir = import_run_copy
    config_path = workdir / "config.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["workers"] = {"max_jobs": 7, "max_rss_mb": 999}
    config["resources"] = {"analysis_mem_mb": 1234, "analysis_runtime": 7}
    config_path.write_text(yaml.safe_dump(config))
    for imported in (workdir / "imports").iterdir():
        imported.touch()
    assert dry_run_jobs(workdir, "--configfile", str(config_path)) == {}
    # what it reads does re-run it (the check above can fail): a table with other content
    table = workdir / "results/tables/per_prompt.parquet"
    pl.read_parquet(table).reverse().write_parquet(table)
    assert "report_md" in dry_run_jobs(workdir, "--configfile", str(config_path))


def test_malformed_import_line_names_file_and_line(import_workdir):
    path = import_workdir / "imports/m2_b.jsonl"
    lines = path.read_text().splitlines()
    lines[6] = '{"sample_id": "x", "split": "test"'
    path.write_text("\n".join(lines) + "\n")
    result = run_snakemake(import_workdir, "--configfile", str(import_workdir / "config.yaml"), "--cores", "2", check=False)
    assert result.returncode != 0
    assert "imports/m2_b.jsonl, line 7: not valid JSON" in result.stdout + result.stderr


def test_invalid_config_fails_before_any_job_naming_the_key(tmp_path):
    config = {**IMPORT_CONFIG, "lock": {"dataset": "missing"}}
    write_config(tmp_path, config)
    result = run_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n", check=False)
    assert result.returncode != 0
    assert "'lock.dataset' is 'missing'" in result.stdout + result.stderr
    config = {**IMPORT_CONFIG, "analysis": {"ece_bins": 0}}
    write_config(tmp_path, config)
    result = run_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "-n", check=False)
    assert result.returncode != 0
    assert "ece_bins" in result.stdout + result.stderr


def test_synthetic_simulated_default_shape(tmp_path):
    config = {
        "datasets": {"synth": {"adapter": "synthetic", "splits": {"train": {"n": 30}, "test": {"n": 40, "unsafe_rate": 0.5}}, "image_size": 16}},
        "models": {"sim": {"backend": "simulate"}},
        "lock": {"dataset": "synth"},
        "evaluate": [{"dataset": "synth"}],
    }
    write_config(tmp_path, config)
    # the scoring stage only (the analyses are other tests' business)
    run_snakemake(tmp_path, "--configfile", str(tmp_path / "config.yaml"), "--cores", "2", "scores",
                  "results/matrix/sim/synth.parquet")
    manifest = pl.read_parquet(tmp_path / "results/data/synth.parquet")
    assert manifest.group_by("split").len().sort("split").rows() == [("test", 40), ("train", 30)]
    cache = pl.read_parquet(tmp_path / "results/scores/sim/synth/B.parquet")
    assert cache.height == 70 * 5 and cache["prompt_id"].unique().sort().to_list() == ["B1", "B2", "B3", "B4", "B5"]
    matrix = pl.read_parquet(tmp_path / "results/matrix/sim/synth.parquet")
    assert matrix.columns == ["sample_id", "split", "label", *PROMPT_IDS]
    assert matrix["sample_id"].to_list() == manifest["sample_id"].to_list()
