"""Snakemake adapter: apply the lock's calibrators (no refit) to one evaluation pair."""
from prompt_reliability.s3_analysis.calibration import write_calibration
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]):
    write_calibration(
        snakemake.input.matrix,
        snakemake.input.lock,
        snakemake.output.table,
        model=snakemake.wildcards.model,
        dataset=snakemake.wildcards.dataset,
        split=snakemake.wildcards.split,
        analysis=snakemake.params.analysis,
    )
