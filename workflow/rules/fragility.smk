# Prompt fragility: cross-prompt spread deciles against mistake and disagreement rates (issue 4).

FINAL_TARGETS.extend(
    [
        "results/tables/fragility.csv",
        "results/tables/fragility.md",
        "results/tables/fragility_summary.csv",
        "results/tables/fragility_summary.md",
        "results/figures/fragility/gaps.png",
        *per_pair("results/figures/fragility/{model}/{dataset}/{split}.png"),
    ]
)


rule fragility:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
    output:
        table="results/analysis/{model}/{dataset}/{split}/fragility.parquet",
    log:
        log_path("fragility", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("fragility", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        family_of=FAMILY_OF,
        analysis=analysis_params("deciles", "threshold"),
    script:
        "../scripts/fragility.py"


rule fragility_table:
    input:
        pieces=per_pair("results/analysis/{model}/{dataset}/{split}/fragility.parquet"),
    output:
        csv=report(
            "results/tables/fragility.csv",
            caption="../report/fragility.rst",
            category="Tables",
        ),
        md="results/tables/fragility.md",
    log:
        log_path("tables", "fragility"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_table.py"


rule fragility_summary:
    input:
        table="results/tables/fragility.csv",
    output:
        csv=report(
            "results/tables/fragility_summary.csv",
            caption="../report/fragility_summary.rst",
            category="Tables",
        ),
        md="results/tables/fragility_summary.md",
    log:
        log_path("tables", "fragility_summary"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/fragility_summary.py"


rule fragility_figure:
    input:
        table="results/analysis/{model}/{dataset}/{split}/fragility.parquet",
    output:
        figure=report(
            "results/figures/fragility/{model}/{dataset}/{split}.png",
            caption="../report/fragility_figure.rst",
            category="Fragility",
            subcategory="{model}",
        ),
    log:
        log_path("figures", "fragility", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("figures", "fragility", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    script:
        "../scripts/fragility_figure.py"


rule fragility_gaps_figure:
    input:
        table="results/tables/fragility.csv",
    output:
        figure=report(
            "results/figures/fragility/gaps.png",
            caption="../report/fragility_gaps.rst",
            category="Fragility",
            subcategory="All pairs",
        ),
    log:
        log_path("figures", "fragility_gaps"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/fragility_gaps_figure.py"


localrules:
    fragility_table,
    fragility_summary,
    fragility_gaps_figure,
