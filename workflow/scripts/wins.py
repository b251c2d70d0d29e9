"""Snakemake adapter: win counts of the mean ensembles across evaluation pairs."""
from prompt_reliability.logs import log_to
from prompt_reliability.reliability import write_wins

with log_to(snakemake.log[0]):
    write_wins(snakemake.input.reliability, snakemake.input.ranking, snakemake.output.csv, snakemake.output.md)
