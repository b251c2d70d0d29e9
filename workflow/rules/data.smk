# Dataset manifests: every adapter writes the same contract (docs/architecture.md, "Manifest"),
# with its content keys beside it. A checkpoint gate: every step waits for it (wait_for_gates) and
# those that read a manifest are keyed on its content keys (common.smk, "Keys"), so a rebuilt
# manifest re-runs only the steps whose keys changed.
from prompt_reliability.data import datasets


checkpoint dataset_manifest:
    input:
        unpack(manifest_inputs),
    output:
        manifest="results/data/{dataset}.parquet",
        content_keys="results/data/{dataset}.keys.json",
    log:
        **job_logs("data", "{dataset}"),
    resources:
        **analysis_resources(),
    params:
        dataset_config=lambda w: config["datasets"][w.dataset],
        source=lambda w: untracked(local_source(w.dataset)),
        depends_on=local_source_keys,
        code=code_of(datasets.write_manifest),
        image_dir=lambda w: untracked(f"results/data/{w.dataset}/images"),
    run:
        call(datasets.write_manifest, input, output, params, wildcards, log)
