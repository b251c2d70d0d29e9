# Prompt fragility: cross-prompt spread deciles against mistake and disagreement rates
# (tables fragility, fragility_summary: tables.smk).
from prompt_reliability.analysis import fragility
from prompt_reliability.report.figures import fragility as fragility_figures


rule fragility:
    input:
        matrix=per_pair_piece("matrix"),
    output:
        table=per_pair_piece("fragility"),
    log:
        **job_logs("fragility", "{model}", "{dataset}", "{split}"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(fragility.write_fragility),
        family_of=FAMILY_OF,
        analysis=analysis_params("deciles", "threshold"),
    run:
        call(fragility.write_fragility, input, output, params, wildcards, log)


rule fragility_figure:
    input:
        table=per_pair_piece("fragility"),
    output:
        figure=report(
            "results/figures/fragility/{model}/{dataset}/{split}.png",
            caption="../report/fragility_figure.rst",
            category="Fragility",
            subcategory="{model}",
            labels={"model": "{model}", "dataset": "{dataset}", "split": "{split}"},
        ),
    log:
        **job_logs("figures", "fragility", "{model}", "{dataset}", "{split}"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(fragility_figures.write_decile_figure),
    run:
        call(
            fragility_figures.write_decile_figure,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule fragility_gaps_figure:
    input:
        table=table_paths("fragility")[0],
    output:
        figure=report(
            "results/figures/fragility/gaps.png",
            caption="../report/fragility_gaps.rst",
            category="Fragility",
            subcategory="All pairs",
        ),
    log:
        **job_logs("figures", "fragility_gaps"),
    localrule: True
    params:
        code=code_of(fragility_figures.write_gaps_figure),
    run:
        call(fragility_figures.write_gaps_figure, input, output, params, wildcards, log)
