"""Snakemake adapter: reliability of the locked single prompts and the mean ensembles on one pair."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.reliability import write_reliability

with log_to(snakemake.log[0]):
    write_reliability(
        snakemake.input.matrix,
        snakemake.input.lock,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        family_of=snakemake.params.family_of,
        analysis=snakemake.params.analysis,
    )
