"""Snakemake adapter: bootstrap the mean-vs-selected NLL / ECE deltas of one evaluation pair."""
from prompt_reliability.s3_analysis.bootstrap import write_bootstrap
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]) as log:
    table = write_bootstrap(
        snakemake.input.matrix,
        snakemake.input.lock,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        analysis=snakemake.params.analysis,
    )
    log.info("bootstrap deltas (selected - mean):\n%s", table.drop("model", "dataset", "split"))
