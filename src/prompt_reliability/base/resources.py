"""Job resources of scoring rules, from each model's config entry (``models.<name>.resources``).

Resource names are the ones ``snakemake-executor-plugin-slurm`` turns into ``sbatch`` flags, so one
config runs unchanged on a workstation and on SLURM:

============== ================================= =========================================
config key     Snakemake resource                sbatch (SLURM executor)
============== ================================= =========================================
gpus           ``gpu``                           ``--gpus=N`` (``--gpus=<model>:N``)
gpu_model      ``gpu_model``                     with ``gpus``: ``--gpus=<model>:N``
gres           ``gres`` (replaces ``gpu``)       ``--gres=<gres>``
mem_mb         ``mem_mb``                        ``--mem``
runtime        ``runtime`` (minutes)             ``-t``
cpus_per_task  ``cpus_per_task``                 ``--cpus-per-task``
constraint     ``constraint``                    ``-C``
slurm_partition ``slurm_partition``              ``-p``
slurm_extra    ``slurm_extra``                   appended verbatim
============== ================================= =========================================

Locally, ``gpu`` is what ``--resources gpu=N`` limits (the workstation profile): at most N GPUs'
worth of scoring jobs run at once.

A rule's resource that evaluates to ``None`` is unset for that job, and Snakemake then does *not*
fall back to the profile's ``default-resources`` for it. So an optional key enters the scoring
rules only when some model sets it, and :func:`check_resources` refuses configs where some models
set a key the profile may also default (partition, constraint, extra flags) and others do not.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from prompt_reliability.base.errors import ConfigError

#: Optional keys, passed through under the same name when set.
OPTIONAL_KEYS = ("gpu_model", "gres", "constraint", "slurm_partition", "slurm_extra")

#: Optional keys a SLURM profile commonly sets in ``default-resources``: all models or none.
PROFILE_DEFAULTED = ("constraint", "slurm_partition", "slurm_extra")

# sbatch options the executor plugin sets itself (it rejects them in slurm_extra at submission);
# named here with the config key to use instead, so the error appears before any job is queued.
_MANAGED_OPTIONS = {
    r"--gres\b|--gpus\b|--gpus-per-\w+|-G\b": "resources.gpus / gpu_model / gres",
    r"--mem\b|--mem-per-cpu\b": "resources.mem_mb",
    r"--time\b|-t\b": "resources.runtime",
    r"--cpus-per-task\b|-c\b|--cpus-per-gpu\b": "resources.cpus_per_task",
    r"--partition\b|-p\b": "resources.slurm_partition",
    r"--constraint\b|-C\b": "resources.constraint",
    r"--account\b|-A\b": "the profile's default-resources slurm_account",
    r"--job-name\b|-J\b|--output\b|-o\b|--error\b|-e\b|--ntasks\b|-n\b|--nodes\b|-N\b": "nothing (the executor sets it)",
}


def _model_resources(model_cfg: Mapping[str, Any]) -> Mapping[str, Any]:
    """The model's validated ``resources`` (the schema fills gpus, mem_mb, runtime, cpus_per_task)."""
    return model_cfg["resources"]


def scoring_resources(model_cfg: Mapping[str, Any]) -> dict[str, int | str]:
    """Snakemake resources of one model's scoring jobs (unset optional keys are left out)."""
    res = _model_resources(model_cfg)
    out: dict[str, int | str] = {
        "mem_mb": int(res["mem_mb"]),
        "runtime": int(res["runtime"]),
        "cpus_per_task": int(res["cpus_per_task"]),
    }
    if res.get("gres"):
        out["gres"] = str(res["gres"])
    else:
        out["gpu"] = int(res["gpus"])
    for key in ("gpu_model", "constraint", "slurm_partition", "slurm_extra"):
        if res.get(key) not in (None, ""):
            out[key] = res[key]
    return out


def optional_keys_in_use(models: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Optional resource keys that at least one model sets, in a fixed order."""
    used = {k for cfg in models.values() for k, v in (cfg.get("resources") or {}).items() if v not in (None, "")}
    return [k for k in OPTIONAL_KEYS if k in used]


def check_resources(models: Mapping[str, Mapping[str, Any]]) -> None:
    """Raise :class:`ConfigError` for resource settings SLURM or Snakemake would get wrong.

    Part of :func:`prompt_reliability.base.config.check_config` (the one cross-reference check)."""
    for name, cfg in models.items():
        res = _model_resources(cfg)
        where = f"models.{name}.resources"
        if res.get("gpu_model") and not res["gpus"]:
            raise ConfigError(f"config key '{where}.gpu_model' is {res['gpu_model']!r} but '{where}.gpus' is 0; "
                              f"set gpus to the number of GPUs the model needs")
        if res.get("gres") and (res["gpus"] or res.get("gpu_model")):
            raise ConfigError(f"config keys '{where}.gres' and '{where}.gpus'/'gpu_model' are both set; "
                              f"use gpus (+ gpu_model), or gres alone for clusters that need --gres")
        extra = res.get("slurm_extra") or ""
        for pattern, instead in _MANAGED_OPTIONS.items():
            match = re.search(rf"(?:^|\s)({pattern})(?:[=\s]|$)", extra)
            if match:
                raise ConfigError(f"config key '{where}.slurm_extra' contains {match.group(1)!r}, which the SLURM "
                                  f"executor sets itself; use {instead} instead")
    for key in PROFILE_DEFAULTED:
        having = [name for name, cfg in models.items() if (cfg.get("resources") or {}).get(key) not in (None, "")]
        lacking = [name for name in models if name not in having]
        if having and lacking:
            raise ConfigError(
                f"config key 'resources.{key}' is set for model(s) {having} but not for {lacking}; set it for every "
                f"model or for none (jobs of a model without it would not get the profile's default {key})"
            )
