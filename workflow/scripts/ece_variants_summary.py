"""Snakemake adapter: pairs where the mean improves ECE under each binning variant."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.reliability import write_ece_variants_summary

with log_to(snakemake.log[0]):
    write_ece_variants_summary(snakemake.input.table, snakemake.output.csv, snakemake.output.md)
