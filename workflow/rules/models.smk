# Tiny offline VLMs (config key models.<name>.tiny): real architectures, random weights, built here
# (CPU, seconds): a CPU step, in a worker that keeps torch imported for the model steps after it.


rule tiny_model:
    output:
        folder=directory(tiny_model_folder("{model}")),
    log:
        **job_logs("models", "{model}"),
    wildcard_constraints:
        model=one_of(TINY_MODELS),
    resources:
        **analysis_resources(),
    params:
        tiny=lambda w: config["models"][w.model]["tiny"],
    run:
        call(
            "prompt_reliability.scoring.tiny_models:write_tiny_model",
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=1,
        )
