"""Preflight of the ``hf`` models of a run: everything that can fail at load time, checked without weights.

Run on the login node (Hub reachable) before any scoring job: for each model it reads the config
(``config.json`` as data, no remote code executed), checks that transformers has an
image-text-to-text class for the architecture and that the configured engine is verified on it,
loads the processor and tokenizer, checks the chat template, and resolves the two label tokens
after the generation prompt of every template of the run (they must be the same single tokens for
all, since scoring resolves them once per model), and that the steering layers of the safety
calibration (``safety_calibration.steering.layers``) exist in the model. No weights are read.

Each problem is one line naming the model and the fix; all problems of all models are reported
together (:class:`PreflightError`). A clean preflight writes a JSON report (per model: architecture,
classes, label ids) that scoring jobs depend on.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prompt_reliability.base import io
from prompt_reliability.data.prompts import load_registry, render_instruction
from prompt_reliability.scoring.cache import ScoreCacheError
from prompt_reliability.scoring.hf_engines import EngineError, adds_special_tokens, render_chat
from prompt_reliability.scoring.label_tokens import LabelTokenError, resolve_label_ids
from prompt_reliability.scoring.tiny_models import ARCHITECTURES

log = logging.getLogger(__name__)

# Architectures (transformers model_type) on which the shared-prefix engine is verified against the
# reference engine, offline, by a tiny random-weight model (tests/test_hf_engines.py). The tiny
# architectures are named by their model_type.
VERIFIED_MODEL_TYPES = frozenset(ARCHITECTURES)
# A query for rendering templates that take one; label tokens depend on the end of the prompt only.
_PROBE_QUERY = "What is shown in this picture?"


class PreflightError(RuntimeError):
    """One or more models would fail at load time or at label resolution; one line per problem."""

    def __init__(self, problems: Sequence[str]):
        self.problems = list(problems)
        super().__init__(f"preflight found {len(self.problems)} problem(s) before any scoring job:\n"
                         + "\n".join(f"  - {p}" for p in self.problems))


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) <= 300 else text[:297] + "..."


def _image_text_to_text_types() -> frozenset[str]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

    return frozenset(MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES)


def check_architecture(model: str, config_dict: Mapping[str, Any], settings: Mapping[str, Any]) -> str | None:
    """None if ``AutoModelForImageTextToText`` loads this config and the engine is verified on it; else the problem."""
    import transformers

    model_type = config_dict.get("model_type")
    auto_map = config_dict.get("auto_map") or {}
    native = model_type in _image_text_to_text_types()
    if not native:
        registered = "AutoModelForImageTextToText" in auto_map
        if registered and not settings["trust_remote_code"]:
            return (f"model {model!r}: architecture {model_type!r} is remote code (auto_map); fix: set "
                    f"models.{model}.trust_remote_code: true if you trust {settings['path']!r}, or use a native checkpoint")
        if not registered:
            where = f"its auto_map registers only {sorted(auto_map)}" if auto_map else "it has no auto_map"
            return (f"model {model!r}: architecture {model_type!r} has no image-text-to-text class in transformers "
                    f"{transformers.__version__} and {where}, so AutoModelForImageTextToText cannot load it; fix: use a "
                    "checkpoint of a supported architecture (README, 'Which models work'), or score it elsewhere and "
                    "use backend 'import'")
    if settings["engine"] == "shared_prefix" and model_type not in VERIFIED_MODEL_TYPES:
        return (f"model {model!r}: the shared_prefix engine is not verified on architecture {model_type!r} (verified: "
                f"{', '.join(sorted(VERIFIED_MODEL_TYPES))}); fix: set models.{model}.engine: reference, or add a tiny "
                f"{model_type!r} model to prompt_reliability.scoring.tiny_models and its engine-agreement test")
    return None


def decoder_depth(config: Any) -> int | None:
    """Number of decoder layers of the language model of a transformers config (None if it does not say)."""
    for part in (getattr(config, "text_config", None), getattr(config, "language_config", None), config):
        depth = getattr(part, "num_hidden_layers", None) if part is not None else None
        if isinstance(depth, int):
            return depth
    return None


def check_steering_layers(model: str, depth: int | None, layers: Sequence[int]) -> str | None:
    """None when every steering layer is a decoder layer of the model (1..depth); else the problem."""
    outside = [layer for layer in layers if depth is not None and not 1 <= int(layer) <= depth]
    if not outside:
        return None
    return (f"model {model!r}: steering layers {outside} are outside 1..{depth} (the model has {depth} decoder layers); "
            f"fix config key 'safety_calibration.steering.layers' (layers 1..{depth})")


def check_model(model: str, cfg: Mapping[str, Any], registry, prompt_format: Mapping[str, str],
                steering_layers: Sequence[int] = ()) -> tuple[list[str], dict]:
    """(problems, facts) of one hf model: config, architecture, processor, chat template, label tokens,
    steering layers."""
    from transformers import AutoConfig, AutoProcessor, PretrainedConfig

    from prompt_reliability.scoring.backends.hf import hf_settings

    try:
        settings = hf_settings(model, cfg)
    except ScoreCacheError as err:
        return [_one_line(err)], {}
    path, revision, remote = settings["path"], settings["revision"], bool(settings["trust_remote_code"])
    facts: dict[str, Any] = {"path": str(path), "revision": revision, "engine": settings["engine"]}
    fetch = ("the local folder" if Path(path).exists() else
             "a Hub id (no such local folder): run the preflight where the Hub is reachable, or fix the path")
    try:
        config_dict, _ = PretrainedConfig.get_config_dict(path, revision=revision)
    except (OSError, ValueError) as err:
        return [f"model {model!r}: cannot read config.json of {path!r} ({fetch}): {_one_line(err)}; fix: models.{model}.path "
                "must be a model folder or a Hub id you can access (gated models: accept the license, `hf auth login`)"], facts
    facts["model_type"] = config_dict.get("model_type")
    problem = check_architecture(model, config_dict, settings)
    if problem:
        return [problem], facts
    try:
        config = AutoConfig.from_pretrained(path, revision=revision, trust_remote_code=remote)
        facts["architectures"] = list(getattr(config, "architectures", None) or [])
    except (OSError, ValueError, TypeError) as err:
        return [f"model {model!r}: transformers cannot build the config of {path!r}: {_one_line(err)}; fix: use the "
                "transformers version in envs/inference.yaml, or a checkpoint made for it"], facts
    facts["decoder_layers"] = decoder_depth(config)
    problem = check_steering_layers(model, facts["decoder_layers"], steering_layers)
    if problem:
        return [problem], facts
    try:
        processor = AutoProcessor.from_pretrained(path, revision=revision, trust_remote_code=remote)
    except (OSError, ValueError, TypeError, ImportError) as err:
        return [f"model {model!r}: cannot load the processor of {path!r}: {_one_line(err)}; fix: the model folder needs "
                "its processor and tokenizer files (and torchvision installed for video-capable processors)"], facts
    facts["processor"] = type(processor).__name__
    if not hasattr(processor, "tokenizer"):
        return [f"model {model!r}: the processor of {path!r} ({type(processor).__name__}) has no tokenizer; fix: use a "
                "vision-language checkpoint whose AutoProcessor combines an image processor and a tokenizer"], facts
    if not getattr(processor, "chat_template", None):
        return [f"model {model!r}: {path!r} has no chat template; fix: score the chat (instruct) checkpoint, or put a "
                "chat_template.jinja in the model folder"], facts

    labels = settings.get("labels") or {}
    unsafe, safe = labels.get("unsafe", registry.labels.unsafe), labels.get("safe", registry.labels.safe)
    resolved: dict[tuple[int, int], list[str]] = {}
    problems: list[str] = []
    for template in registry.templates:
        for query in (_PROBE_QUERY, ""):
            instruction = render_instruction(template.text, query, prompt_format["with_query"], prompt_format["without_query"])
            try:
                prompt = render_chat(processor, instruction)
                add_special = adds_special_tokens(processor, prompt)
                ids = resolve_label_ids(processor.tokenizer, prompt, unsafe, safe, model=model, add_special_tokens=add_special)
            except (LabelTokenError, EngineError, ValueError) as err:
                problems.append(f"{_one_line(err)} (template {template.prompt_id})")
                break
            resolved.setdefault((ids.unsafe, ids.safe), []).append(template.prompt_id)
        if problems:
            break  # the same label problem would repeat for every template
    if not problems and len(resolved) > 1:
        problems.append(f"model {model!r}: the labels {unsafe!r}/{safe!r} become different tokens after different "
                        f"templates ({ {str(k): sorted(set(v)) for k, v in resolved.items()} }); scoring resolves them once "
                        "per model; fix: choose labels that tokenize the same after every template (models.<name>.labels)")
    if not problems:
        (unsafe_id, safe_id), = resolved
        facts["labels"] = {"strings": [unsafe, safe], "ids": [unsafe_id, safe_id],
                           "tokens": processor.tokenizer.convert_ids_to_tokens([unsafe_id, safe_id])}
    return problems, facts


def run_preflight(models: Mapping[str, Mapping[str, Any]], prompt_dir: str | Path, families: Sequence[str],
                  prompt_format: Mapping[str, str], steering_layers: Mapping[str, Sequence[int]] | None = None) -> dict[str, dict]:
    """Check every hf model of ``models`` (name -> config, ``path`` resolved); facts per model, or PreflightError.

    ``steering_layers``: per model, the layers the safety calibration steers (checked against its depth)."""
    registry = load_registry(prompt_dir, list(families))
    problems: list[str] = []
    facts: dict[str, dict] = {}
    for model, cfg in models.items():
        if cfg.get("backend", "hf") != "hf":
            continue
        found, facts[model] = check_model(model, cfg, registry, prompt_format, (steering_layers or {}).get(model, ()))
        for problem in found:
            log.error("%s", problem)
        if not found:
            log.info("model %s: %s, %s, engine %s, labels %s -> ids %s", model, facts[model]["model_type"],
                     facts[model]["processor"], facts[model]["engine"], facts[model]["labels"]["strings"],
                     facts[model]["labels"]["ids"])
        problems += found
    if problems:
        raise PreflightError(problems)
    return facts


def write_preflight(models: Mapping[str, Mapping[str, Any]], prompt_dir: str, families: Sequence[str],
                    prompt_format: Mapping[str, str], report: str, prompts: Mapping[str, str] | None = None,
                    steering_layers: Mapping[str, Sequence[int]] | None = None, **inputs: Any) -> dict[str, dict]:
    """Snakemake entry point (rule ``preflight``): the report, written only when every model passes.

    ``prompts`` (the families' text hashes) only re-runs it when a template changes; ``inputs``
    (tiny model folders) only order the jobs.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        facts = run_preflight(models, prompt_dir, families, prompt_format, steering_layers)
    finally:
        hf_logging.set_verbosity(verbosity)
    io.write_json({"models": facts}, report)
    log.info("preflight passed for %d hf model(s): %s", len(facts), ", ".join(facts) or "none")
    return facts
