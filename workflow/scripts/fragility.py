"""Snakemake adapter: cross-prompt spread deciles of one evaluation pair."""
from prompt_reliability.s3_analysis.fragility import write_fragility
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]):
    write_fragility(
        snakemake.input.matrix,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        family_of=snakemake.params.family_of,
        analysis=snakemake.params.analysis,
    )
