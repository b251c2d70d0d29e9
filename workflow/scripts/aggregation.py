"""Snakemake adapter: the 15 training-free aggregation rules on one evaluation pair."""
from prompt_reliability.s3_analysis.aggregation import write_aggregation
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]):
    write_aggregation(
        snakemake.input.matrix,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        prompt_ids=snakemake.params.prompt_ids,
        analysis=snakemake.params.analysis,
    )
