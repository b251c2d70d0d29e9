# Prompt-family reliability of zero-shot VLM safety scores.
# Thin entry point: config, validation, rule modules. All logic lives in src/prompt_reliability.
import os
import sys

from snakemake.utils import min_version

min_version("9.0")

# This repository's root, also when another workflow uses this one as a module (.test/module):
# workflow.basedir is then the importing workflow's folder.
WORKFLOW_DIR = os.fspath(workflow.current_basedir)

# Scripts import this workflow's own package, whatever is installed in the environment.
sys.path.insert(0, os.path.join(WORKFLOW_DIR, "src"))
from prompt_reliability.base.runtime import use_package_from

use_package_from(os.path.join(WORKFLOW_DIR, "src"))

# The embedded default applies only when no --configfile is given: Snakemake would otherwise
# merge its nested dicts (models, datasets) into the user's config. Its syntax is checked first,
# so that an error names the file, line and column (Snakemake's own message names neither; it
# reads a --configfile before this file runs: README, "Your own models and datasets").
if not workflow.overwrite_configfiles:
    from snakemake.exceptions import WorkflowError
    from prompt_reliability.base.config import ConfigError, load_config_file

    try:
        load_config_file(os.path.join(WORKFLOW_DIR, "config.yaml"))
    except ConfigError as err:
        raise WorkflowError(f"Invalid configuration: {err}") from None

    configfile: os.path.join(WORKFLOW_DIR, "config.yaml")


# The config is validated (schema, defaults) and cross-checked in workflow/rules/common.smk.


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    model=one_of(MODELS),
    dataset=one_of(config["datasets"]),
    family=one_of(FAMILIES),
    split="[^/]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/checks.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/preflight.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/per_prompt.smk"
include: "workflow/rules/lock.smk"
include: "workflow/rules/aggregation.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/fragility.smk"
include: "workflow/rules/reliability.smk"
include: "workflow/rules/bootstrap.smk"
include: "workflow/rules/selective.smk"
include: "workflow/rules/operating_points.smk"
include: "workflow/rules/family_view.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/self_assessment.smk"
include: "workflow/rules/safety_calibration.smk"
include: "workflow/rules/distillation.smk"
include: "workflow/rules/vscbench_sim.smk"
include: "workflow/rules/report.smk"


# every step waits for the gates (manifests, their checks, the preflight): common.smk, "Gates"
wait_for_gates()


rule all:
    default_target: True
    input:
        final_targets,
    localrule: True


onsuccess:
    # printed at exit, after Snakemake's own closing lines (log path, elapsed time)
    import atexit

    atexit.register(print, report_line())
