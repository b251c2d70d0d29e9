# Selective prediction: risk-coverage of the mean score under three abstention signals
# (tables selective, selective_summary: tables.smk).
from prompt_reliability.analysis import selective
from prompt_reliability.report.figures import selective as selective_figures

# (targets, ranges and grid are checked with the config, in common.smk)


rule selective:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
    output:
        curves=per_pair_piece("selective_curves"),
        table=per_pair_piece("selective"),
    log:
        **pair_logs("selective"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(selective.write_selective),
        analysis=analysis_params("ece_bins", "eps", "threshold", "selective"),
    run:
        call(selective.write_selective, input, output, params, wildcards, log)


rule selective_figure:
    input:
        curves=per_pair_piece("selective_curves"),
    output:
        figure=figure_output(
            "selective/{model}/{dataset}/{split}/risk_coverage.png",
            "selective_figure.rst",
        ),
    log:
        **pair_logs("selective_figure"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(selective_figures.write_risk_coverage_figure),
        aurc_ranges=config["analysis"]["selective"]["aurc_ranges"],
    run:
        call(
            selective_figures.write_risk_coverage_figure,
            input,
            output,
            params,
            wildcards,
            log,
        )
