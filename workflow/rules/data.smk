# Dataset manifests: every adapter writes the same contract (docs/architecture.md, "Manifest").
from prompt_reliability.data import datasets


rule dataset_manifest:
    input:
        unpack(manifest_inputs),
    output:
        manifest="results/data/{dataset}.parquet",
    log:
        **job_logs("data", "{dataset}"),
    resources:
        **analysis_resources(),
    params:
        dataset_config=lambda w: config["datasets"][w.dataset],
        image_dir=lambda w: f"results/data/{w.dataset}/images",
    run:
        call(datasets.write_manifest, input, output, params, wildcards, log)
