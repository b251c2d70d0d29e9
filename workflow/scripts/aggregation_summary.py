"""Snakemake adapter: NLL wins and average NLL rank of every aggregation rule across pairs."""
from prompt_reliability.aggregation import write_aggregation_summary
from prompt_reliability.logs import log_to

with log_to(snakemake.log[0]):
    write_aggregation_summary(snakemake.input.table, snakemake.output.csv, snakemake.output.md)
