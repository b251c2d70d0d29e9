"""Snakemake adapter: ECE of the selected prompt and the mean under each binning variant, one pair."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.reliability import write_ece_variants

with log_to(snakemake.log[0]):
    write_ece_variants(
        snakemake.input.matrix,
        snakemake.input.lock,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        analysis=snakemake.params.analysis,
    )
