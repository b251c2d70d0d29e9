"""The config, checked once at parse time: the schema, then one cross-reference check.

1. :func:`validate_config` checks every key against ``workflow/schemas/config.schema.yaml`` (every
   mapping closed) and fills the defaults, which are written there and nowhere else: the rest of
   the package reads validated values. An error is one line: the key path, the problem, the fix
   (an unknown key gets the nearest valid one).
2. :func:`check_config` checks that keys agree with each other and with the prompt registry (the
   lock dataset exists, every model can score every dataset it must, prompt_format placeholders,
   model labels named by every template, resources, selective targets, ...).

``common.smk`` calls both, once, before any rule is defined; a bad config fails before any job runs.
"""

from __future__ import annotations

import copy
import difflib
import logging
import os
import re
import string
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from prompt_reliability.base.errors import ConfigError
from prompt_reliability.base.resources import check_resources
from prompt_reliability.base.selective_targets import check_selective_config

log = logging.getLogger(__name__)

# Name of the all-prompts view next to the per-family views in the analyses' tables.
ALL_PROMPTS = "all"


# --- 1. the schema -------------------------------------------------------------------------------


# the schema of this repository's workflow (the package is used from its checkout: src/ beside workflow/)
SCHEMA = Path(__file__).resolve().parents[3] / "workflow" / "schemas" / "config.schema.yaml"


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate_config(config: dict, schema: str | Path | Mapping) -> dict:
    """Check ``config`` against the schema and fill its defaults in place; :class:`ConfigError` on the first problem."""
    from jsonschema import Draft202012Validator, validators
    from jsonschema.exceptions import best_match

    schema = load_schema(schema) if isinstance(schema, (str, Path)) else schema
    validate_properties = Draft202012Validator.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, subschema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub:
                    instance.setdefault(key, copy.deepcopy(sub["default"]))
        yield from validate_properties(validator, properties, instance, subschema)

    validator = validators.extend(Draft202012Validator, {"properties": set_defaults})(schema)
    errors = list(validator.iter_errors(config))
    if errors:
        raise ConfigError(schema_error_message(best_match(errors)))
    return config


def key_path(parts: Sequence[Any]) -> str:
    """``['models', 'm', 'labels']`` -> ``models.m.labels``; list indices as ``[i]``."""
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def schema_error_message(error) -> str:
    """One line for a jsonschema ValidationError: the key path, the problem, the fix."""
    path = key_path(error.absolute_path)
    where = f"config key {path!r}" if path else "the config"
    kind, instance = error.validator, error.instance
    if kind == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in instance if k not in allowed]
        key = unknown[0] if unknown else "?"
        full = f"{path}.{key}" if path else str(key)
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        fix = f"did you mean {close[0]!r}?" if close else f"valid keys here: {', '.join(allowed)}"
        return f"config key {full!r} is not a known key; {fix}"
    if kind == "enum":
        return f"{where} is {_short(instance)}; use one of {error.validator_value}"
    if kind == "const":
        return f"{where} is {_short(instance)}; use {error.validator_value!r}"
    if kind == "type":
        return f"{where} is {_short(instance)}, which is not of type {error.validator_value}; fix its value"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        bound = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}[kind]
        return f"{where} is {_short(instance)}; it must be {bound} {error.validator_value}"
    if kind == "required":
        missing = [k for k in error.validator_value if not isinstance(instance, dict) or k not in instance]
        return f"{where} lacks the required key {missing[0]!r}; add it"
    if kind in ("minItems", "maxItems", "minProperties", "uniqueItems", "minLength"):
        return f"{where} is {_short(instance)}: {kind} {error.validator_value}; fix its value"
    if kind == "pattern" or kind == "propertyNames":
        return f"{where}: {_short(instance)} does not match the allowed pattern {error.validator_value!r}; rename it"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    return f"{where}: {message}"


# --- 2. the cross-reference check and the lists derived from config ------------------------------


def needed_datasets(config: Mapping[str, Any]) -> list[str]:
    """Datasets every model must score: the lock dataset, then evaluation datasets (no repeats)."""
    names = [config["lock"]["dataset"]] + [pair["dataset"] for pair in config["evaluate"]]
    return list(dict.fromkeys(names))


def evaluation_pairs(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(dataset, split) pairs to evaluate, in config order, without repeats."""
    return list(dict.fromkeys((pair["dataset"], pair["split"]) for pair in config["evaluate"]))


def models_with_backend(config: Mapping[str, Any], *backends: str) -> list[str]:
    return [name for name, cfg in config["models"].items() if cfg["backend"] in backends]


def scored_models(config: Mapping[str, Any]) -> list[str]:
    """Models scored on the prompts (the core analyses): all but served models without log-probabilities."""
    return [name for name, cfg in config["models"].items()
            if not (cfg["backend"] == "served" and cfg["logprobs"] == "none")]


def import_files(config: Mapping[str, Any], dataset: str) -> list[str]:
    """Score files of every import-backend model for ``dataset`` (they define a 'scores' dataset)."""
    return [cfg["scores"][dataset] for cfg in config["models"].values()
            if cfg["backend"] == "import" and dataset in (cfg.get("scores") or {})]


# keys that only a model of this backend may set (the schema lists every model key once)
HF_KEYS = ("path", "revision", "dtype", "device_map", "batch_size", "engine", "trust_remote_code", "labels", "chunk_size", "tiny")
SERVED_KEYS = ("url", "model", "api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_s", "extra_body", "logprobs",
               "top_logprobs", "label_token_ids")
# how a served model's requests reach the server; they never change an answer (untracked params)
SERVED_CONNECTION_KEYS = ("url", "api_key_env", "concurrency", "timeout_s", "max_retries", "backoff_s")
BACKEND_KEYS = {"hf": HF_KEYS, "simulate": ("simulate",), "import": ("scores",), "served": SERVED_KEYS}
PROMPT_FORMAT_FIELDS = {"with_query": ("template", "query"), "without_query": ("template",)}


def check_config(config: Mapping[str, Any], registry: Any = None) -> None:
    """Raise :class:`ConfigError` on the first cross-reference problem (the config is schema-validated).

    ``registry`` is the loaded prompt registry (``templates`` with ``prompt_id``/``text``, ``labels``);
    without it the checks against the templates are skipped.
    """

    if ALL_PROMPTS in config.get("prompts", []):
        raise ConfigError(f"config key 'prompts' lists a family named {ALL_PROMPTS!r}, which the analyses use for the "
                          "view over every prompt; rename that family (file and 'family:' field)")
    datasets = config["datasets"]
    lock = config["lock"]["dataset"]
    if lock not in datasets:
        raise ConfigError(f"config key 'lock.dataset' is {lock!r}, which is not under 'datasets' ({_nearest(lock, datasets)})")
    for index, pair in enumerate(config["evaluate"]):
        if pair["dataset"] not in datasets:
            raise ConfigError(f"config key 'evaluate[{index}].dataset' is {pair['dataset']!r}, which is not under 'datasets' "
                              f"({_nearest(pair['dataset'], datasets)})")
        if (pair["dataset"], pair["split"]) == (lock, config["lock"]["split"]) and not pair["allow_lock_split"]:
            raise ConfigError(f"config key 'evaluate[{index}]' evaluates on the lock split {lock}/{config['lock']['split']}, "
                              "where the prompt is selected and calibrated (every result would be optimistic); evaluate "
                              f"another split, or set 'evaluate[{index}].allow_lock_split: true'")
    _check_prompt_format(config.get("prompt_format") or {})
    needed = needed_datasets(config)
    for name, cfg in config["models"].items():
        backend = cfg["backend"]
        for other, keys in BACKEND_KEYS.items():
            stray = [k for k in keys if k in cfg] if other != backend else []
            if stray:
                raise ConfigError(f"config key 'models.{name}.{stray[0]}' applies to backend {other!r} only, but model "
                                  f"{name!r} has backend {backend!r}; remove the key (or change the backend)")
        if backend == "import":
            scores = cfg.get("scores") or {}
            missing = [d for d in needed if d not in scores]
            if missing:
                raise ConfigError(f"config key 'models.{name}.scores' has no score file for dataset(s) {missing}; "
                                  f"an import model needs one per dataset in 'lock' and 'evaluate'")
        elif backend == "hf":
            _check_hf_model(name, cfg, registry)
        elif backend == "served":
            check_served_model(name, cfg)
    if not scored_models(config):
        raise ConfigError("every model under 'models' is a served model with 'logprobs: none' (generation only): the core "
                          "analyses need at least one model scored on the prompts (simulate, import, hf, or served with "
                          "logprobs)")
    for name in needed:
        if datasets[name]["adapter"] == "scores" and not import_files(config, name):
            raise ConfigError(f"config key 'datasets.{name}.adapter' is 'scores', but no import model lists a score file for it")
        image_scorers = [m for m in scored_models(config) if config["models"][m]["backend"] in ("hf", "served")]
        if datasets[name]["adapter"] == "scores" and image_scorers:
            raise ConfigError(f"dataset {name!r} has adapter 'scores' (no images): models {image_scorers} (backend hf or "
                              "served) cannot score it; give them a dataset with images")
        if datasets[name]["adapter"] in ("local", "hub") and not datasets[name].get("path"):
            raise ConfigError(f"config key 'datasets.{name}.path' is missing: adapter {datasets[name]['adapter']!r} needs it")
        if datasets[name]["adapter"] != "synthetic" and isinstance(datasets[name].get("splits"), Mapping):
            raise ConfigError(f"config key 'datasets.{name}.splits' maps split names to sizes, which only adapter "
                              "'synthetic' reads; give a list of split names to keep")
    analysis = config.get("analysis") or {}
    bounds = analysis.get("temperature_bounds")
    if bounds is not None and not bounds[0] < bounds[1]:
        raise ConfigError(f"config key 'analysis.temperature_bounds' is {list(bounds)}; it needs [low, high] with low < high")
    check_resources(config["models"])
    if "selective" in analysis:
        check_selective_config(analysis["selective"])
    _check_distillation(config)


def _check_distillation(config: Mapping[str, Any]) -> None:
    """Each student names one checkpoint; teachers have a self-assessment run on the distilled dataset and setting."""
    distil, sa = config.get("distillation") or {}, config.get("self_assessment") or {}
    if not distil.get("students"):
        return
    for name, student in distil["students"].items():
        if bool(student.get("path")) == bool(student.get("tiny")):
            raise ConfigError(f"config key 'distillation.students.{name}' needs exactly one of 'path' (a Hub id or a "
                              "model folder) and 'tiny' (a tiny offline model)")
    check_resources({f"distillation.students.{n}": s for n, s in distil["students"].items()})
    assessed = [*sa.get("models", []), *(sa.get("simulate") or {}), *(sa.get("imported") or {})]
    if not distil["teachers"]:
        raise ConfigError("config key 'distillation.teachers' is empty; name the self-assessment models to distil from")
    for name in distil["teachers"]:
        if name not in assessed:
            raise ConfigError(f"config key 'distillation.teachers' lists {name!r}, which has no self-assessment run; "
                              f"add it to self_assessment ({_nearest(name, assessed) if assessed else 'none is configured'})")
    sa_datasets = sa.get("datasets") or []
    dataset = distil["dataset"]
    if dataset is not None and sa.get("datasets") is not None and dataset not in sa_datasets:
        raise ConfigError(f"config key 'distillation.dataset' is {dataset!r}, which self_assessment.datasets does not "
                          f"list ({_nearest(dataset, sa_datasets)})")
    for key, listed in (("setting", "settings"), ("variant", "variants")):
        if distil[key] not in sa.get(listed, []):
            raise ConfigError(f"config key 'distillation.{key}' is {distil[key]!r}, which self_assessment.{listed} "
                              f"does not list ({sa.get(listed)}); add it there")
    if sa.get("images", 0) < distil["images"]:
        raise ConfigError(f"config key 'distillation.images' is {distil['images']}, more than the teachers' runs ask "
                          f"about (self_assessment.images: {sa.get('images')}); raise self_assessment.images or lower "
                          "distillation.images")


def unknown_choice(key: str, value: str, choices) -> str:
    """The message for config key ``key`` holding ``value``, which is none of ``choices`` (nearest one suggested)."""
    return f"config key {key!r} is {value!r}, which is none of {list(choices)} ({_nearest(value, choices)})"


def _nearest(name: str, choices) -> str:
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else f"have {sorted(choices)}"


def _check_prompt_format(fmt: Mapping[str, str]) -> None:
    for key, allowed in PROMPT_FORMAT_FIELDS.items():
        if key not in fmt:
            continue
        try:
            fields = [field for _, field, _, _ in string.Formatter().parse(fmt[key]) if field is not None]
        except ValueError as err:
            raise ConfigError(f"config key 'prompt_format.{key}' is not a valid format string ({err}); write literal "
                              "braces as {{ and }}") from None
        unknown = [f for f in fields if f not in allowed]
        if unknown:
            raise ConfigError(f"config key 'prompt_format.{key}' has the placeholder {{{unknown[0]}}}; only "
                              f"{', '.join('{' + a + '}' for a in allowed)} are replaced (write a literal brace as {{{{)")
        if "template" not in fields:
            raise ConfigError(f"config key 'prompt_format.{key}' lacks {{template}}: every prompt would be the same text; "
                              "put {template} where the prompt template goes")


def _looks_local(path: str) -> bool:
    """A path meant as a local folder (not a Hub id 'org/name')."""
    p = Path(path).expanduser()
    return (path.startswith(("/", "./", "../", "~")) or path.count("/") > 1 or p.parent != Path(".") and p.parent.is_dir()
            or not re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", path))


def _check_hf_model(name: str, cfg: Mapping[str, Any], registry: Any) -> None:
    if cfg.get("tiny") and cfg.get("path"):
        raise ConfigError(f"config keys 'models.{name}.path' and 'models.{name}.tiny' are both set: a tiny model is "
                          "built by the workflow; drop one of them")
    path = cfg.get("path")
    if not path and not cfg.get("tiny"):
        raise ConfigError(f"config key 'models.{name}.path' is missing: backend 'hf' needs a Hub id or a local model "
                          f"folder (or 'tiny: {{arch: ...}}' for a tiny offline model)")
    if path and _looks_local(path) and not Path(path).expanduser().exists():
        raise ConfigError(f"config key 'models.{name}.path' is {path!r}: no such local folder (relative paths start at the "
                          "working directory), and it is not a Hub id of the form 'org/name'; fix the path")
    if registry is None or not cfg.get("labels"):
        return
    tokens = {role: cfg["labels"].get(role, getattr(registry.labels, role)) for role in ("unsafe", "safe")}
    if tokens["unsafe"] == tokens["safe"]:
        raise ConfigError(f"config key 'models.{name}.labels' reads {tokens['unsafe']!r} for both unsafe and safe; give "
                          "two different label strings")
    for role in ("unsafe", "safe"):
        token = cfg["labels"].get(role, getattr(registry.labels, role))
        for template in registry.templates:
            if not re.search(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", template.text):
                raise ConfigError(f"config key 'models.{name}.labels.{role}' is {token!r}, but template "
                                  f"{template.prompt_id!r} never asks for it; the model would read a label the prompt does "
                                  "not offer: use the tokens the templates name (prompts/labels.yaml) or edit the templates")


def missing_key_message(name: str, variable: str) -> str:
    return (f"config key 'models.{name}.api_key_env' names the environment variable {variable!r}, which is not set (or "
            f"empty); export {variable}=<your key> in the shell that runs snakemake (the key is never written to the "
            "config, logs or results), or set api_key_env: null for a server without authentication")


def check_served_model(name: str, cfg: Mapping[str, Any], *, environment: Mapping[str, str] | None = None) -> None:
    """What a served model needs before its first request: an http(s) base URL, a model name, the key variable set."""
    url = cfg.get("url")
    if not url:
        raise ConfigError(f"config key 'models.{name}.url' is missing: backend 'served' needs the server's base URL, "
                          "e.g. http://127.0.0.1:8000/v1")
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"config key 'models.{name}.url' is {url!r}; it needs an http:// or https:// base URL with a "
                          "host, e.g. http://127.0.0.1:8000/v1 (the workflow appends /chat/completions)")
    if parsed.path.rstrip("/").endswith("/chat/completions"):
        raise ConfigError(f"config key 'models.{name}.url' is {url!r}: give the base URL (usually ending in /v1) without "
                          "/chat/completions, which the workflow appends")
    if not cfg.get("model"):
        raise ConfigError(f"config key 'models.{name}.model' is missing: the model name the server knows (vLLM: the "
                          "name given to `vllm serve`; a commercial API: e.g. gpt-4o)")
    variable = cfg.get("api_key_env")
    env = os.environ if environment is None else environment
    if variable and not env.get(variable):
        raise ConfigError(missing_key_message(name, variable))
    if parsed.scheme == "http" and variable and parsed.hostname not in ("127.0.0.1", "localhost", "::1"):
        log.warning("models.%s.url is plain http to %s: the API key from %s would travel unencrypted", name,
                    parsed.hostname, variable)
    reserved = sorted({"model", "messages", "max_tokens", "logprobs", "top_logprobs"} & set(cfg.get("extra_body") or {}))
    if reserved:
        raise ConfigError(f"config key 'models.{name}.extra_body' sets {reserved}, which the workflow sets itself (model "
                          "from models.<name>.model, max_tokens from the step's settings, logprobs from "
                          "models.<name>.logprobs); remove them")
    if cfg.get("logprobs") == "logprob_token_ids" and not cfg.get("label_token_ids"):
        raise ConfigError(f"config key 'models.{name}.label_token_ids' is missing: logprobs 'logprob_token_ids' asks the "
                          "server for the label tokens by id; give {unsafe: <id>, safe: <id>} from the served model's "
                          "tokenizer")
    if cfg.get("label_token_ids") and cfg.get("logprobs") != "logprob_token_ids":
        raise ConfigError(f"config key 'models.{name}.label_token_ids' is read only with logprobs 'logprob_token_ids' "
                          f"(models.{name}.logprobs is {cfg.get('logprobs')!r}); remove it or change logprobs")


# --- a config file checked on its own (Snakemake's own message for a YAML error names no file) ----


def load_config_file(path: str | Path) -> dict:
    """The YAML config at ``path``; a syntax error names the file, line and column and the fix."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config file ({err.strerror})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{path}{where}: not valid YAML ({problem}); fix the syntax there (closing quotes and "
                          "brackets, indentation with spaces, 'key: value' with a space after the colon)") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file is a YAML mapping of keys (datasets:, models:, ...), not "
                          f"{type(loaded).__name__}")
    return loaded


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m prompt_reliability.base.config my.yaml``: the config file's syntax and every key against
    the schema, with the file, line or key and the fix (what the workflow checks before any job)."""
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m prompt_reliability.base.config CONFIG.yaml", file=sys.stderr)
        return 2
    try:
        validate_config(load_config_file(args[0]), SCHEMA)
    except ConfigError as err:
        print(f"Invalid configuration: {err}", file=sys.stderr)
        return 1
    print(f"{args[0]}: valid (syntax and keys; cross-checks against prompts and data run with the workflow)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
