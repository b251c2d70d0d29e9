# Can each model's scores be trusted at all: label mass and the AUROC of the mean with its bootstrap
# CI, per evaluation pair (table trust: registered in report/registry.py).
from prompt_reliability.analysis import trust


rule trust:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
        caches=expand(
            "results/scores/{{model}}/{{dataset}}/{family}.parquet", family=FAMILIES
        ),
    output:
        table=per_pair_piece("trust"),
    log:
        **pair_logs("trust"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(trust.write_trust),
        analysis=analysis_params("bootstrap", "trust"),
    run:
        call(trust.write_trust, input, output, params, wildcards, log)
