"""Snakemake adapter: bootstrap table across pairs and its win/loss summary."""
from prompt_reliability.s3_analysis.bootstrap import write_bootstrap_tables
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]):
    write_bootstrap_tables(snakemake.input.pieces, snakemake.output.csv, snakemake.output.md, snakemake.output.summary)
