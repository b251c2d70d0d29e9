"""Config checks the JSON schema cannot express, and the lists the workflow derives from config.

The schema (``workflow/schemas/config.schema.yaml``) checks each key's shape and fills defaults;
this module checks that the keys agree with each other (the lock dataset exists, every model can
score every dataset it must, ...) so that a bad config fails before any job runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Name of the all-prompts view next to the per-family views in the analyses' tables.
ALL_PROMPTS = "all"


class ConfigError(ValueError):
    """The config is inconsistent; the message names the key and the fix."""


def needed_datasets(config: Mapping[str, Any]) -> list[str]:
    """Datasets every model must score: the lock dataset, then evaluation datasets (no repeats)."""
    names = [config["lock"]["dataset"]] + [pair["dataset"] for pair in config["evaluate"]]
    return list(dict.fromkeys(names))


def evaluation_pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(dataset, split) pairs to evaluate, in config order, without repeats."""
    return list(dict.fromkeys((pair["dataset"], pair.get("split", "test")) for pair in config["evaluate"]))


def models_with_backend(config: Mapping[str, Any], *backends: str) -> list[str]:
    return [name for name, cfg in config["models"].items() if cfg["backend"] in backends]


def import_files(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Score files of every import-backend model for ``dataset`` (they define a 'scores' dataset)."""
    return [cfg["scores"][dataset] for cfg in config["models"].values()
            if cfg["backend"] == "import" and dataset in (cfg.get("scores") or {})]


def check_config(config: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` on the first cross-reference problem."""
    if ALL_PROMPTS in config.get("prompts", []):
        raise ConfigError(f"config key 'prompts' lists a family named {ALL_PROMPTS!r}, which the analyses use for the "
                          "view over every prompt; rename that family (file and 'family:' field)")
    datasets = config["datasets"]
    lock = config["lock"]["dataset"]
    if lock not in datasets:
        raise ConfigError(f"config key 'lock.dataset' is {lock!r}, which is not under 'datasets' (have {sorted(datasets)})")
    for index, pair in enumerate(config["evaluate"]):
        if pair["dataset"] not in datasets:
            raise ConfigError(f"config key 'evaluate[{index}].dataset' is {pair['dataset']!r}, which is not under 'datasets' (have {sorted(datasets)})")
    needed = needed_datasets(config)
    for name, cfg in config["models"].items():
        backend = cfg["backend"]
        if backend == "import":
            scores = cfg.get("scores") or {}
            missing = [d for d in needed if d not in scores]
            if missing:
                raise ConfigError(f"config key 'models.{name}.scores' has no score file for dataset(s) {missing}; "
                                  f"an import model needs one per dataset in 'lock' and 'evaluate'")
        elif backend == "hf" and cfg.get("tiny") and cfg.get("path"):
            raise ConfigError(f"config keys 'models.{name}.path' and 'models.{name}.tiny' are both set: a tiny model is "
                              "built by the workflow; drop one of them")
        elif backend == "hf" and not cfg.get("tiny") and not cfg.get("path"):
            raise ConfigError(f"config key 'models.{name}.path' is missing: backend 'hf' needs a Hub id or a local model "
                              f"folder (or 'tiny: {{arch: ...}}' for a tiny offline model)")
    for name in needed:
        if datasets[name]["adapter"] == "scores" and not import_files(config, name):
            raise ConfigError(f"config key 'datasets.{name}.adapter' is 'scores', but no import model lists a score file for it")
        if datasets[name]["adapter"] == "scores" and models_with_backend(config, "hf"):
            raise ConfigError(f"dataset {name!r} has adapter 'scores' (no images): models with backend 'hf' "
                              f"{models_with_backend(config, 'hf')} cannot score it; give them a dataset with images")
        if datasets[name]["adapter"] in ("local", "hub") and not datasets[name].get("path"):
            raise ConfigError(f"config key 'datasets.{name}.path' is missing: adapter {datasets[name]['adapter']!r} needs it")
