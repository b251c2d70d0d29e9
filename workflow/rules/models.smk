# Tiny offline VLMs (config key models.<name>.tiny): real architectures, random weights, built here.


rule tiny_model:
    output:
        folder=directory(tiny_model_folder("{model}")),
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
        function="prompt_reliability.s2_scoring.tiny_models:write_tiny_model",
        tiny=lambda w: config["models"][w.model]["tiny"],
    script:
        "../scripts/call.py"
