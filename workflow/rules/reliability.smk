# Reliability of the train-locked single prompts against the mean ensemble (tables reliability,
# ranking_distribution, ece_variants, ece_variants_summary, wins: tables.smk).
from prompt_reliability.analysis import reliability
from prompt_reliability.report.figures import reliability as reliability_figures


rule reliability:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
    output:
        table=per_pair_piece("reliability"),
    log:
        **pair_logs("reliability"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(reliability.write_reliability),
        family_of=FAMILY_OF,
        analysis=analysis_params("ece_bins", "eps", "threshold"),
    run:
        call(reliability.write_reliability, input, output, params, wildcards, log)


rule ranking_distribution:
    input:
        per_prompt=per_pair_piece("per_prompt"),
        reliability=per_pair_piece("reliability"),
        lock="results/lock/{model}.json",
    output:
        table=per_pair_piece("ranking_distribution"),
    log:
        **pair_logs("ranking_distribution"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(reliability.write_ranking_distribution),
    run:
        call(
            reliability.write_ranking_distribution,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule ece_variants:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
    output:
        table=per_pair_piece("ece_variants"),
    log:
        **pair_logs("ece_variants"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(reliability.write_ece_variants),
        analysis=analysis_params("ece_variants"),
    run:
        call(reliability.write_ece_variants, input, output, params, wildcards, log)


rule reliability_diagram:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
    output:
        figure=figure_output(
            "reliability/{model}/{dataset}/{split}.png", "reliability_diagram.rst"
        ),
    log:
        **pair_logs("figures", "reliability"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(reliability_figures.write_reliability_diagram),
        analysis=analysis_params("ece_bins", "seed"),
    run:
        call(
            reliability_figures.write_reliability_diagram,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule reliability_deltas_figure:
    input:
        table=table_paths("reliability")[0],
    output:
        figure=figure_output("reliability/deltas.png", "reliability_deltas.rst"),
    log:
        **job_logs("figures", "reliability_deltas"),
    localrule: True
    params:
        code=code_of(reliability_figures.write_deltas_figure),
    run:
        call(
            reliability_figures.write_deltas_figure,
            input,
            output,
            params,
            wildcards,
            log,
        )
