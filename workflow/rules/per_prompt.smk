# Reliability of every single prompt on every evaluation pair (table: tables.smk).
from prompt_reliability.analysis import per_prompt


rule per_prompt:
    input:
        matrix=per_pair_piece("matrix"),
    output:
        table=per_pair_piece("per_prompt"),
    log:
        **pair_logs("per_prompt"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(per_prompt.write_per_prompt),
        family_of=FAMILY_OF,
        analysis=analysis_params("ece_bins", "eps", "threshold"),
    run:
        call(per_prompt.write_per_prompt, input, output, params, wildcards, log)
