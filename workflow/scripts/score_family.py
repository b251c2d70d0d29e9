"""Snakemake adapter: score one (model, dataset, prompt family) into the score cache."""
from prompt_reliability.s0_base.gpus import claim_gpus
from prompt_reliability.s0_base.logs import log_to
from prompt_reliability.s2_scoring.cache import score_to_cache

with log_to(snakemake.log[0]) as log:
    # Before any backend loads CUDA: on a workstation, GPUs of this job's own (the `gpu`
    # resource); under SLURM the allocation already set them and this does nothing.
    claim_gpus(snakemake.resources.get("gpu", 0))
    cache = score_to_cache(
        model=snakemake.wildcards.model,
        model_cfg=snakemake.params.model_config,
        dataset=snakemake.wildcards.dataset,
        family=snakemake.wildcards.family,
        manifest_path=snakemake.input.manifest,
        prompt_dir=snakemake.params.prompt_dir,
        families=snakemake.params.families,
        prompt_format=snakemake.params.prompt_format,
        output=snakemake.output.scores,
        work_dir="results/scores/.chunks",
    )
    log.info("wrote %s: %d rows", snakemake.output.scores, len(cache))
