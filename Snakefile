# Prompt-family reliability of zero-shot VLM safety scores.
# Thin entry point: config, validation, rule modules. All logic lives in src/prompt_reliability.
import os
import sys

from snakemake.utils import min_version, validate

min_version("9.0")

# The embedded default applies only when no --configfile is given: Snakemake would otherwise
# merge its nested dicts (models, datasets) into the user's config.
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config.yaml")


validate(config, "workflow/schemas/config.schema.yaml")

# Scripts import this workflow's own package, whatever is installed in the environment.
sys.path.insert(0, os.path.join(workflow.basedir, "src"))
from prompt_reliability.s0_base.runtime import use_package_from

use_package_from(os.path.join(workflow.basedir, "src"))


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"


wildcard_constraints:
    model=one_of(MODELS),
    dataset=one_of(config["datasets"]),
    family=one_of(FAMILIES),
    split="[^/]+",


include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/scoring.smk"
include: "workflow/rules/per_prompt.smk"
include: "workflow/rules/lock.smk"
include: "workflow/rules/aggregation.smk"
include: "workflow/rules/calibration.smk"
include: "workflow/rules/fragility.smk"
include: "workflow/rules/reliability.smk"
include: "workflow/rules/bootstrap.smk"
include: "workflow/rules/selective.smk"
include: "workflow/rules/safety_calibration.smk"


localrules:
    all,


rule all:
    default_target: True
    input:
        final_targets,
