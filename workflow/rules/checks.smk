# Checks between the dataset manifests and scoring: no score cache is written before they pass.
# A checkpoint gate: scoring jobs wait for it (scoring_inputs in common.smk) without depending on
# its summary, so a re-run check (a new requirement, its code) re-scores nothing.
from prompt_reliability.base.jobs import call
from prompt_reliability.data.manifest_checks import (
    manifest_requirements,
    write_manifest_check,
)


checkpoint check_manifest:
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
        code=code_of(write_manifest_check),
        requirements=lambda w: manifest_requirements(config, w.dataset),
    run:
        call(write_manifest_check, input, output, params, wildcards, log)
