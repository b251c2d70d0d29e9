"""Snakemake adapter: top-k mean ensemble sweep (lock prompt order) on one evaluation pair."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.topk import write_topk

with log_to(snakemake.log[0]):
    write_topk(
        snakemake.input.matrix,
        snakemake.input.lock,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        analysis=snakemake.params.analysis,
    )
