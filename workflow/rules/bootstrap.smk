# Bootstrap CIs of the mean-vs-selected NLL / ECE deltas under prevalence reweighting (tables
# bootstrap, bootstrap_summary: tables.smk) and the trust table's rows (label mass, AUROC of the
# mean with its CI): one job per evaluation split draws the resamples once for every model
# (analysis/split_bootstrap.py). Not in a pair group: it reads every model's matrix and lock.
from prompt_reliability.analysis import split_bootstrap


rule bootstrap:
    input:
        matrices=expand("results/matrix/{model}/{{dataset}}.parquet", model=MODELS),
        locks=expand("results/lock/{model}.json", model=MODELS),
        manifest="results/data/{dataset}.parquet",
        caches=expand(
            "results/scores/{model}/{{dataset}}/{family}.parquet",
            model=MODELS,
            family=FAMILIES,
        ),
    output:
        tables_out=expand(
            "results/analysis/{model}/{{dataset}}/{{split}}/bootstrap.parquet",
            model=MODELS,
        ),
        trusts=expand(
            "results/analysis/{model}/{{dataset}}/{{split}}/trust.parquet",
            model=MODELS,
        ),
    log:
        **job_logs("bootstrap", "{dataset}", "{split}"),
    # the longest analysis job (all models of a split): started first, it is not the run's tail
    priority: 10
    resources:
        **analysis_resources(),
    params:
        code=code_of(split_bootstrap.write_split_bootstrap),
        analysis=analysis_params("ece_bins", "eps", "bootstrap", "trust"),
        models=MODELS,
    run:
        call(
            split_bootstrap.write_split_bootstrap,
            input,
            output,
            params,
            wildcards,
            log,
        )
