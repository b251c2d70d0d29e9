# The 15 training-free aggregation rules and the top-k sweep (Table 2, Figure 4).

FINAL_TARGETS.extend(
    [
        "results/tables/aggregation.csv",
        "results/tables/aggregation.md",
        "results/tables/aggregation_summary.csv",
        "results/tables/aggregation_summary.md",
        "results/tables/topk.csv",
        "results/tables/topk.md",
        "results/tables/topk_summary.csv",
        "results/tables/topk_summary.md",
        "results/figures/topk/all_pairs.png",
        *per_pair("results/figures/topk/{model}/{dataset}/{split}.png"),
    ]
)


rule aggregation:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
    output:
        table="results/analysis/{model}/{dataset}/{split}/aggregation.parquet",
    log:
        log_path("aggregation", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("aggregation", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        prompt_ids=PROMPT_IDS,
        analysis=analysis_params("ece_bins", "eps"),
    script:
        "../scripts/aggregation.py"


rule aggregation_table:
    input:
        pieces=per_pair(
            "results/analysis/{model}/{dataset}/{split}/aggregation.parquet"
        ),
    output:
        csv=report(
            "results/tables/aggregation.csv",
            caption="../report/aggregation.rst",
            category="Tables",
        ),
        md="results/tables/aggregation.md",
    log:
        log_path("tables", "aggregation"),
    benchmark:
        benchmark_path("tables", "aggregation")
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_table.py"


rule aggregation_summary:
    input:
        table="results/tables/aggregation.csv",
    output:
        csv=report(
            "results/tables/aggregation_summary.csv",
            caption="../report/aggregation_summary.rst",
            category="Tables",
        ),
        md="results/tables/aggregation_summary.md",
    log:
        log_path("tables", "aggregation_summary"),
    benchmark:
        benchmark_path("tables", "aggregation_summary")
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/aggregation_summary.py"


rule topk:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
        lock="results/lock/{model}.json",
    output:
        table="results/analysis/{model}/{dataset}/{split}/topk.parquet",
    log:
        log_path("topk", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("topk", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        analysis=analysis_params("ece_bins", "eps"),
    script:
        "../scripts/topk.py"


rule topk_table:
    input:
        pieces=per_pair("results/analysis/{model}/{dataset}/{split}/topk.parquet"),
    output:
        csv=report(
            "results/tables/topk.csv",
            caption="../report/topk.rst",
            category="Tables",
        ),
        md="results/tables/topk.md",
    log:
        log_path("tables", "topk"),
    benchmark:
        benchmark_path("tables", "topk")
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_table.py"


rule topk_summary:
    input:
        table="results/tables/topk.csv",
    output:
        csv=report(
            "results/tables/topk_summary.csv",
            caption="../report/topk_summary.rst",
            category="Tables",
        ),
        md="results/tables/topk_summary.md",
    log:
        log_path("tables", "topk_summary"),
    benchmark:
        benchmark_path("tables", "topk_summary")
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/topk_summary.py"


rule topk_figure:
    input:
        table="results/analysis/{model}/{dataset}/{split}/topk.parquet",
    output:
        figure=report(
            "results/figures/topk/{model}/{dataset}/{split}.png",
            caption="../report/topk_figure.rst",
            category="Figures",
            subcategory="Top-k sweep",
            labels={"model": "{model}", "pair": "{dataset} / {split}"},
        ),
    log:
        log_path("figures", "topk", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("figures", "topk", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    script:
        "../scripts/topk_figure.py"


rule topk_figure_pairs:
    input:
        table="results/tables/topk.csv",
    output:
        figure=report(
            "results/figures/topk/all_pairs.png",
            caption="../report/topk_figure_pairs.rst",
            category="Figures",
            subcategory="Top-k sweep",
            labels={"model": "all", "pair": "all pairs and mean"},
        ),
    log:
        log_path("figures", "topk", "all_pairs"),
    benchmark:
        benchmark_path("figures", "topk", "all_pairs")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    script:
        "../scripts/topk_figure_pairs.py"


localrules:
    aggregation_table,
    aggregation_summary,
    topk_table,
    topk_summary,
