"""Snakemake adapter: reliability diagram of the selected prompt and the mean on one pair."""
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s4_report.figures.reliability import write_reliability_diagram

with log_to(snakemake.log[0]):
    write_reliability_diagram(
        snakemake.input.matrix,
        snakemake.input.lock,
        snakemake.output.figure,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        analysis=snakemake.params.analysis,
    )
