# Reliability of every single prompt on every evaluation pair.

FINAL_TARGETS.extend(["results/tables/per_prompt.csv", "results/tables/per_prompt.md"])


rule per_prompt_metrics:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
    output:
        table="results/analysis/{model}/{dataset}/{split}/per_prompt.parquet",
    log:
        log_path("per_prompt", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("per_prompt", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        family_of=FAMILY_OF,
        analysis=analysis_params("ece_bins", "eps", "threshold"),
    script:
        "../scripts/per_prompt.py"


rule per_prompt_table:
    input:
        pieces=per_pair("results/analysis/{model}/{dataset}/{split}/per_prompt.parquet"),
    output:
        csv=report(
            "results/tables/per_prompt.csv",
            caption="../report/per_prompt.rst",
            category="Tables",
        ),
        md="results/tables/per_prompt.md",
    log:
        log_path("tables", "per_prompt"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_table.py"


localrules:
    per_prompt_table,
