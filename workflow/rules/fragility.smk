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
        **pair_logs("fragility"),
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
        figure=figure_output(
            "fragility/{model}/{dataset}/{split}.png", "fragility_figure.rst"
        ),
    log:
        **pair_logs("figures", "fragility"),
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
        figure=figure_output("fragility/gaps.png", "fragility_gaps.rst"),
    log:
        **job_logs("figures", "fragility_gaps"),
    localrule: True
    params:
        code=code_of(fragility_figures.write_gaps_figure),
    run:
        call(fragility_figures.write_gaps_figure, input, output, params, wildcards, log)
