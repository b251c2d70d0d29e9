"""Snakemake adapter: AUROC/AUPRC of the locked prompts and the mean against all single prompts."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.reliability import write_ranking_distribution

with log_to(snakemake.log[0]):
    write_ranking_distribution(
        snakemake.input.per_prompt,
        snakemake.input.reliability,
        snakemake.input.lock,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
    )
