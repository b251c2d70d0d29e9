"""Snakemake adapter: lock the single-prompt choices (and calibrators) of one model."""
from prompt_reliability.s3_analysis.lock import write_lock
from prompt_reliability.s0_base.logs import log_to

with log_to(snakemake.log[0]) as log:
    lock = write_lock(
        snakemake.input.matrix,
        snakemake.output.lock,
        model=snakemake.wildcards.model,
        dataset=snakemake.params.dataset,
        split=snakemake.params.split,
        prompt_ids=snakemake.params.prompt_ids,
        analysis=snakemake.params.analysis,
    )
    log.info("selected %s, random %s", lock["selected_prompt"], lock["random_prompt"])
