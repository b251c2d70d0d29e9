# Bootstrap CIs of the mean-vs-selected NLL / ECE deltas under prevalence reweighting
# (tables bootstrap, bootstrap_summary: tables.smk).
from prompt_reliability.analysis import bootstrap


rule bootstrap:
    input:
        matrix=per_pair_piece("matrix"),
        lock="results/lock/{model}.json",
        manifest="results/data/{dataset}.parquet",
    output:
        table=per_pair_piece("bootstrap"),
    log:
        **pair_logs("bootstrap"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(bootstrap.write_bootstrap),
        analysis=analysis_params("ece_bins", "eps", "bootstrap"),
    run:
        call(bootstrap.write_bootstrap, input, output, params, wildcards, log)
