"""The .test/ scenario configs (what CI runs and users copy) are valid and plan a complete run."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, dry_run_jobs, run_snakemake

# scenarios run by this workflow's own Snakefile; .test/module brings a Snakefile of its own
SCENARIOS = sorted(p.parent.name for p in (REPO / ".test").glob("*/config.yaml") if not (p.parent / "Snakefile").exists())


def test_scenarios_exist():
    assert {"import", "local"} <= set(SCENARIOS)


def test_the_workflow_catalog_file_declares_its_usage():
    import yaml

    usage = yaml.safe_load((REPO / ".snakemake-workflow-catalog.yml").read_text())["usage"]
    assert usage["report"] is True and usage["software-stack-deployment"]["conda"] is True
    assert (REPO / "config/README.md").is_file()  # the catalog shows it as the configuration's documentation


@pytest.mark.workflow
def test_the_workflow_runs_as_a_snakemake_module(tmp_path: Path):
    # .test/module imports this workflow with `module` + `use rule * from ... as prompt_reliability_*`,
    # with the import scenario's config: the repository's own files (schema, prompts, captions) must be
    # found from the module, and the generated table rules must run under their prefixed names.
    for scenario in ("module", "import"):
        shutil.copytree(REPO / ".test" / scenario, tmp_path / scenario,
                        ignore=shutil.ignore_patterns("results", ".snakemake"))
    workdir = tmp_path / "module"
    snakefile = workdir / "Snakefile"
    snakefile.write_text(snakefile.read_text().replace('"../../Snakefile"', repr(str(REPO / "Snakefile"))))
    jobs = dry_run_jobs(workdir, "--cores", "1", snakefile=snakefile)
    for rule in ("prompt_reliability_lock", "prompt_reliability_trust_table", "prompt_reliability_report_md", "all"):
        assert jobs.get(rule, 0) >= 1, f"the module's dry run plans no {rule} job: {jobs}"
    targets = ["results/tables/fragility_summary.csv", "results/tables/trust.csv"]
    run_snakemake(workdir, *targets, "--cores", "2", snakefile=snakefile)
    summary = pl.read_parquet(workdir / "results/tables/fragility_summary.parquet")
    assert summary.columns[:2] == ["family", "pairs"] and summary.height >= 1
    assert pl.read_parquet(workdir / "results/tables/trust.parquet").height == 2  # the two evaluation pairs


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_dry_run_plans_the_report(tmp_path: Path, scenario: str):
    workdir = tmp_path / scenario
    shutil.copytree(REPO / ".test" / scenario, workdir, ignore=shutil.ignore_patterns("results", ".snakemake"))
    jobs = dry_run_jobs(workdir, "--configfile", str(workdir / "config.yaml"), "--cores", "1")
    for rule in ("lock", "operating_points_table", "claims", "report_md", "all"):
        assert jobs.get(rule, 0) >= 1, f"{scenario}: the dry run plans no {rule} job: {jobs}"


def test_config_readme_lists_every_top_level_key_and_config():
    import yaml

    schema = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    readme = (REPO / "config/README.md").read_text()
    missing = [key for key in schema["properties"] if f"| `{key}` |" not in readme]
    assert not missing, f"config/README.md lacks rows for schema keys {missing}"
    for config in [*(REPO / "config").glob("*.yaml"), *(REPO / ".test").glob("*/config.yaml")]:
        assert config.relative_to(REPO / "config" if config.parent.name == "config" else REPO).as_posix() in readme \
            or config.name in readme, f"config/README.md does not describe {config}"
