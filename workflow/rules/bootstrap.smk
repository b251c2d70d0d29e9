# Bootstrap CIs of the mean-vs-selected NLL / ECE deltas under prevalence reweighting (issue 6).

FINAL_TARGETS.extend(
    [
        "results/tables/bootstrap.csv",
        "results/tables/bootstrap.md",
        "results/tables/bootstrap_summary.csv",
    ]
)


rule bootstrap:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
        lock="results/lock/{model}.json",
    output:
        table="results/analysis/{model}/{dataset}/{split}/bootstrap.parquet",
    log:
        log_path("bootstrap", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("bootstrap", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        analysis=analysis_params("ece_bins", "eps", "bootstrap"),
    script:
        "../scripts/bootstrap.py"


rule bootstrap_table:
    input:
        pieces=per_pair("results/analysis/{model}/{dataset}/{split}/bootstrap.parquet"),
    output:
        csv=report(
            "results/tables/bootstrap.csv",
            caption="../report/bootstrap.rst",
            category="Tables",
        ),
        md="results/tables/bootstrap.md",
        summary=report(
            "results/tables/bootstrap_summary.csv",
            caption="../report/bootstrap_summary.rst",
            category="Tables",
        ),
    log:
        log_path("tables", "bootstrap"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/bootstrap_table.py"


localrules:
    bootstrap_table,
