"""Snakemake adapter: win counts of the mean ensembles across evaluation pairs."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s3_analysis.reliability import write_wins

with log_to(snakemake.log[0]):
    write_wins(snakemake.input.reliability, snakemake.input.ranking, snakemake.output.csv, snakemake.output.md)
