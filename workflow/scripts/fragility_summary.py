"""Snakemake adapter: D10 vs D1 counts across pairs from the fragility table."""
from prompt_reliability.fragility import write_fragility_summary
from prompt_reliability.logs import log_to

with log_to(snakemake.log[0]):
    write_fragility_summary(snakemake.input.table, snakemake.output.csv, snakemake.output.md)
