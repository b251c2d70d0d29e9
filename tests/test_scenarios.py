"""The .test/ scenario configs (what CI runs and users copy) are valid and plan a complete run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO, dry_run_jobs

SCENARIOS = sorted(p.parent.name for p in (REPO / ".test").glob("*/config.yaml"))


def test_scenarios_exist():
    assert {"import", "local"} <= set(SCENARIOS)


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
