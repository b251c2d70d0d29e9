# Score caches (one job per model, dataset, prompt family) and the per-(model, dataset) matrix.
# score_family: simulate and import backends (numpy only), in a worker process (a job that asks
# for GPUs, say to reserve them on a workstation, gets a process of its own that claims them);
# score_family_hf_cpu: hf models without GPUs, in a worker process (torch kept imported there);
# score_family_hf: hf models with GPUs (own process, GPU claim and conda environment);
# score_family_served: served models with logprobs, requests from a worker process (cached per request).
from prompt_reliability.data import matrix
from prompt_reliability.scoring import cache


rule score_family:
    input:
        unpack(scoring_inputs),
    output:
        scores="results/scores/{model}/{dataset}/{family}.parquet",
    log:
        log_path("scores", "{model}", "{dataset}", "{family}"),
    benchmark:
        benchmark_path("scores", "{model}", "{dataset}", "{family}")
    wildcard_constraints:
        model=one_of(models_with_backend(config, "simulate", "import")),
    resources:
        **scoring_resources(),
    params:
        model_config=lambda w: (
            hf_model_config(w.model)
            if w.model in HF_CPU_MODELS
            else model_config(w.model)
        ),
        prompt_dir=untracked(PROMPT_DIR),
        prompts=prompts_hash,
        families=config["prompts"],
        prompt_format=config["prompt_format"],
        work_dir=CHUNK_DIR,
    run:
        call_model(
            "prompt_reliability.scoring.cache:score_family",
            input,
            output,
            params,
            wildcards,
            log,
            resources,
            loads_model=False,
        )


rule score_family_served:
    input:
        unpack(scoring_inputs),
    output:
        scores="results/scores/{model}/{dataset}/{family}.parquet",
    log:
        log_path("scores", "{model}", "{dataset}", "{family}"),
    benchmark:
        benchmark_path("scores", "{model}", "{dataset}", "{family}")
    wildcard_constraints:
        model=one_of([m for m in MODELS if config["models"][m]["backend"] == "served"]),
    localrule: True  # requests: where Snakemake runs (reaches the server; compute nodes may lack internet)
    params:
        model_config=lambda w: model_config(w.model),
        prompt_dir=untracked(PROMPT_DIR),
        prompts=prompts_hash,
        families=config["prompts"],
        prompt_format=config["prompt_format"],
        work_dir=CHUNK_DIR,
        request_cache=lambda w: served_request_cache(
            w.model, "scores", w.dataset, w.family
        ),
    run:
        call(cache.score_family, input, output, params, wildcards, log)


rule score_family_hf_cpu:
    input:
        unpack(scoring_inputs),
    output:
        scores="results/scores/{model}/{dataset}/{family}.parquet",
    log:
        log_path("scores", "{model}", "{dataset}", "{family}"),
    benchmark:
        benchmark_path("scores", "{model}", "{dataset}", "{family}")
    wildcard_constraints:
        model=one_of(HF_CPU_MODELS),
    resources:
        **scoring_resources(),
    params:
        model_config=lambda w: hf_model_config(w.model),
        prompt_dir=untracked(PROMPT_DIR),
        prompts=prompts_hash,
        families=config["prompts"],
        prompt_format=config["prompt_format"],
        work_dir=CHUNK_DIR,
    run:
        call_model(
            "prompt_reliability.scoring.cache:score_family",
            input,
            output,
            params,
            wildcards,
            log,
            resources,
        )


rule score_family_hf:
    input:
        unpack(scoring_inputs),
    output:
        scores="results/scores/{model}/{dataset}/{family}.parquet",
    log:
        log_path("scores", "{model}", "{dataset}", "{family}"),
    benchmark:
        benchmark_path("scores", "{model}", "{dataset}", "{family}")
    wildcard_constraints:
        model=one_of(HF_GPU_MODELS),
    conda:
        "../../envs/inference.yaml"
    resources:
        **scoring_resources(),
    params:
        function="prompt_reliability.scoring.cache:score_family",
        model_config=lambda w: hf_model_config(w.model),
        prompt_dir=untracked(PROMPT_DIR),
        prompts=prompts_hash,
        families=config["prompts"],
        prompt_format=config["prompt_format"],
        work_dir=CHUNK_DIR,
    script:
        "../scripts/call.py"


rule score_matrix:
    input:
        manifest="results/data/{dataset}.parquet",
        caches=expand(
            "results/scores/{{model}}/{{dataset}}/{family}.parquet", family=FAMILIES
        ),
    output:
        matrix="results/matrix/{model}/{dataset}.parquet",
    log:
        log_path("matrix", "{model}", "{dataset}"),
    benchmark:
        benchmark_path("matrix", "{model}", "{dataset}")
    localrule: True
    resources:
        **analysis_resources(),
    run:
        call(matrix.write_matrix, input, output, None, wildcards, log)


# The evaluation split's rows, which every analysis of the pair reads. Being their common input
# also connects the pair's analyses into one group component: on SLURM the job of a pair then runs
# them in one Snakemake (the job-step executor starts one `srun` Snakemake per component, in turn).
rule split_matrix:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
    output:
        split_matrix=per_pair_piece("matrix"),
    log:
        log_path("split_matrix", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("split_matrix", "{model}", "{dataset}", "{split}")
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    run:
        call(matrix.write_split_matrix, input, output, None, wildcards, log)


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
