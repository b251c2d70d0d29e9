# Dataset manifests: every adapter writes the same contract (DESIGN.md).


rule dataset_manifest:
    input:
        unpack(manifest_inputs),
    output:
        manifest="results/data/{dataset}.parquet",
    log:
        log_path("data", "{dataset}"),
    benchmark:
        benchmark_path("data", "{dataset}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        dataset_config=lambda w: config["datasets"][w.dataset],
        image_dir=lambda w: f"results/data/{w.dataset}/images",
    script:
        "../scripts/build_manifest.py"
