# Tiny offline VLMs (config key models.<name>.tiny): real architectures, random weights, built here.


rule tiny_model:
    output:
        model=directory("results/models/{model}"),
    log:
        log_path("models", "{model}"),
    benchmark:
        benchmark_path("models", "{model}")
    wildcard_constraints:
        model=one_of(TINY_MODELS),
    conda:
        "../../envs/inference.yaml"
    resources:
        **analysis_resources(),
    params:
        tiny=lambda w: config["models"][w.model]["tiny"],
    script:
        "../scripts/build_tiny_model.py"
