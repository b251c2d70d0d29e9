# Labeled calibrators (fit by the lock rule on the lock split) applied without refitting (Table 3).

FINAL_TARGETS.extend(
    [
        "results/tables/calibration.csv",
        "results/tables/calibration.md",
        "results/tables/calibration_summary.csv",
        "results/tables/calibration_summary.md",
    ]
)


rule calibration:
    input:
        matrix="results/matrix/{model}/{dataset}.parquet",
        lock="results/lock/{model}.json",
    output:
        table="results/analysis/{model}/{dataset}/{split}/calibration.parquet",
    log:
        log_path("calibration", "{model}", "{dataset}", "{split}"),
    benchmark:
        benchmark_path("calibration", "{model}", "{dataset}", "{split}")
    conda:
        "../../envs/analysis.yaml"
    resources:
        **analysis_resources(),
    params:
        analysis=analysis_params("ece_bins", "eps"),
    script:
        "../scripts/calibration.py"


rule calibration_table:
    input:
        pieces=per_pair(
            "results/analysis/{model}/{dataset}/{split}/calibration.parquet"
        ),
    output:
        csv=report(
            "results/tables/calibration.csv",
            caption="../report/calibration.rst",
            category="Tables",
        ),
        md="results/tables/calibration.md",
    log:
        log_path("tables", "calibration"),
    benchmark:
        benchmark_path("tables", "calibration")
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/assemble_table.py"


rule calibration_summary:
    input:
        table="results/tables/calibration.csv",
    output:
        csv=report(
            "results/tables/calibration_summary.csv",
            caption="../report/calibration_summary.rst",
            category="Tables",
        ),
        md="results/tables/calibration_summary.md",
    log:
        log_path("tables", "calibration_summary"),
    benchmark:
        benchmark_path("tables", "calibration_summary")
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/calibration_summary.py"


localrules:
    calibration_table,
    calibration_summary,
