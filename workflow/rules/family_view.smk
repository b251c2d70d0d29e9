# The within-family view (paper Table 7): each family's mean against its family-local selected
# prompt, and against the global selected prompt (tables family_view, family_wins: tables.smk).
from prompt_reliability.analysis import family_view


rule family_view:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
    output:
        table=per_pair_piece("family_view"),
    log:
        **pair_logs("family_view"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(family_view.write_family_view),
        family_of=FAMILY_OF,
        analysis=analysis_params("ece_bins", "eps", "threshold"),
    run:
        call(family_view.write_family_view, input, output, params, wildcards, log)
