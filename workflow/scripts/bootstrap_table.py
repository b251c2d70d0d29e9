"""Snakemake adapter: bootstrap table across pairs and its win/loss summary."""
from prompt_reliability.bootstrap import write_bootstrap_tables
from prompt_reliability.logs import log_to

with log_to(snakemake.log[0]):
    write_bootstrap_tables(snakemake.input.pieces, snakemake.output.csv, snakemake.output.md, snakemake.output.summary)
