# Reliability of the train-locked single prompts against the mean ensemble (issue 4).

FINAL_TARGETS.extend(
    [
        "results/tables/reliability.csv",
        "results/tables/reliability.md",
        "results/tables/ranking_distribution.csv",
        "results/tables/ranking_distribution.md",
        "results/tables/ece_variants.csv",
        "results/tables/ece_variants.md",
        "results/tables/ece_variants_summary.csv",
        "results/tables/ece_variants_summary.md",
        "results/tables/wins.csv",
        "results/tables/wins.md",
        "results/figures/reliability/deltas.png",
        *per_pair("results/figures/reliability/{model}/{dataset}/{split}.png"),
    ]
)


rule reliability:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
        lock="results/lock/{model}.json",
    output:
        table="results/analysis/{model}/{dataset}/{split}/reliability.parquet",
    log:
        log_path("reliability", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("reliability", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        family_of=FAMILY_OF,
        analysis=analysis_params("ece_bins", "eps", "threshold"),
    script:
        "../scripts/reliability.py"


rule ranking_distribution:
    input:
        per_prompt="results/analysis/{model}/{dataset}/{split}/per_prompt.parquet",
        reliability="results/analysis/{model}/{dataset}/{split}/reliability.parquet",
        lock="results/lock/{model}.json",
    output:
        table="results/analysis/{model}/{dataset}/{split}/ranking_distribution.parquet",
    log:
        log_path("ranking_distribution", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("ranking_distribution", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    script:
        "../scripts/ranking_distribution.py"


rule ece_variants:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
        lock="results/lock/{model}.json",
    output:
        table="results/analysis/{model}/{dataset}/{split}/ece_variants.parquet",
    log:
        log_path("ece_variants", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("ece_variants", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        analysis=analysis_params("ece_variants"),
    script:
        "../scripts/ece_variants.py"


rule reliability_diagram:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
        lock="results/lock/{model}.json",
    output:
        figure=report(
            "results/figures/reliability/{model}/{dataset}/{split}.png",
            caption="../report/reliability_diagram.rst",
            category="Reliability",
            subcategory="{model}",
        ),
    log:
        log_path("figures", "reliability", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("figures", "reliability", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        analysis=analysis_params("ece_bins"),
    script:
        "../scripts/reliability_diagram.py"


rule reliability_table:
    input:
        pieces=per_pair(
            "results/analysis/{model}/{dataset}/{split}/reliability.parquet"
        ),
    output:
        csv=report(
            "results/tables/reliability.csv",
            caption="../report/reliability.rst",
            category="Tables",
        ),
        md="results/tables/reliability.md",
    log:
        log_path("tables", "reliability"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_table.py"


rule ranking_distribution_table:
    input:
        pieces=per_pair(
            "results/analysis/{model}/{dataset}/{split}/ranking_distribution.parquet"
        ),
    output:
        csv=report(
            "results/tables/ranking_distribution.csv",
            caption="../report/ranking_distribution.rst",
            category="Tables",
        ),
        md="results/tables/ranking_distribution.md",
    log:
        log_path("tables", "ranking_distribution"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_table.py"


rule ece_variants_table:
    input:
        pieces=per_pair(
            "results/analysis/{model}/{dataset}/{split}/ece_variants.parquet"
        ),
    output:
        csv=report(
            "results/tables/ece_variants.csv",
            caption="../report/ece_variants.rst",
            category="Tables",
        ),
        md="results/tables/ece_variants.md",
    log:
        log_path("tables", "ece_variants"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_table.py"


rule ece_variants_summary:
    input:
        table="results/tables/ece_variants.csv",
    output:
        csv=report(
            "results/tables/ece_variants_summary.csv",
            caption="../report/ece_variants_summary.rst",
            category="Tables",
        ),
        md="results/tables/ece_variants_summary.md",
    log:
        log_path("tables", "ece_variants_summary"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/ece_variants_summary.py"


rule wins:
    input:
        reliability="results/tables/reliability.csv",
        ranking="results/tables/ranking_distribution.csv",
    output:
        csv=report(
            "results/tables/wins.csv", caption="../report/wins.rst", category="Tables"
        ),
        md="results/tables/wins.md",
    log:
        log_path("tables", "wins"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/wins.py"


rule reliability_deltas_figure:
    input:
        table="results/tables/reliability.csv",
    output:
        figure=report(
            "results/figures/reliability/deltas.png",
            caption="../report/reliability_deltas.rst",
            category="Reliability",
            subcategory="All pairs",
        ),
    log:
        log_path("figures", "reliability_deltas"),
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/reliability_deltas_figure.py"


localrules:
    reliability_table,
    ranking_distribution_table,
    ece_variants_table,
    ece_variants_summary,
    wins,
    reliability_deltas_figure,
