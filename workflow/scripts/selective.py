"""Snakemake adapter: risk-coverage curves and AURC / point targets of one evaluation pair."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.selective import write_selective

with log_to(snakemake.log[0]):
    write_selective(
        snakemake.input.matrix,
        snakemake.input.lock,
        snakemake.output.curves,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        analysis=snakemake.params.analysis,
    )
