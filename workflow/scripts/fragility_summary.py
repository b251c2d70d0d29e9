"""Snakemake adapter: D10 vs D1 counts across pairs from the fragility table."""
from prompt_reliability.s3_analysis.fragility import write_fragility_summary
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]):
    write_fragility_summary(snakemake.input.table, snakemake.output.csv, snakemake.output.md)
