"""The one adapter script: rules that need their own process or environment (scoring, model building)
call the package function named in ``params.function`` with their named fields as keyword arguments."""
from prompt_reliability.base.jobs import call_from_script

call_from_script(snakemake)  # noqa: F821 (provided by Snakemake)
