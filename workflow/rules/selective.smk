# Selective prediction: risk-coverage of the mean score under three abstention signals (issue 6).
# (targets, ranges and grid are checked with the config, in common.smk)
FINAL_TARGETS.extend(
    [
        "results/tables/selective.csv",
        "results/tables/selective.md",
        "results/tables/selective_summary.csv",
        *per_pair(
            "results/figures/selective/{model}/{dataset}/{split}/risk_coverage.png"
        ),
    ]
)


rule selective:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
        lock="results/lock/{model}.json",
    output:
        curves="results/analysis/{model}/{dataset}/{split}/selective_curves.parquet",
        table="results/analysis/{model}/{dataset}/{split}/selective.parquet",
    log:
        log_path("selective", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("selective", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        analysis=analysis_params("ece_bins", "eps", "threshold", "selective"),
    script:
        "../scripts/selective.py"


rule selective_figure:
    input:
        curves="results/analysis/{model}/{dataset}/{split}/selective_curves.parquet",
    output:
        figure=report(
            "results/figures/selective/{model}/{dataset}/{split}/risk_coverage.png",
            caption="../report/selective_figure.rst",
            category="Selective prediction",
            subcategory="{model}",
            labels={"dataset": "{dataset}", "split": "{split}"},
        ),
    log:
        log_path("selective_figure", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("selective_figure", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        analysis=analysis_params("selective"),
    script:
        "../scripts/selective_figure.py"


rule selective_table:
    input:
        pieces=per_pair("results/analysis/{model}/{dataset}/{split}/selective.parquet"),
    output:
        csv=report(
            "results/tables/selective.csv",
            caption="../report/selective.rst",
            category="Tables",
        ),
        md="results/tables/selective.md",
        summary=report(
            "results/tables/selective_summary.csv",
            caption="../report/selective_summary.rst",
            category="Tables",
        ),
    log:
        log_path("tables", "selective"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/selective_table.py"


localrules:
    selective_table,
