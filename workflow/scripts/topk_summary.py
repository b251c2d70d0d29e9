"""Snakemake adapter: top-k sweep averaged across pairs."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.topk import write_topk_summary

with log_to(snakemake.log[0]):
    write_topk_summary(snakemake.input.table, snakemake.output.csv, snakemake.output.md)
