# Cross-pair tables: each per-pair piece is assembled into results/tables/<name>.parquet (read by the
# pipeline) with CSV and Markdown renderings for people; summaries are computed from the Parquet.
from prompt_reliability.base.tables import assemble_table
from prompt_reliability.analysis import (
    aggregation,
    bootstrap,
    calibration,
    family_view,
    fragility,
    reliability,
    selective,
    topk,
)

# Per-pair analyses whose pieces become one table each.
ASSEMBLED_TABLES = [
    "per_prompt",
    "fragility",
    "reliability",
    "ranking_distribution",
    "ece_variants",
    "aggregation",
    "topk",
    "calibration",
    "bootstrap",
    "selective",
    "operating_points",
    "family_view",
]

# Summary tables across pairs: name -> (assembled table read, package function).
SUMMARY_TABLES = {
    "fragility_summary": ("fragility", fragility.write_fragility_summary),
    "ece_variants_summary": ("ece_variants", reliability.write_ece_variants_summary),
    "aggregation_summary": ("aggregation", aggregation.write_aggregation_summary),
    "topk_summary": ("topk", topk.write_topk_summary),
    "calibration_summary": ("calibration", calibration.write_calibration_summary),
    "bootstrap_summary": ("bootstrap", bootstrap.write_bootstrap_summary),
    "selective_summary": ("selective", selective.write_selective_summary),
    "family_wins": ("family_view", family_view.write_family_wins),
}

for name in [*ASSEMBLED_TABLES, *SUMMARY_TABLES, "wins"]:
    FINAL_TARGETS.extend(table_paths(name))


for name in ASSEMBLED_TABLES:

    rule:
        name:
            f"{name}_table"
        input:
            pieces=per_pair(per_pair_piece(name)),
        output:
            **table_outputs(name),
        log:
            log_path("tables", name),
        benchmark:
            benchmark_path("tables", name)
        localrule: True
        params:
            title=name,
        run:
            call(assemble_table, input, output, params, wildcards, log)


for name, (source, function) in SUMMARY_TABLES.items():

    rule:
        name:
            name
        input:
            table=table_paths(source)[0],
        output:
            **{
                "summary" if k == "table" else k: v
                for k, v in table_outputs(name).items()
            },
        log:
            log_path("tables", name),
        benchmark:
            benchmark_path("tables", name)
        localrule: True
        run:
            call(SUMMARY_TABLES[rule][1], input, output, None, wildcards, log)


rule wins:
    input:
        reliability=table_paths("reliability")[0],
        ranking=table_paths("ranking_distribution")[0],
    output:
        wins=table_paths("wins")[0],
        csv=report(
            table_paths("wins")[1],
            caption="../report/wins.rst",
            category=TABLE_CATEGORY["wins"],
            subcategory="Tables",
            labels={"table": "wins"},
        ),
        md=table_paths("wins")[2],
    log:
        log_path("tables", "wins"),
    benchmark:
        benchmark_path("tables", "wins")
    localrule: True
    run:
        call(reliability.write_wins, input, output, None, wildcards, log)
