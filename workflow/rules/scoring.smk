# Score caches (one job per model, dataset, prompt family) and the per-(model, dataset) matrix.
# score_family: a CPU step (simulate and import backends, numpy only; hf models without GPUs, torch
# kept imported in the worker); score_family_gpu: hf models with GPUs (the GPU adapter, conda env);
# score_family_served: served models with logprobs, requests from a worker (cached per request).
from prompt_reliability.data import matrix
from prompt_reliability.scoring import cache
from prompt_reliability.scoring.cache import SCORING_VERSION

# What a score cache is keyed on besides the model's settings (docs/architecture.md, "What re-runs
# what"): the family's texts and label tokens, the prompt format, the samples the model sees, the
# scoring contract's version; paths untracked. The same for every backend.
SCORE_FAMILY_KEYS = dict(
    manifest=lambda w: untracked(manifest_path(w.dataset)),
    depends_on=scoring_keys,
    version=SCORING_VERSION,
    prompt_dir=untracked(PROMPT_DIR),
    prompts=prompts_hash,
    families=untracked(config["prompts"]),
    prompt_format=config["prompt_format"],
    work_dir=untracked(CHUNK_DIR),
)
# score_family and score_family_gpu (common.smk, ModelStep); score_family_served shares its output
# and log. Model settings are Keyed: batch and chunk size passed on, not keyed.
SCORE_FAMILY = ModelStep(
    "prompt_reliability.scoring.cache:score_family",
    inputs=scoring_inputs,
    output={"scores": "results/scores/{model}/{dataset}/{family}.parquet"},
    log=job_logs("scores", "{model}", "{dataset}", "{family}"),
    on=("model", models_with_backend(config, "simulate", "import", "hf")),
    resources=scoring_resources(),
    params=dict(
        model_config=lambda w: (
            hf_model_config(w.model)
            if config["models"][w.model]["backend"] == "hf"
            else model_config(w.model)
        ),
        **SCORE_FAMILY_KEYS,
    ),
)


rule score_family:
    input:
        unpack(SCORE_FAMILY.inputs),
    output:
        **SCORE_FAMILY.output,
    log:
        **SCORE_FAMILY.log,
    wildcard_constraints:
        **SCORE_FAMILY.cpu_constraints,
    resources:
        **SCORE_FAMILY.resources,
    params:
        **SCORE_FAMILY.params,
    run:
        call(
            SCORE_FAMILY.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=(
                resources.cpus_per_task
                if wildcards.model in HF_CPU_MODELS
                else None
            ),
        )


rule score_family_gpu:
    input:
        unpack(SCORE_FAMILY.inputs),
    output:
        **SCORE_FAMILY.output,
    log:
        **SCORE_FAMILY.log,
    wildcard_constraints:
        **SCORE_FAMILY.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **SCORE_FAMILY.resources,
    params:
        **SCORE_FAMILY.gpu_params,
    script:
        GPU_ADAPTER


rule score_family_served:
    input:
        unpack(SCORE_FAMILY.inputs),
    output:
        **SCORE_FAMILY.output,
    log:
        **SCORE_FAMILY.log,
    wildcard_constraints:
        model=one_of([m for m in MODELS if config["models"][m]["backend"] == "served"]),
    localrule: True  # requests: where Snakemake runs (reaches the server; compute nodes may lack internet)
    params:
        **SCORE_FAMILY_KEYS,
        model_config=lambda w: served_request_config(w.model),
        connection=lambda w: served_connection(w.model),
        request_cache=lambda w: served_request_cache(
            w.model, "scores", w.dataset, w.family
        ),
    run:
        call(cache.score_family, input, output, params, wildcards, log)


# The matrix takes ids, splits and labels from the manifest: keyed on its labels key, so that new
# image bytes (which re-score hf models only) leave the matrices of other models alone.
rule score_matrix:
    input:
        caches=expand(
            "results/scores/{{model}}/{{dataset}}/{family}.parquet", family=FAMILIES
        ),
    output:
        matrix="results/matrix/{model}/{dataset}.parquet",
    log:
        **job_logs("matrix", "{model}", "{dataset}"),
    localrule: True
    resources:
        **analysis_resources(),
    params:
        manifest=lambda w: untracked(manifest_path(w.dataset)),
        depends_on=manifest_keys(lambda w: [w.dataset], "labels"),
        code=code_of(matrix.write_matrix),
    run:
        call(matrix.write_matrix, input, output, params, wildcards, log)


# The evaluation split's rows, which every analysis of the pair reads. Being their common input
# also connects the pair's analyses into one group component: on SLURM the job of a pair then runs
# them in one Snakemake (the job-step executor starts one `srun` Snakemake per component, in turn).
rule split_matrix:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
    output:
        split_matrix=per_pair_piece("matrix"),
    log:
        **pair_logs("split_matrix"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(matrix.write_split_matrix),
    run:
        call(matrix.write_split_matrix, input, output, params, wildcards, log)


# Target for "inference only" (e.g. on the cluster; the analyses can then run elsewhere):
#   snakemake --profile config/profiles/slurm --configfile my.yaml scores
rule scores:
    input:
        expand(
            "results/scores/{model}/{dataset}/{family}.parquet",
            model=MODELS,
            dataset=DATASETS,
            family=FAMILIES,
        ),
    localrule: True
