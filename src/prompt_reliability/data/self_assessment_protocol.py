"""The UnSAF self-assessment protocol: its vocabulary (shared by the inference, the simulator and the
scoring), its prompts file, and the config's cross-check of the ``self_assessment`` block.

Settings: multiple-choice (``mc``: question + options A-D) or open-ended (``open``) questions; kinds:
questions the model calls answerable or unanswerable about its image.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from prompt_reliability.base.config import models_with_backend
from prompt_reliability.base.errors import ConfigError

SETTINGS = ("mc", "open")
KINDS = ("answerable", "unanswerable")
OPTION_LETTERS = ("A", "B", "C", "D")


class SelfAssessmentError(ValueError):
    """Bad prompts file or inputs; the message names the file or key."""


def load_templates(path: str | Path) -> dict[str, Any]:
    """The prompts file, checked for every setting, kind and the ``default`` variant."""
    data = yaml.safe_load(Path(path).read_text())
    try:
        for setting in SETTINGS:
            for kind in KINDS:
                if "{k}" not in data["generation"][setting][kind]:
                    raise SelfAssessmentError(f"{path}: generation.{setting}.{kind} has no {{k}} placeholder")
            if "{question}" not in data["answering"][setting] or "{instruction}" not in data["answering"][setting]:
                raise SelfAssessmentError(f"{path}: answering.{setting} needs {{question}} and {{instruction}}")
        if "default" not in data["variants"]:
            raise SelfAssessmentError(f"{path}: variants needs a 'default' entry")
    except (KeyError, TypeError) as err:
        raise SelfAssessmentError(f"{path}: missing key {err}; see the header of prompts/self_assessment/unsaf.yaml") from err
    return data


def check_self_assessment_config(config: Mapping[str, Any], prompts: str | Path,
                                 pair_datasets: Sequence[str]) -> None:
    """Cross-check the validated ``self_assessment`` block (the schema checked each key) before any job runs.

    ``prompts`` is the prompts file the run uses; ``pair_datasets`` the evaluation pairs' datasets
    (the default of ``self_assessment.datasets``).
    """
    block = config["self_assessment"]
    generating, simulated = block["models"], list(block["simulate"])
    for name in simulated:
        if name in config["models"] or name in generating:
            raise ConfigError(f"config key 'self_assessment.simulate.{name}' names a simulated self-assessor that is "
                              "also under 'models'; give it a name of its own")
    for name in generating:
        if config["models"].get(name, {}).get("backend") not in ("hf", "served"):
            raise ConfigError(f"config key 'self_assessment.models' lists {name!r}, which is not a model with backend "
                              f"'hf' or 'served' (have: {models_with_backend(config, 'hf', 'served')})")
    datasets = block["datasets"] if block["datasets"] is not None else pair_datasets
    for name in datasets:
        if name not in config["datasets"]:
            raise ConfigError(f"config key 'self_assessment.datasets' lists {name!r}, which is not under 'datasets' "
                              f"(have {sorted(config['datasets'])})")
    if generating or simulated:
        try:
            variants = load_templates(prompts)["variants"]
        except (SelfAssessmentError, OSError) as err:
            raise ConfigError(f"self_assessment.prompts: {err}") from None
        unknown = [v for v in block["variants"] if v not in variants]
        if unknown:
            raise ConfigError(f"config key 'self_assessment.variants' lists {unknown}; {prompts} defines {list(variants)}")
