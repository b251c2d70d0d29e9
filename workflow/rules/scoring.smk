# Score caches (one job per model, dataset, prompt family) and the per-(model, dataset) matrix.
# score_family: simulate and import backends (no torch); score_family_hf: Hugging Face VLMs.


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
    conda:
        "../../envs/analysis.yaml"
    resources:
        **scoring_resources(),
    params:
        model_config=lambda w: model_config(w.model),
        prompt_dir=untracked(PROMPT_DIR),
        prompts=prompts_hash,
        families=config["prompts"],
        prompt_format=config["prompt_format"],
    script:
        "../scripts/score_family.py"


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
        model=one_of(models_with_backend(config, "hf")),
    conda:
        "../../envs/inference.yaml"
    resources:
        **scoring_resources(),
    params:
        model_config=lambda w: hf_model_config(w.model),
        prompt_dir=untracked(PROMPT_DIR),
        prompts=prompts_hash,
        families=config["prompts"],
        prompt_format=config["prompt_format"],
    script:
        "../scripts/score_family.py"


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
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    script:
        "../scripts/score_matrix.py"


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


# Pure reshaping of the caches: not worth a cluster job (queue wait and Snakemake start-up).
localrules:
    scores,
    score_matrix,
