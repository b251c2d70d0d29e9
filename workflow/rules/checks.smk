# Checks between the dataset manifests and scoring: no score cache is written before they pass.
from prompt_reliability.base.jobs import call
from prompt_reliability.data.manifest_checks import (
    manifest_requirements,
    write_manifest_check,
)


rule check_manifest:
    # No code_hash here: a gate; a change in its code must not re-score everything downstream.
    input:
        manifest="results/data/{dataset}.parquet",
    output:
        summary="results/checks/{dataset}.json",
    log:
        **job_logs("checks", "{dataset}"),
    localrule: True
    resources:
        **analysis_resources(),
    params:
        requirements=lambda w: manifest_requirements(config, w.dataset),
    run:
        call(write_manifest_check, input, output, params, wildcards, log)
