"""Snakemake adapter: selective-prediction table across pairs and its per-target win counts."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.selective import write_selective_tables

with log_to(snakemake.log[0]):
    write_selective_tables(snakemake.input.pieces, snakemake.output.csv, snakemake.output.md, snakemake.output.summary)
