# Tiny offline VLMs (config key models.<name>.tiny): real architectures, random weights, built here
# (CPU, seconds), inside the Snakemake process like every step that needs no GPU.


rule tiny_model:
    output:
        folder=directory(tiny_model_folder("{model}")),
    log:
        log_path("models", "{model}"),
    benchmark:
        benchmark_path("models", "{model}")
    wildcard_constraints:
        model=one_of(TINY_MODELS),
    resources:
        **analysis_resources(),
    params:
        tiny=lambda w: config["models"][w.model]["tiny"],
    run:
        call_model(
            "prompt_reliability.scoring.tiny_models:write_tiny_model",
            input,
            output,
            params,
            wildcards,
            log,
        )
