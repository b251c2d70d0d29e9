"""Snakemake adapter: NLL wins and average NLL rank of every aggregation rule across pairs."""
from prompt_reliability.s3_analysis.aggregation import write_aggregation_summary
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]):
    write_aggregation_summary(snakemake.input.table, snakemake.output.csv, snakemake.output.md)
