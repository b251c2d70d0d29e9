# Helpers shared by all rule modules (config checks, prompt registry, target lists).
import os
import re

from snakemake.exceptions import WorkflowError
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
    untracked,
    untracked_settings,
    use_workers,
)
from prompt_reliability.report import report_md
from prompt_reliability.report.registry import ANALYSES, produced
from prompt_reliability.data.prompts import PromptRegistryError, load_registry
from prompt_reliability.data.self_assessment_protocol import (
    SETTINGS as SA_ALL_SETTINGS,
    check_self_assessment_config,
)
from prompt_reliability.analysis.safety_calibration import check_safety_config
from prompt_reliability.analysis.judges import PHRASE
from prompt_reliability.scoring.variants import variant_names
from prompt_reliability.base import resources as job_resources
from prompt_reliability.base.runtime import (
    code_hash,
)  # params entry: code=code_hash(module_or_function)

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
#   apart by the models they match (cpu_models / gpu_models).
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


def gpu_models(models):
    """The models of ``models`` whose steps are GPU steps (wildcard constraint of a *_gpu rule)."""
    return one_of([m for m in models if m in HF_GPU_MODELS])


def cpu_models(models):
    """The models of ``models`` whose steps are CPU steps (wildcard constraint of the worker rule)."""
    return one_of([m for m in models if m not in HF_GPU_MODELS])


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


def analysis_params(*keys):
    """The subset of config['analysis'] a rule reads, so other keys do not trigger re-runs."""
    return {key: config["analysis"][key] for key in keys}


def per_pair(pattern):
    """``pattern`` expanded over every model and evaluation (dataset, split) pair."""
    return [
        pattern.format(model=m, dataset=d, split=s) for m in MODELS for d, s in PAIRS
    ]


def model_config(model):
    """The model's config without its resources (changing resources must not re-score)."""
    return {k: v for k, v in config["models"][model].items() if k != "resources"}


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
    return {
        **model_config(model),
        "path": tiny_model_folder(model) if cfg.get("tiny") else cfg.get("path"),
    }


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
    cfg = config["datasets"][wildcards.dataset]
    if cfg["adapter"] == "scores":
        return {"score_files": import_files(config, wildcards.dataset)}
    if cfg["adapter"] in ("local", "vscbench") and os.path.isfile(cfg["path"]):
        return {"source": cfg["path"]}
    return {}


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


def scoring_inputs(wildcards):
    inputs = {
        "manifest": f"results/data/{wildcards.dataset}.parquet",
        # check_manifest (checks.smk): splits, classes and images are checked before any score exists.
        # ancient(): the check re-runs when what the run needs changes (e.g. analysis.bootstrap
        # prevalences), which must order the jobs but never re-score.
        "manifest_check": ancient(f"results/checks/{wildcards.dataset}.json"),
    }
    cfg = config["models"][wildcards.model]
    if cfg["backend"] == "import":
        inputs["score_file"] = cfg["scores"][wildcards.dataset]
    if wildcards.model in TINY_MODELS:
        inputs["model_folder"] = tiny_model_folder(wildcards.model)
    if cfg["backend"] == "hf":
        inputs["preflight"] = ancient(PREFLIGHT_REPORT)  # rule preflight
    return inputs


def table_paths(name):
    """The typed table (read by the pipeline) and its CSV / Markdown renderings (for people)."""
    return [f"results/tables/{name}.{ext}" for ext in ("parquet", "csv", "md")]


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
            subcategory="Tables",
            labels={"table": name},
        ),
        "md": md,
    }


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
    tables = [path for a in PRODUCED for path in table_paths(a.name)]
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
    """The self-assessment keys the inference jobs read (stability and simulator settings do not re-run them)."""
    skip = (
        "stability",
        "models",
        "datasets",
        "simulate",
        "simulation",
        "imports",
        "scales",
        "instruction_pairs",
    )
    return {k: v for k, v in SA.items() if k not in skip}


def sa_served_settings():
    """The self-assessment keys a served model's two stages read (no batch size: the server batches)."""
    return {k: SA[k] for k in ("images", "k", "max_new_tokens", "variants")}


def sa_model_inputs(wildcards):
    inputs = {
        "manifest": f"results/data/{wildcards.dataset}.parquet",
        "prompts": SA_PROMPTS,
    }
    if wildcards.model in TINY_MODELS:
        inputs["model_dir"] = tiny_model_folder(wildcards.model)
    return inputs


def report_line():
    """The run's last console line: where REPORT.md is and the command that builds the HTML report."""
    configfiles = "".join(
        f" --configfile {os.path.abspath(f)}"
        for f in workflow.overwrite_configfiles or []
    )
    return (
        f"Report: {os.path.abspath('results/REPORT.md')} | HTML: snakemake -s "
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
        "config_hash": report_md.config_hash(config),
    }


# Safety calibration (rules: safety_calibration.smk)
SC = config["safety_calibration"]
SC_DIR = "results/safety_calibration"
SC_VERDICTS = SC["verdicts"]
SC_MODELS = SC["models"]
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
    "prompt_dir": CALIBRATION_PROMPT_DIR,
    "cot_max_new_tokens": SC["cot_max_new_tokens"],
}
SC_LOCK = config["lock"]
SC_DATASETS = sorted({d for d, _ in PAIRS})
SC_SCORED = SC_DATASETS + [d for d in SC_HELP_SETS if d not in SC_DATASETS]


def _sc_model_dir(model):
    """The tiny model's folder as an input (built by rule tiny_model); nothing for Hub models."""
    if model in TINY_MODELS:
        return {"model_dir": tiny_model_folder(model)}
    return {}


def _sc_splits(dataset):
    return [s for d, s in PAIRS if d == dataset] or [SC["helpfulness"]["split"]]


def _sc_pieces(wildcards):
    pieces = per_pair(os.path.join(SC_DIR, "{model}/{dataset}/{split}/sra.parquet"))
    for model in SC_MODELS:
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
    """A model judge's folder (a tiny model) and its prompt: re-judge when either changes."""
    inputs = {"prompt": os.path.join(SC_JUDGE_PROMPTS, "judge.yaml")}
    if wildcards.judge in TINY_MODELS:
        inputs["judge_dir"] = tiny_model_folder(wildcards.judge)
    return inputs


def _sc_judge_config(judge):
    """An hf judge's config (path resolved), or what shapes a served judge's requests."""
    backend = config["models"][judge]["backend"]
    return hf_model_config(judge) if backend == "hf" else served_request_config(judge)


def _sc_scored_spec(dataset):
    helpfulness = dataset in SC_HELP_SETS
    return {
        "dataset": dataset,
        "splits": _sc_splits(dataset),
        "prompt_dir": (
            os.path.join(WORKFLOW_DIR, "prompts", "helpfulness")
            if helpfulness
            else PROMPT_DIR
        ),
        "family": "pope" if helpfulness else SC["family"],
        # the model's own `labels` apply to the safety sets, never to the yes/no helpfulness set
        "model_labels": not helpfulness,
    }


def _sc_variant_inputs(wildcards, datasets=None):
    """What a variant's job reads: the manifests of ``datasets`` (default: every scored set), the
    model, and the variant's own inputs (steering vectors, lock manifest, calibration prompt).
    """
    inputs = {
        "manifests": [
            f"results/data/{d}.parquet"
            for d in (SC_SCORED if datasets is None else datasets)
        ],
        **_sc_model_dir(wildcards.model),
    }
    if wildcards.variant.startswith("iar-"):
        inputs["vectors"] = f"{SC_DIR}/steering/{wildcards.model}.safetensors"
    if wildcards.variant.startswith("fewshot-"):
        inputs["lock_manifest"] = f"results/data/{SC_LOCK['dataset']}.parquet"
    if wildcards.variant in SC["prompting"]:
        inputs["calibration_prompt"] = os.path.join(
            SC_PROMPTING["prompt_dir"], f"{wildcards.variant}.yaml"
        )
    if datasets is not None and wildcards.variant.startswith("fewshot-"):
        inputs["replies"] = os.path.join(SC_PROMPTING["prompt_dir"], "replies.yaml")
    return inputs


def _sc_tradeoff_entries():
    entries = []
    for model in SC_MODELS:
        for dataset, split in PAIRS:
            for variant in SC_VARIANTS:
                entries.append(
                    {
                        "model": model,
                        "dataset": dataset,
                        "split": split,
                        "method": variant,
                        "scores": f"{SC_DIR}/scores/{model}/{variant}/{dataset}.parquet",
                        "helpfulness": f"{SC_DIR}/scores/{model}/{variant}/{SC_HELP}.parquet",
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
