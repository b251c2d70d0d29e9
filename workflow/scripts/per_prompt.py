"""Snakemake adapter: per-prompt reliability metrics of one evaluation pair."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.per_prompt import write_per_prompt

with log_to(snakemake.log[0]):
    write_per_prompt(
        snakemake.input.matrix,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        family_of=snakemake.params.family_of,
        analysis=snakemake.params.analysis,
    )
