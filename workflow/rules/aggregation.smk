# The 15 training-free aggregation rules and the top-k sweep (Table 2, Figure 4;
# tables aggregation, aggregation_summary, topk, topk_summary: tables.smk).
from prompt_reliability.analysis import aggregation, topk
from prompt_reliability.report.figures import topk as topk_figures


rule aggregation:
    input:
        matrix=per_pair_piece("matrix"),
    output:
        table=per_pair_piece("aggregation"),
    log:
        **pair_logs("aggregation"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(aggregation.write_aggregation),
        prompt_ids=PROMPT_IDS,
        analysis=analysis_params("ece_bins", "eps"),
    run:
        call(aggregation.write_aggregation, input, output, params, wildcards, log)


rule topk:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
    output:
        table=per_pair_piece("topk"),
    log:
        **pair_logs("topk"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(topk.write_topk),
        analysis=analysis_params("ece_bins", "eps"),
    run:
        call(topk.write_topk, input, output, params, wildcards, log)


rule topk_figure:
    input:
        table=per_pair_piece("topk"),
    output:
        figure=figure_output("topk/{model}/{dataset}/{split}.png", "topk_figure.rst"),
    log:
        **pair_logs("figures", "topk"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(topk_figures.write_topk_pair_figure),
    run:
        call(topk_figures.write_topk_pair_figure, input, output, params, wildcards, log)


rule topk_figure_pairs:
    input:
        table=table_paths("topk")[0],
    output:
        figure=figure_output("topk/all_pairs.png", "topk_figure_pairs.rst"),
    log:
        **job_logs("figures", "topk", "all_pairs"),
    localrule: True
    params:
        code=code_of(topk_figures.write_topk_pairs_figure),
    run:
        call(
            topk_figures.write_topk_pairs_figure,
            input,
            output,
            params,
            wildcards,
            log,
        )
