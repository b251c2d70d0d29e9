"""The one adapter script: GPU steps (model steps of models whose resources ask for GPUs) run here,
in a process and conda environment of their own. It calls the package function named in
``params.function`` with the rule's other named fields as keyword arguments (base.jobs.call_from_script)."""
from prompt_reliability.base.jobs import call_from_script

call_from_script(snakemake)  # noqa: F821 (provided by Snakemake)
