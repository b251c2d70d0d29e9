# Helpers shared by all rule modules (config checks, prompt registry, target lists).
import json
import os
import re

from snakemake.exceptions import IncompleteCheckpointException, WorkflowError
from threadpoolctl import threadpool_limits

from prompt_reliability.base.config import (
    ConfigError,
    check_config,
    evaluation_pairs,
    import_files,
    models_with_backend,
    needed_datasets,
    SERVED_CONNECTION_KEYS,
    scored_models,
    validate_config,
)
from prompt_reliability.base.jobs import (
    call,
    untracked_settings,
    use_workers,
)
from prompt_reliability.report import report_md
from prompt_reliability.report.registry import (
    ANALYSES,
    PER_PAIR,
    figure_owner,
    produced,
)
from prompt_reliability.data.datasets import mark_changed_images
from prompt_reliability.data.prompts import PromptRegistryError, load_registry
from prompt_reliability.data.self_assessment_protocol import (
    SETTINGS as SA_ALL_SETTINGS,
    check_self_assessment_config,
)
from prompt_reliability.analysis.safety_calibration import check_safety_config
from prompt_reliability.analysis.judges import PHRASE
from prompt_reliability.scoring.variants import variant_names
from prompt_reliability.base import resources as job_resources
from prompt_reliability.base.runtime import Keyed, Untracked, code_hash

# The config is checked here, once, before any step is defined: the schema (every key, every default)
# and the cross-reference checks (keys against each other and against the prompt files).
try:
    validate_config(
        config, os.path.join(WORKFLOW_DIR, "workflow/schemas/config.schema.yaml")
    )
    PROMPT_DIR = config["prompt_dir"] or os.path.join(WORKFLOW_DIR, "prompts")
    REGISTRY = load_registry(PROMPT_DIR, config["prompts"])
    check_config(config, REGISTRY)
    # the methods' blocks, each checked by its own package module
    SA_PROMPTS = config["self_assessment"]["prompts"] or os.path.join(
        WORKFLOW_DIR, "prompts", "self_assessment", "unsaf.yaml"
    )
    check_self_assessment_config(
        config, SA_PROMPTS, [d for d, _ in evaluation_pairs(config)]
    )
    CALIBRATION_PROMPT_DIR = os.path.join(WORKFLOW_DIR, "prompts", "calibration")
    check_safety_config(config, REGISTRY.families, CALIBRATION_PROMPT_DIR)
except (ConfigError, PromptRegistryError) as err:
    raise WorkflowError(f"Invalid configuration: {err}") from None

FAMILIES = REGISTRY.families
PROMPT_IDS = REGISTRY.prompt_ids
FAMILY_OF = REGISTRY.family_of()
DATASETS = needed_datasets(config)
PAIRS = evaluation_pairs(config)
MODELS = scored_models(config)  # served models without logprobs only generate
# hf models the workflow builds itself (results/models/<name>), from their 'tiny' key
TINY_MODELS = [
    m for m in models_with_backend(config, "hf") if config["models"][m].get("tiny")
]

# Two ways to run a job (docs/architecture.md, "How rules call the library"):
# - CPU steps (`run:` + call): threads of this Snakemake process (force-use-threads) that hand their
#   function to one of --cores worker processes (base/workers.py), started as needed and replaced
#   when they grow (config `workers`). Their parallelism is Snakemake's --cores, so each BLAS call
#   keeps to one thread instead of every job spreading over every core.
# - GPU steps (`script: GPU_ADAPTER` + `conda: INFERENCE_ENV`): a process and environment of their
#   own, which claims its GPUs before CUDA loads. Each model step has one rule of each kind, told
#   apart by the models they match, both unpacking one ModelStep (below).
threadpool_limits(1)
GPU_ADAPTER = "../scripts/call.py"  # relative to workflow/rules/
INFERENCE_ENV = "../../envs/inference.yaml"


def use_threads_in_cluster_jobs(workflow):
    """Run this Snakemake's run: jobs as threads (what --force-use-threads does), from its start.

    Snakemake attaches the execution settings (which hold the flag) after it parsed the workflow
    and reads them when it creates its executor, inside ``workflow.execute``: set the flag there.
    """
    execute = workflow.execute

    def execute_with_threads(*args, **kwargs):
        workflow.execution_settings.use_threads = True
        return execute(*args, **kwargs)

    workflow.execute = execute_with_threads


# A cluster job's Snakemake (exec mode remote; one per SLURM job, e.g. a pair's ~18 analyses) reads
# no profile, so without this it would spawn every run: job as a Snakemake of its own (~2.6 s of
# CPU each); with threads its jobs go to worker processes as they do locally.
if workflow.remote_exec:
    use_threads_in_cluster_jobs(workflow)
if workflow.is_main_process or workflow.remote_exec:
    try:
        use_workers(workflow.cores, **config["workers"])
    except WorkflowError:  # no --cores (dry run, lint): no job runs
        pass

# hf models whose resources ask for GPUs: their model steps are GPU steps (rules *_gpu).
HF_GPU_MODELS = [
    m
    for m in models_with_backend(config, "hf")
    if job_resources.scoring_resources(config["models"][m]).get("gpu", 0) > 0
    or job_resources.scoring_resources(config["models"][m]).get("gres")
]
HF_CPU_MODELS = [m for m in models_with_backend(config, "hf") if m not in HF_GPU_MODELS]


class ModelStep:
    """One model step's content, written once and unpacked by its two rules.

    The CPU twin runs ``call(step.function, ...)`` in a worker (``run``); the ``*_gpu`` twin runs
    ``GPU_ADAPTER`` as a script in ``INFERENCE_ENV``, with ``step.gpu_params`` (the params and the
    function's name). Both are needed, since Snakemake's ``use rule ... with`` cannot change the
    execution directive; they repeat only Snakemake's grammar (docs/architecture.md, "A model step
    is two rules").

    ``function``: ``"module:function"`` (the Snakemake process never imports torch); ``inputs``: an
    input function (``unpack``), ``named_inputs``: fixed named inputs; ``on``: the wildcard that says
    where a job runs and its names, of which ``gpu`` run on GPUs (default: hf models that ask for
    GPUs); ``constraints``: the two rules' other wildcard constraints.
    """

    def __init__(
        self,
        function,
        *,
        output,
        log,
        params,
        on,
        resources,
        inputs=None,
        named_inputs=None,
        constraints=None,
        gpu=None,
    ):
        wildcard, names = on
        on_gpus = HF_GPU_MODELS if gpu is None else gpu
        self.function = function
        self.inputs = inputs or (lambda wildcards: {})
        self.named_inputs = named_inputs or {}
        self.output = output
        self.log = log
        self.resources = resources
        self.params = params
        self.gpu_params = {**params, "function": function}
        self.cpu_constraints = {
            wildcard: one_of([n for n in names if n not in on_gpus]),
            **(constraints or {}),
        }
        self.gpu_constraints = {
            wildcard: one_of([n for n in names if n in on_gpus]),
            **(constraints or {}),
        }


# Scoring backends may checkpoint partial work here; removed once a family's cache is written.
CHUNK_DIR = "results/scores/.chunks"

# Every hf model checked without weights (preflight.smk), an ancient() input of their scoring jobs.
PREFLIGHT_REPORT = "results/preflight/hf_models.json"

# On a cluster, the analyses of one evaluation pair travel as one job: rules carry this group, and
# all of them read the pair's split_matrix, so the group is one connected component (one sbatch,
# and one Snakemake inside it; the SLURM profile's group-components merges any stray component).
PAIR_GROUP = "pair_{model}_{dataset}_{split}"


def one_of(names):
    """Wildcard regex matching exactly one of ``names`` (never matches when empty)."""
    return "|".join(re.escape(n) for n in names) or "(?!x)x"


def log_path(kind, *parts):
    return os.path.join("results", "logs", kind, *parts) + ".log"


def job_logs(kind, *parts):
    """A job's named logs: ``log`` (its records) and ``usage`` (wall time, CPU time, peak memory,
    measured in the process that ran it; base/usage.py). Snakemake's ``benchmark:`` is not used:
    for a job run by a worker it would measure the whole Snakemake process tree."""
    return {
        "log": log_path(kind, *parts),
        "usage": os.path.join("results", "benchmarks", kind, *parts) + ".tsv",
    }


def pair_logs(*kind):
    """The logs of a per-pair job: ``job_logs(*kind, "{model}", "{dataset}", "{split}")``."""
    return job_logs(*kind, "{model}", "{dataset}", "{split}")


def analysis_params(*keys):
    """The subset of config['analysis'] a rule reads, so other keys do not trigger re-runs."""
    return {key: config["analysis"][key] for key in keys}


def per_pair(pattern):
    """``pattern`` expanded over every model and evaluation (dataset, split) pair."""
    return [
        pattern.format(model=m, dataset=d, split=s) for m in MODELS for d, s in PAIRS
    ]


# Model settings that change how a step runs, never its result: changing them re-runs nothing
# (resources are left out; batch and chunk sizes are passed on but not keyed, see Keyed).
RUN_ONLY_MODEL_KEYS = ("batch_size", "chunk_size")


def model_config(model):
    """The model's config without its resources, keyed without its batch and chunk sizes."""
    return Keyed(
        {k: v for k, v in config["models"][model].items() if k != "resources"},
        RUN_ONLY_MODEL_KEYS,
    )


def served_request_config(model):
    """A served model's keys that shape its requests (model name, extra_body, logprobs): a change re-asks."""
    return {
        k: v for k, v in model_config(model).items() if k not in SERVED_CONNECTION_KEYS
    }


def served_connection(model):
    """How a served model's requests reach the server (URL, key variable, concurrency, timeout,
    retries): untracked, so a moved server or another timeout re-runs nothing."""
    cfg = config["models"][model]
    return untracked_settings({k: cfg[k] for k in SERVED_CONNECTION_KEYS})


def served_request_cache(model, *parts):
    """Answered requests of one served model's step (JSON lines, one per request, keyed on its exact
    content; kept between runs: a resumed or repeated run asks only what is not there). One file per
    step and wildcards, so a job reads only its own requests."""
    return untracked(os.path.join("results", "served", model, *parts) + ".jsonl")


def tiny_model_folder(model):
    """Where rule tiny_model builds the model of config entry ``models.<model>.tiny``."""
    return f"results/models/{model}"


def hf_model_config(model):
    """An hf model's config with ``path`` resolved (a tiny model's is the folder the workflow builds)."""
    cfg = config["models"][model]
    return Keyed(
        {
            **model_config(model),
            "path": tiny_model_folder(model) if cfg.get("tiny") else cfg.get("path"),
        },
        RUN_ONLY_MODEL_KEYS,
    )


def model_resource(key, default=None, wildcard="model"):
    """Callable giving one key of the scoring job's resources for the model the wildcard names."""

    def get(wildcards):
        return job_resources.scoring_resources(
            config["models"][wildcards[wildcard]]
        ).get(key, default)

    return get


def scoring_resources(wildcard="model"):
    """Resources of every scoring rule, per model from config (``models.<name>.resources``).

    mem_mb, runtime, cpus_per_task and the GPU request (``gpu``, or ``gres``) always; gpu_model,
    constraint, slurm_partition and slurm_extra only when some model sets them, so that the
    profile's default-resources stay in force otherwise (see prompt_reliability.resources).
    """
    keys = ["mem_mb", "runtime", "cpus_per_task", "gpu"]
    keys += job_resources.optional_keys_in_use(config["models"])
    return {key: model_resource(key, wildcard=wildcard) for key in keys}


def analysis_resources():
    """CPU-only, small: one core (threads: 1), no GPU, memory and runtime from config."""
    return {
        "mem_mb": config["resources"]["analysis_mem_mb"],
        "runtime": config["resources"]["analysis_runtime"],
    }


def family_file(wildcards):
    return os.path.join(PROMPT_DIR, f"{wildcards.family}.yaml")


def manifest_inputs(wildcards):
    """Inputs of a manifest job: imported scores (job-free source files), or for a local dataset a
    marker that changes when an image file's bytes differ from the manifest's (mark_changed_images).
    """
    cfg = config["datasets"][wildcards.dataset]
    if (
        cfg["adapter"] == "scores"
    ):  # source files: mtimes ignored (a clone), contents keyed
        return {
            "score_files": [ancient(f) for f in import_files(config, wildcards.dataset)]
        }
    if cfg["adapter"] in ("local", "vscbench"):
        marker = f"results/data/.{wildcards.dataset}.images_changed"
        mark_changed_images(
            manifest_path(wildcards.dataset),
            f"results/data/.{wildcards.dataset}.image_stats.json",
            marker,
        )
        return {"images_changed": marker}
    return {}


def local_source(dataset):
    """The local dataset file (adapter 'local' with a file path), else None."""
    cfg = config["datasets"][dataset]
    if cfg["adapter"] in ("local", "vscbench") and os.path.isfile(cfg["path"]):
        return cfg["path"]
    return None


def local_source_keys(wildcards):
    """Params of a local dataset's manifest: its file's content, so that a corrected label rebuilds
    the manifest (its content keys then decide what re-runs) and a moved or cloned file does not.
    """
    cfg = config["datasets"][wildcards.dataset]
    if cfg["adapter"] == "scores":
        return {f: file_key(f) for f in import_files(config, wildcards.dataset)}
    if cfg["adapter"] not in ("local", "vscbench") or not os.path.exists(cfg["path"]):
        return {}
    if os.path.isdir(
        cfg["path"]
    ):  # an image folder: its metadata file holds the labels
        return {
            name: file_key(os.path.join(cfg["path"], name))
            for name in sorted(os.listdir(cfg["path"]))
            if name.startswith("metadata.")
        }
    return {"source": file_key(cfg["path"])}


def per_pair_piece(analysis):
    """The per-pair piece of ``analysis`` (wildcards model, dataset, split)."""
    return f"results/analysis/{{model}}/{{dataset}}/{{split}}/{analysis}.parquet"


def prompts_hash(wildcards):
    """Params entry of scoring rules: the family's template texts and the label tokens (labels.yaml).

    Prompt files are not inputs: their absolute paths differ between clones (Snakemake compares
    input paths) while their content is what matters; editing one family re-scores that family,
    editing the label tokens every family.
    """
    return REGISTRY.text_hash(wildcards.family)


def untracked(value):
    """A param that Snakemake's params trigger ignores (it compares only builtin values): for where
    files are and how work is split, when what determines the result is keyed otherwise. Also inside
    a tracked param (a dict or list of them): its key shows ``<untracked>``, never the value. The job
    receives the value (base.jobs)."""
    return Untracked(value)


# --- Keys: what a step's result depends on (docs/architecture.md, "What re-runs what") -----------
# A step re-runs when one of its params changes. Params hold the step's settings and content keys
# of what it reads: prompt texts (REGISTRY.text_hash), source files (file_key), the manifest's
# sample inputs and labels (manifest_keys, from results/data/{dataset}.keys.json), the package code
# of analyses (code_of), the scoring contract's version. Paths, batch and chunk sizes are untracked.
# Gates that must run first but must not re-run what follows (the preflight, the manifest check,
# the manifest build) are checkpoints every step waits for (wait_for_gates) without taking their
# outputs as inputs: once a gate is done, Snakemake re-evaluates the step on its own keys.


def file_key(path):
    """Content hash of a source file (a local dataset file, imported scores, a prompt file): its edits
    re-run what reads it; its path and modification time do not (another clone re-runs nothing).
    """
    import hashlib

    if not os.path.isfile(path):
        return f"missing: {path}"
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()[:20]


def manifest_path(dataset):
    return f"results/data/{dataset}.parquet"


# Gates: checkpoints every other step waits for (wait_for_gates, called by the Snakefile once all
# rules exist). A step depends on a gate only while the gate is to run; once it has, Snakemake
# replaces the step by a fresh one judged on its own keys. Every step waits (not only the steps
# that read the gate's output): Snakemake replaces only a checkpoint's direct dependents, and a job
# it does not replace keeps the "input updated by another job" reason from the plan made before
# the gate ran, so it would re-run even when nothing upstream did.
GATE_RULES = ("dataset_manifest", "check_manifest", "preflight", "tiny_model", "all")


def gates():
    """(checkpoint, wildcards) of every gate of this run: manifests, their checks, the preflight."""
    datasets = sorted(
        {
            *DATASETS,
            *SC_SCORED,
            *([SC_LOCK["dataset"]] if SC_MODELS else []),
            *SA_DATASETS,
        }
    )
    found = [(checkpoints.dataset_manifest, {"dataset": d}) for d in datasets]
    found += [(checkpoints.check_manifest, {"dataset": d}) for d in DATASETS]
    if models_with_backend(config, "hf"):
        found.append((checkpoints.preflight, {}))
    return found


def pending_gates(wildcards):
    """Input function: the gates still to run (their checkpoint targets), all at once."""
    pending = []
    for gate, gate_wildcards in gates():
        try:
            gate.get(**gate_wildcards)
        except IncompleteCheckpointException as pending_gate:
            pending.append(pending_gate.targetfile)
    return pending


def _is_gate(name):
    """A gate rule, also under a module's prefix (``use rule * from ... as <prefix>_*``)."""
    return any(name == gate or name.endswith(f"_{gate}") for gate in GATE_RULES)


def wait_for_gates():
    """Every rule of this workflow but the gates (and what they need) waits for the pending gates;
    rules of a workflow that imports this one as a module are left alone."""
    for step in workflow.rules:
        ours = os.path.abspath(str(step.snakefile)).startswith(
            os.path.abspath(WORKFLOW_DIR) + os.sep
        )
        if ours and not _is_gate(step.name):
            if step.input_modifier is None:  # a rule without inputs of its own
                step.input_modifier = step.output_modifier
            step.set_input(unpack(pending_gates))


def stored_manifest_keys(dataset):
    """The content keys the manifest job wrote (results/data/{dataset}.keys.json), {} before it ran:
    the step waits for the manifest (a gate) and is re-evaluated then."""
    try:
        with open(f"results/data/{dataset}.keys.json") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def manifest_keys(datasets, *kinds):
    """Params function: ``{dataset: {kind: key}}`` of the manifests' content keys (kinds: ``samples``,
    the sample inputs a model sees; ``splits``, which split each sample is in; ``labels``, splits,
    labels, categories and pairs; ``order``, the ids in manifest order, for steps that take the first
    n images).
    """

    def keys(wildcards):
        names = datasets(wildcards) if callable(datasets) else datasets
        found = {}
        for name in names:
            stored = stored_manifest_keys(name)
            found[name] = {kind: stored.get(kind, "pending") for kind in kinds}
        return found

    return keys


def lock_split_keys(wildcards):
    """Params entry of a step that learns from the lock split (few-shot demonstrations, steering
    vectors): the lock dataset's sample inputs and the lock split's labels, so a corrected label in
    another split re-runs nothing of it."""
    stored = stored_manifest_keys(SC_LOCK["dataset"])
    return {
        "lock": {
            "samples": stored.get("samples", "pending"),
            "labels": stored.get("split_labels", {}).get(SC_LOCK["split"], "pending"),
        }
    }


_CODE_KEYS = {}


def code_of(function):
    """Params entry of analysis, table, figure and report steps: the hash of the package code the
    step calls (its module and every package module that imports, comments and docstrings ignored).
    """
    name = f"{function.__module__}:{function.__qualname__}"
    if name not in _CODE_KEYS:
        _CODE_KEYS[name] = code_hash(function.__module__)
    return _CODE_KEYS[name]


def scoring_inputs(wildcards):
    """A tiny model's folder (the job also waits for the gates: the dataset's manifest and its check,
    the preflight; see wait_for_gates)."""
    if wildcards.model in TINY_MODELS:
        return {"model_folder": tiny_model_folder(wildcards.model)}
    return {}


def scoring_keys(wildcards):
    """What a score cache depends on besides the model settings and prompts (params): the samples a
    model sees (ids, queries, image contents; simulated and imported scores also read the labels)
    and, for imported scores, the score file's content. Never labels (for a model), splits or paths.
    """
    backend = config["models"][wildcards.model]["backend"]
    kinds = ("samples",) if backend == "hf" else ("labels",)
    keys = manifest_keys([wildcards.dataset], *kinds)(wildcards)
    if backend == "import":
        keys["score_file"] = file_key(
            config["models"][wildcards.model]["scores"][wildcards.dataset]
        )
    return keys


def table_paths(name):
    """The typed table (read by the pipeline) and its CSV / Markdown renderings (for people)."""
    return [f"results/tables/{name}.{ext}" for ext in ("parquet", "csv", "md")]


def table_html(name):
    """The table's HTML rendering, shown in the HTML report (rules <name>_html, tables.smk)."""
    return f"results/tables/{name}.html"


def table_outputs(name):
    """Named outputs ``table``, ``csv`` (in the HTML report) and ``md`` of registered table ``name``."""
    analysis = ANALYSES[name]  # report/registry.py: category and caption
    parquet, csv, md = table_paths(name)
    return {
        "table": parquet,
        "csv": report(
            csv,
            caption=f"../report/{analysis.caption}",
            category=analysis.category,
            subcategory="Tables (CSV)",
            labels={"table": name},
        ),
        "md": md,
    }


def figure_output(pattern, caption):
    """A figure in the HTML report: ``results/figures/<pattern>``, captioned by ``workflow/report/<caption>``,
    in the category of the analysis that registers it (report/registry.py; an unregistered figure fails
    here). A per-pair figure is filed under its model and labelled by its pair; the cross-pair figure of
    an analysis that also has per-pair figures under "All pairs"."""
    analysis = figure_owner(pattern)
    place = {}
    if PER_PAIR in pattern:
        place = dict(
            subcategory="{model}",
            labels={"model": "{model}", "dataset": "{dataset}", "split": "{split}"},
        )
    elif any(PER_PAIR in figure for figure in analysis.figures):
        place = dict(subcategory="All pairs")
    return report(
        os.path.join("results", "figures", pattern),
        caption=f"../report/{caption}",
        category=analysis.category,
        **place,
    )


def figure_paths(pattern):
    """A registered figure (``pattern`` under results/figures/), over the pairs or datasets it names."""
    path = os.path.join("results", "figures", pattern)
    if "{split}" in pattern:
        return per_pair(path)
    if "{dataset}" in pattern:
        return [path.format(dataset=d) for d in sorted({d for d, _ in PAIRS})]
    return [path]


# What this config produces, from the registry of analyses (report/registry.py), in registry order.
PRODUCED = produced(config)
PRODUCED_TABLES = [table_paths(a.name)[0] for a in PRODUCED]
PRODUCED_FIGURES = [
    path for a in PRODUCED for p in a.figures for path in figure_paths(p)
]
REPORT_MD = "results/REPORT.md"


def final_targets(wildcards=None):
    """Rule all: every lock, every produced table with its renderings and figures, and REPORT.md."""
    tables = [
        path for a in PRODUCED for path in [*table_paths(a.name), table_html(a.name)]
    ]
    locks = [f"results/lock/{model}.json" for model in MODELS]
    return [*locks, *tables, *PRODUCED_FIGURES, REPORT_MD]


# Self-assessment (rules: self_assessment.smk; SA_PROMPTS: the config check above)
SA = config["self_assessment"]
SA_GEN_MODELS = SA["models"]  # hf or served: they write text through the two stages
SA_SERVED_MODELS = [
    m for m in SA_GEN_MODELS if config["models"].get(m, {}).get("backend") == "served"
]
SA_HF_MODELS = [m for m in SA_GEN_MODELS if m not in SA_SERVED_MODELS]
SA_SIM_MODELS = list(SA["simulate"])
SA_IMPORTS = SA["imports"]  # name -> JSONL of answers produced elsewhere
SA_MODELS = SA_GEN_MODELS + SA_SIM_MODELS
SA_DATASETS = (
    SA["datasets"]
    if SA["datasets"] is not None
    else list(dict.fromkeys(d for d, _ in PAIRS))
)
SA_SETTINGS = SA["settings"]
SA_RUNS = [
    {"model": m, "dataset": d, "setting": s}
    for m in SA_MODELS
    for d in SA_DATASETS
    for s in SA_SETTINGS
]
SA_TASK_RUNS = [{"model": m, "dataset": d} for m in SA_SIM_MODELS for d in SA_DATASETS]
# model sizes for the scale view: the simulated self-assessors' public sizes, then self_assessment.scales
SA_SCALES = {
    **{
        m: p["params_b"]
        for m, p in SA["simulate"].items()
        if p.get("public_scale", True)
    },
    **SA["scales"],
}
SA_PAIRS = [{"model": m, "dataset": d, "split": s} for m in MODELS for d, s in PAIRS]


def sa_run_files(name):
    return [
        f"results/self_assessment/{r['model']}/{r['dataset']}/{r['setting']}/{name}"
        for r in SA_RUNS
    ]


def sa_import_files(name):
    """``name`` of every imported answers file (self_assessment.imports)."""
    return [f"results/self_assessment/imported/{n}/{name}" for n in SA_IMPORTS]


def sa_setting_files(name):
    """``name`` of every setting of one model x dataset (wildcards model, dataset): one simulate job writes them."""
    return [
        f"results/self_assessment/{{model}}/{{dataset}}/{setting}/{name}"
        for setting in SA_SETTINGS
    ]


def sa_settings():
    """The self-assessment keys the inference jobs read (stability and simulator settings do not re-run
    them; the batch size is passed on, not keyed)."""
    skip = (
        "stability",
        "models",
        "datasets",
        "simulate",
        "simulation",
        "imports",
        "scales",
        "instruction_pairs",
        "prompts",
    )
    return Keyed({k: v for k, v in SA.items() if k not in skip}, ("batch_size",))


def sa_served_settings():
    """The self-assessment keys a served model's two stages read (no batch size: the server batches)."""
    return {k: SA[k] for k in ("images", "k", "max_new_tokens", "variants")}


def sa_model_inputs(wildcards):
    """The tiny model (generation is keyed on the manifest's sample inputs, after the gates)."""
    if wildcards.model in TINY_MODELS:
        return {"model_dir": tiny_model_folder(wildcards.model)}
    return {}


def sa_keys(wildcards):
    """Self-assessment model steps read the prompt file and (generation) the dataset's sample inputs
    and order (they ask about its first ``images`` images)."""
    return {
        "prompts": file_key(SA_PROMPTS),
        **manifest_keys([wildcards.dataset], "samples", "order")(wildcards),
    }


def report_line():
    """The run's last console line: where REPORT.md is and the command that builds the HTML report."""
    configfiles = "".join(
        f" --configfile {os.path.abspath(f)}"
        for f in workflow.overwrite_configfiles or []
    )
    # the snakemake of this run's environment: after `make run` a bare `snakemake` is not on PATH
    import shutil
    import sys

    beside = os.path.join(os.path.dirname(sys.executable), "snakemake")
    snakemake = (
        beside if os.path.exists(beside) else shutil.which("snakemake") or "snakemake"
    )
    return (
        f"Report: {os.path.abspath('results/REPORT.md')} | HTML: {snakemake} -s "
        f"{os.path.join(WORKFLOW_DIR, 'Snakefile')} -d {os.getcwd()}{configfiles} "
        "--report results/report.html"
    )


def report_run_info():
    """What was run, as the report's params (model configs without resources, prompt hashes, seeds)."""
    return {
        "models": {m: model_config(m) for m in MODELS},
        "prompts": {
            f: {
                "prompt_ids": [p for p in PROMPT_IDS if FAMILY_OF[p] == f],
                "hash": REGISTRY.text_hash(f),
            }
            for f in FAMILIES
        },
        "lock": dict(config["lock"]),
        "evaluate": [dict(e) for e in config["evaluate"]],
        "seeds": {
            "analysis.seed": config["analysis"]["seed"],
            "analysis.bootstrap.seed": config["analysis"]["bootstrap"]["seed"],
        },
        "config_hash": report_md.config_hash(results_config()),
    }


def results_config():
    """The config without what never changes a result (how and where jobs run: workers, resources,
    batch and chunk sizes, a served model's connection, a training's checkpointing): REPORT.md's
    config hash digests this, so that tuning a run neither changes the hash nor rewrites the report.
    """
    run_only_model_keys = ("resources", *RUN_ONLY_MODEL_KEYS, *SERVED_CONNECTION_KEYS)
    out = {k: v for k, v in config.items() if k not in ("workers", "resources")}
    out["models"] = {
        name: {k: v for k, v in cfg.items() if k not in run_only_model_keys}
        for name, cfg in config["models"].items()
    }
    out["self_assessment"] = {
        k: v for k, v in config["self_assessment"].items() if k != "batch_size"
    }
    dist = config["distillation"]
    out["distillation"] = {
        **dist,
        "students": {
            name: {k: v for k, v in cfg.items() if k != "resources"}
            for name, cfg in dist["students"].items()
        },
        "training": {
            k: v for k, v in dist["training"].items() if k not in DIST_HOW_TO_TRAIN
        },
    }
    return out


# Safety calibration (rules: safety_calibration.smk)
SC = config["safety_calibration"]
SC_DIR = "results/safety_calibration"
SC_VERDICTS = SC["verdicts"]
SC_MODELS = SC["models"]
# a served model answers in response mode only (first-token scores need logits, IAR activations)
SC_SERVED_MODELS = [m for m in SC_MODELS if config["models"][m]["backend"] == "served"]
SC_HF_MODELS = [m for m in SC_MODELS if m not in SC_SERVED_MODELS]
SC_HELP = SC["helpfulness"]["dataset"]
# ScienceQA-style multiple choice, scored with the yes/no family
SC_HELP_MC = SC["helpfulness"]["multiple_choice"]
SC_HELP_SETS = [d for d in (SC_HELP, SC_HELP_MC) if d]
# response judges: the phrase judge and model judges (hf or served models under `models`)
SC_JUDGES = (
    SC["responses"]["judges"] if SC["responses"]["enabled"] and SC_MODELS else []
)
SC_MODEL_JUDGES = [j for j in SC_JUDGES if j != PHRASE]
SC_HF_JUDGES = [j for j in SC_MODEL_JUDGES if config["models"][j]["backend"] == "hf"]
SC_SERVED_JUDGES = [j for j in SC_MODEL_JUDGES if j not in SC_HF_JUDGES]
SC_JUDGE_PROMPTS = os.path.join(WORKFLOW_DIR, "prompts", "judge")
SC_LABELLED = os.path.join(SC_JUDGE_PROMPTS, "labelled_responses.csv")
SC_VARIANTS = variant_names(
    SC["few_shot"]["shots"],
    SC["steering"]["layers"],
    SC["steering"]["alphas"],
    SC["prompting"],
)
SC_PROMPTING = {
    "prompt_dir": untracked(
        CALIBRATION_PROMPT_DIR
    ),  # its files keyed by content: _sc_variant_keys
    "cot_max_new_tokens": SC["cot_max_new_tokens"],
}
SC_LOCK = config["lock"]
SC_DATASETS = sorted({d for d, _ in PAIRS})
SC_SCORED = SC_DATASETS + [d for d in SC_HELP_SETS if d not in SC_DATASETS]


def _sc_model_dir(model, datasets=()):
    """The tiny model's folder as an input (built by rule tiny_model; nothing for Hub models). The
    step reads the manifests of ``datasets``: it is keyed on their content keys, after the gates.
    """
    if model in TINY_MODELS:
        return {"model_dir": tiny_model_folder(model)}
    return {}


def _sc_splits(dataset):
    return [s for d, s in PAIRS if d == dataset] or [SC["helpfulness"]["split"]]


def _sc_pieces(wildcards):
    pieces = per_pair(os.path.join(SC_DIR, "{model}/{dataset}/{split}/sra.parquet"))
    for model in SC_HF_MODELS:
        for dataset, split in PAIRS:
            pieces += [
                f"{SC_DIR}/{model}/{dataset}/{split}/variants/{variant}.parquet"
                for variant in SC_VARIANTS
            ]
    return pieces


def _sc_response_pieces(wildcards):
    """One response-mode SRA piece per model, evaluation pair, variant and judge."""
    return [
        f"{SC_DIR}/{model}/{dataset}/{split}/responses/{variant}/{judge}.parquet"
        for model in SC_MODELS
        for dataset, split in PAIRS
        for variant in SC_VARIANTS
        for judge in SC_JUDGES
    ]


def _sc_judge_inputs(wildcards):
    """A model judge's folder (a tiny model); its prompts are keyed by content (_sc_judge_keys)."""
    if wildcards.judge in TINY_MODELS:
        return {"judge_dir": tiny_model_folder(wildcards.judge)}
    return {}


def _sc_judge_keys(wildcards):
    """A judge depends on its prompt files (prompts/judge/*.yaml), by content, and on what it judges:
    the labelled responses file, or the dataset's labels (the judge's question names the request's
    label: a corrected label re-judges; the responses themselves are an input file).
    """
    keys = {
        name: file_key(os.path.join(SC_JUDGE_PROMPTS, name))
        for name in ("judge.yaml", "labels.yaml")
    }
    if "dataset" in wildcards.keys():
        keys.update(manifest_keys([wildcards.dataset], "labels")(wildcards))
    else:
        keys["labelled"] = file_key(SC_LABELLED)
    return keys


def _sc_judge_config(judge):
    """An hf judge's config (path resolved), or what shapes a served judge's requests."""
    backend = config["models"][judge]["backend"]
    return hf_model_config(judge) if backend == "hf" else served_request_config(judge)


def _sc_scored_spec(dataset):
    helpfulness = dataset in SC_HELP_SETS
    prompt_dir = (
        os.path.join(WORKFLOW_DIR, "prompts", "helpfulness")
        if helpfulness
        else PROMPT_DIR
    )
    family = "pope" if helpfulness else SC["family"]
    return {
        "dataset": dataset,
        "splits": _sc_splits(dataset),
        "prompt_dir": untracked(prompt_dir),
        "family": family,
        "prompts": (
            load_registry(prompt_dir, [family]).text_hash(family) if SC_MODELS else ""
        ),
        # the model's own `labels` apply to the safety sets, never to the yes/no helpfulness set
        "model_labels": not helpfulness,
    }


def _sc_variant_inputs(wildcards):
    """What a variant's job (scores or responses) reads as files: the model and, for a steering
    variant, its vectors. The manifests, the calibration prompts and the replies are keyed by content
    (_sc_variant_keys), so a corrected label or a fresh clone re-runs no model step.
    """
    inputs = _sc_model_dir(wildcards.model)
    if wildcards.variant.startswith("iar-"):
        inputs["vectors"] = f"{SC_DIR}/steering/{wildcards.model}.safetensors"
    return inputs


def _sc_variant_keys(datasets, replies=False):
    """Params function: what a variant's job depends on in what it reads. The datasets' sample inputs
    and splits (which samples it scores or answers; never their labels, which neither the scores nor
    the responses see); a few-shot variant also the lock split's samples and labels (its
    demonstrations and their answers) and, when it answers (``replies``), the reply texts; a
    prompting variant its prompt file.
    """

    def keys(wildcards):
        found = manifest_keys(datasets, "samples", "splits")(wildcards)
        if wildcards.variant.startswith("fewshot-"):
            found.update(lock_split_keys(wildcards))
            if replies:
                found["replies"] = file_key(
                    os.path.join(CALIBRATION_PROMPT_DIR, "replies.yaml")
                )
        if wildcards.variant in SC["prompting"]:  # a prompt of prompts/calibration/
            found["calibration_prompt"] = file_key(
                os.path.join(CALIBRATION_PROMPT_DIR, f"{wildcards.variant}.yaml")
            )
        return found

    return keys


def _sc_variant_manifests(datasets):
    """Params of a variant's job: where the manifests are (untracked: keyed by _sc_variant_keys)."""
    return dict(
        manifests=untracked([manifest_path(d) for d in datasets]),
        lock_manifest=lambda w: untracked(
            manifest_path(SC_LOCK["dataset"])
            if w.variant.startswith("fewshot-")
            else None
        ),
    )


def _sc_tradeoff_entries():
    entries = []
    for model in SC_HF_MODELS:
        for dataset, split in PAIRS:
            for variant in SC_VARIANTS:
                entries.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "split": split,
                        "method": variant,
                        "scores": f"{SC_DIR}/scores/{model}/{variant}/{dataset}.parquet",
                        "manifest": manifest_path(dataset),
                        "helpfulness": f"{SC_DIR}/scores/{model}/{variant}/{SC_HELP}.parquet",
                        "helpfulness_manifest": manifest_path(SC_HELP),
                        "helpfulness_split": SC["helpfulness"]["split"],
                        **(
                            {
                                "multiple_choice": f"{SC_DIR}/scores/{model}/{variant}/{SC_HELP_MC}.parquet",
                                "multiple_choice_manifest": f"results/data/{SC_HELP_MC}.parquet",
                            }
                            if SC_HELP_MC
                            else {}
                        ),
                    }
                )
    return entries


# Distillation (rules: distillation.smk)
DIST = config["distillation"]
DIST_STUDENTS = list(DIST["students"])
DIST_TEACHERS = DIST["teachers"] if DIST_STUDENTS else []
DIST_STRATEGIES = DIST["strategies"]
DIST_DATASET = DIST["dataset"] or (SA_DATASETS[0] if SA_DATASETS else None)
DIST_ARMS = ["base"] + [f"{t}/{s}" for t in DIST_TEACHERS for s in DIST_STRATEGIES]
DIST_GPU_STUDENTS = [
    s
    for s in DIST_STUDENTS
    if job_resources.scoring_resources(DIST["students"][s]).get("gpu", 0) > 0
    or job_resources.scoring_resources(DIST["students"][s]).get("gres")
]
DIST_CPU_STUDENTS = [s for s in DIST_STUDENTS if s not in DIST_GPU_STUDENTS]
DIST_DIR = "results/distillation"
# how a training job runs, not what it computes (checkpoint interval, activation recomputation); a
# checkpoint's fingerprint leaves them out too
DIST_HOW_TO_TRAIN = ("checkpoint_steps", "gradient_checkpointing")


def student_config(wildcards):
    """A student's load settings with ``path`` resolved (a tiny student's is the folder built for it)."""
    cfg = {
        k: v for k, v in DIST["students"][wildcards.student].items() if k != "resources"
    }
    if cfg.get("tiny"):
        cfg["path"] = f"{DIST_DIR}/students/{wildcards.student}"
    return cfg


def student_resources():
    """The student's jobs' resources (``distillation.students.<name>.resources``)."""

    def get(key):
        return lambda w: job_resources.scoring_resources(
            DIST["students"][w.student]
        ).get(key)

    keys = ["mem_mb", "runtime", "cpus_per_task", "gpu"]
    keys += job_resources.optional_keys_in_use(DIST["students"])
    return {key: get(key) for key in keys}


def distillation_student_inputs(wildcards):
    if DIST["students"][wildcards.student].get("tiny"):
        return {"model_dir": f"{DIST_DIR}/students/{wildcards.student}"}
    return {}


def distillation_arm_inputs(wildcards):
    """The student (a tiny one's folder) and, for an adapter arm, the adapter the training job wrote."""
    inputs = distillation_student_inputs(wildcards)
    if wildcards.arm != "base":
        inputs["adapter"] = f"{DIST_DIR}/adapters/{wildcards.student}/{wildcards.arm}"
    return inputs


def distillation_checkpoints(wildcards):
    """Where a training job checkpoints (not an output: it survives a killed job, and goes when it ends)."""
    return untracked(
        f"{DIST_DIR}/checkpoints/{wildcards.student}/{wildcards.teacher}/{wildcards.strategy}"
    )
