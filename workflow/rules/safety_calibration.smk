# Safety calibration (issue 14, VSCBench): over- vs under-safety per category, test-time
# calibration variants (few-shot, activation steering, response mode) and their cost in helpfulness.
import os

from prompt_reliability.base.jobs import call
from prompt_reliability.data.prompts import load_registry as _sc_load_registry
from prompt_reliability.data.prompts import prompts_by_family
from prompt_reliability.scoring.variants import variant_names
from prompt_reliability.analysis import safety_calibration
from prompt_reliability.scoring import judging as sc_judging
from prompt_reliability.report import safety_calibration_tables as safety_report
from prompt_reliability.report.figures import safety_calibration as safety_figures

SC_TEMPLATE = REGISTRY.family(SC["family"])[0].text if SC_MODELS else ""
SC_FEW_SHOT = {
    "split": SC_LOCK["split"],
    "seed": SC["few_shot"]["seed"],
    "template": SC_TEMPLATE,
}


rule safety_sra:
    input:
        matrix=per_pair_piece("matrix"),
        manifest="results/data/{dataset}.parquet",
        lock="results/lock/{model}.json",
    output:
        table=os.path.join(SC_DIR, "{model}/{dataset}/{split}/sra.parquet"),
    log:
        **pair_logs("safety_calibration", "sra"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        code=code_of(safety_calibration.write_safety_sra),
        threshold=SC["threshold"],
        verdicts=SC_VERDICTS,
        families=prompts_by_family(FAMILY_OF),
    run:
        call(safety_calibration.write_safety_sra, input, output, params, wildcards, log)


# the model steps of an hf model under safety calibration (common.smk, ModelStep)
SC_HF_STEP = dict(on=("model", SC_HF_MODELS), resources=scoring_resources())
SAFETY_STEERING_VECTORS = ModelStep(
    "prompt_reliability.scoring.steering_vectors:write_steering_vectors",
    inputs=lambda w: _sc_model_dir(w.model),
    output={"vectors": os.path.join(SC_DIR, "steering/{model}.safetensors")},
    log=job_logs("safety_calibration", "steering", "{model}"),
    **SC_HF_STEP,
    params=dict(
        model_config=lambda w: hf_model_config(w.model),
        manifest=untracked(manifest_path(SC_LOCK["dataset"])),
        # the vectors contrast the lock split's unsafe and safe rows: its labels, not the test split's
        depends_on=lambda w: {
            **lock_split_keys(w),
            "replies": file_key(os.path.join(CALIBRATION_PROMPT_DIR, "replies.yaml")),
        },
        prompts=REGISTRY.text_hash(SC["family"]) if SC_MODELS else "",
        prompt_dir=untracked(PROMPT_DIR),
        families=untracked(config["prompts"]),
        family=SC["family"],
        prompt_format=config["prompt_format"],
        split=SC_LOCK["split"],
        layers=SC["steering"]["layers"],
        vector=SC["steering"]["vector"],
        dataset=SC_LOCK["dataset"],
        replies=untracked(os.path.join(CALIBRATION_PROMPT_DIR, "replies.yaml")),
    ),
)


rule safety_steering_vectors:
    input:
        unpack(SAFETY_STEERING_VECTORS.inputs),
        **SAFETY_STEERING_VECTORS.named_inputs,
    output:
        **SAFETY_STEERING_VECTORS.output,
    log:
        **SAFETY_STEERING_VECTORS.log,
    wildcard_constraints:
        **SAFETY_STEERING_VECTORS.cpu_constraints,
    resources:
        **SAFETY_STEERING_VECTORS.resources,
    params:
        **SAFETY_STEERING_VECTORS.params,
    run:
        call(
            SAFETY_STEERING_VECTORS.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_steering_vectors_gpu:
    input:
        unpack(SAFETY_STEERING_VECTORS.inputs),
        **SAFETY_STEERING_VECTORS.named_inputs,
    output:
        **SAFETY_STEERING_VECTORS.output,
    log:
        **SAFETY_STEERING_VECTORS.log,
    wildcard_constraints:
        **SAFETY_STEERING_VECTORS.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **SAFETY_STEERING_VECTORS.resources,
    params:
        **SAFETY_STEERING_VECTORS.gpu_params,
    script:
        GPU_ADAPTER


# One job per (model, variant) scores every dataset it needs: the evaluation datasets with the
# calibration family, the helpfulness set with its yes/no family (torch loads once per job).
SAFETY_VARIANT_SCORES = ModelStep(
    "prompt_reliability.scoring.variants:score_variant_datasets",
    inputs=_sc_variant_inputs,
    output={
        "scores": [
            os.path.join(SC_DIR, "scores/{model}/{variant}/") + f"{d}.parquet"
            for d in SC_SCORED
        ]
    },
    log=job_logs("safety_calibration", "scores", "{model}", "{variant}"),
    **SC_HF_STEP,
    constraints={"variant": one_of(SC_VARIANTS)},
    params=dict(
        model_config=lambda w: hf_model_config(w.model),
        **_sc_variant_manifests(SC_SCORED),
        depends_on=_sc_variant_keys(SC_SCORED),
        prompts={d: _sc_scored_spec(d)["prompts"] for d in SC_SCORED},
        datasets=[
            {k: v for k, v in _sc_scored_spec(d).items() if k != "prompts"}
            for d in SC_SCORED
        ],
        prompt_format=config["prompt_format"],
        work_dir=untracked(os.path.join(SC_DIR, "chunks")),
        few_shot=SC_FEW_SHOT,
        prompting=SC_PROMPTING,
    ),
)


rule safety_variant_scores:
    input:
        unpack(SAFETY_VARIANT_SCORES.inputs),
        **SAFETY_VARIANT_SCORES.named_inputs,
    output:
        **SAFETY_VARIANT_SCORES.output,
    log:
        **SAFETY_VARIANT_SCORES.log,
    wildcard_constraints:
        **SAFETY_VARIANT_SCORES.cpu_constraints,
    resources:
        **SAFETY_VARIANT_SCORES.resources,
    params:
        **SAFETY_VARIANT_SCORES.params,
    run:
        call(
            SAFETY_VARIANT_SCORES.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_variant_scores_gpu:
    input:
        unpack(SAFETY_VARIANT_SCORES.inputs),
        **SAFETY_VARIANT_SCORES.named_inputs,
    output:
        **SAFETY_VARIANT_SCORES.output,
    log:
        **SAFETY_VARIANT_SCORES.log,
    wildcard_constraints:
        **SAFETY_VARIANT_SCORES.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **SAFETY_VARIANT_SCORES.resources,
    params:
        **SAFETY_VARIANT_SCORES.gpu_params,
    script:
        GPU_ADAPTER


rule safety_variant_sra:
    input:
        scores=os.path.join(SC_DIR, "scores/{model}/{method}/{dataset}.parquet"),
        manifest="results/data/{dataset}.parquet",
    output:
        table=os.path.join(
            SC_DIR, "{model}/{dataset}/{split}/variants/{method}.parquet"
        ),
    log:
        **job_logs(
            "safety_calibration",
            "variant_sra",
            "{model}",
            "{dataset}",
            "{split}",
            "{method}",
        ),
    wildcard_constraints:
        method=one_of(SC_VARIANTS),
    resources:
        **analysis_resources(),
    params:
        code=code_of(safety_calibration.write_variant_sra),
        threshold=SC["threshold"],
        verdicts=SC_VERDICTS,
    run:
        call(
            safety_calibration.write_variant_sra,
            input,
            output,
            params,
            wildcards,
            log,
        )


# Response mode (VSCBench's protocol): one job per (model, variant) answers every evaluation dataset.
# The responses carry no labels (the judges and the response SRA join them from the manifest): keyed
# on the sample inputs and splits, so a corrected label re-answers nothing.
SAFETY_RESPONSE_SETTINGS = dict(
    **_sc_variant_manifests(SC_DATASETS),
    depends_on=_sc_variant_keys(SC_DATASETS, replies=True),
    datasets=[{"dataset": d, "splits": _sc_splits(d)} for d in SC_DATASETS],
    max_new_tokens=SC["responses"]["max_new_tokens"],
    few_shot=SC_FEW_SHOT,
    prompting=SC_PROMPTING,
)
SAFETY_RESPONSES = ModelStep(
    "prompt_reliability.scoring.responses:write_variant_responses",
    inputs=_sc_variant_inputs,
    output={
        "responses": [
            os.path.join(SC_DIR, "responses/{model}/{variant}/") + f"{d}.parquet"
            for d in SC_DATASETS
        ]
    },
    log=job_logs("safety_calibration", "responses", "{model}", "{variant}"),
    **SC_HF_STEP,
    constraints={"variant": one_of(SC_VARIANTS)},
    params=dict(
        model_config=lambda w: hf_model_config(w.model), **SAFETY_RESPONSE_SETTINGS
    ),
)


rule safety_responses:
    input:
        unpack(SAFETY_RESPONSES.inputs),
        **SAFETY_RESPONSES.named_inputs,
    output:
        **SAFETY_RESPONSES.output,
    log:
        **SAFETY_RESPONSES.log,
    wildcard_constraints:
        **SAFETY_RESPONSES.cpu_constraints,
    resources:
        **SAFETY_RESPONSES.resources,
    params:
        **SAFETY_RESPONSES.params,
    run:
        call(
            SAFETY_RESPONSES.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_responses_gpu:
    input:
        unpack(SAFETY_RESPONSES.inputs),
        **SAFETY_RESPONSES.named_inputs,
    output:
        **SAFETY_RESPONSES.output,
    log:
        **SAFETY_RESPONSES.log,
    wildcard_constraints:
        **SAFETY_RESPONSES.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **SAFETY_RESPONSES.resources,
    params:
        **SAFETY_RESPONSES.gpu_params,
    script:
        GPU_ADAPTER


# A served model's responses: the same conversations sent to its server from where Snakemake runs,
# each answer cached per (model, variant); no steering (check_safety_config).
rule safety_responses_served:
    input:
        unpack(SAFETY_RESPONSES.inputs),
    output:
        **SAFETY_RESPONSES.output,
    log:
        **SAFETY_RESPONSES.log,
    wildcard_constraints:
        model=one_of(SC_SERVED_MODELS),
        variant=one_of(SC_VARIANTS),
    localrule: True  # requests: where Snakemake runs (reaches the server; compute nodes may lack internet)
    params:
        **SAFETY_RESPONSE_SETTINGS,
        model_config=lambda w: served_request_config(w.model),
        connection=lambda w: served_connection(w.model),
        request_cache=lambda w: served_request_cache(w.model, "responses", w.variant),
    run:
        call(
            "prompt_reliability.scoring.responses:write_served_responses",
            input,
            output,
            params,
            wildcards,
            log,
        )


# Model judges on one responses file: an hf judge (first-token Y/N) is a model step (worker or GPU
# adapter); a served judge sends requests from a CPU worker, each answer cached. The phrase judge
# needs no job (rule safety_response_sra applies it).
SC_JUDGED = os.path.join(
    SC_DIR, "responses/{model}/{variant}/{dataset}.judged/{judge}.parquet"
)
SC_RESPONSES_FILE = os.path.join(
    SC_DIR, "responses/{model}/{variant}/{dataset}.parquet"
)
# the judged responses: of a scored model (a served model without logprobs is none), any variant
SC_JUDGED_CONSTRAINTS = {"model": one_of(SC_MODELS), "variant": one_of(SC_VARIANTS)}
# an hf judge's config (path resolved) or what shapes a served judge's requests, its prompt (keyed by
# content, with what it judges: _sc_judge_keys)
SC_JUDGE_SETTINGS = dict(
    judge_config=lambda w: _sc_judge_config(w.judge),
    depends_on=_sc_judge_keys,
    prompt_dir=untracked(SC_JUDGE_PROMPTS),
    prompt_format=config["prompt_format"],
)
SAFETY_JUDGE_RESPONSES = ModelStep(
    "prompt_reliability.scoring.judging:write_response_judgement",
    inputs=_sc_judge_inputs,
    named_inputs={"responses": SC_RESPONSES_FILE},
    output={"judgement": SC_JUDGED},
    log=job_logs(
        "safety_calibration", "judge", "{judge}", "{model}", "{variant}", "{dataset}"
    ),
    on=("judge", SC_HF_JUDGES),
    constraints=SC_JUDGED_CONSTRAINTS,
    resources=scoring_resources("judge"),
    params=dict(
        **SC_JUDGE_SETTINGS,
        manifest=lambda w: untracked(manifest_path(w.dataset)),  # the requests' labels
        work_dir=lambda w: os.path.join(
            SC_DIR, "chunks/judge", w.judge, w.model, w.variant, w.dataset
        ),
    ),
)


rule safety_judge_responses:
    input:
        unpack(SAFETY_JUDGE_RESPONSES.inputs),
        **SAFETY_JUDGE_RESPONSES.named_inputs,
    output:
        **SAFETY_JUDGE_RESPONSES.output,
    log:
        **SAFETY_JUDGE_RESPONSES.log,
    wildcard_constraints:
        **SAFETY_JUDGE_RESPONSES.cpu_constraints,
    resources:
        **SAFETY_JUDGE_RESPONSES.resources,
    params:
        **SAFETY_JUDGE_RESPONSES.params,
    run:
        call(
            SAFETY_JUDGE_RESPONSES.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_judge_responses_gpu:
    input:
        unpack(SAFETY_JUDGE_RESPONSES.inputs),
        **SAFETY_JUDGE_RESPONSES.named_inputs,
    output:
        **SAFETY_JUDGE_RESPONSES.output,
    log:
        **SAFETY_JUDGE_RESPONSES.log,
    wildcard_constraints:
        **SAFETY_JUDGE_RESPONSES.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **SAFETY_JUDGE_RESPONSES.resources,
    params:
        **SAFETY_JUDGE_RESPONSES.gpu_params,
    script:
        GPU_ADAPTER


rule safety_judge_responses_served:
    input:
        unpack(SAFETY_JUDGE_RESPONSES.inputs),  # nothing: a served judge is no tiny model
        **SAFETY_JUDGE_RESPONSES.named_inputs,
    output:
        **SAFETY_JUDGE_RESPONSES.output,
    log:
        **SAFETY_JUDGE_RESPONSES.log,
    wildcard_constraints:
        **SC_JUDGED_CONSTRAINTS,
        judge=one_of(SC_SERVED_JUDGES),
    localrule: True  # requests: where Snakemake runs (reaches the server; compute nodes may lack internet)
    params:
        **SAFETY_JUDGE_RESPONSES.params,
        connection=lambda w: served_connection(w.judge),
        request_cache=lambda w: served_request_cache(
            w.judge, "judge", w.model, w.variant, w.dataset
        ),
    run:
        call(sc_judging.write_response_judgement, input, output, params, wildcards, log)


# Every model judge on the labelled responses (prompts/judge/labelled_responses.csv): its kappa.
SC_LABELLED_JUDGED = os.path.join(SC_DIR, "judges/{judge}.parquet")
SAFETY_JUDGE_LABELLED = ModelStep(
    "prompt_reliability.scoring.judging:write_labelled_judgement",
    inputs=_sc_judge_inputs,
    output={"judgement": SC_LABELLED_JUDGED},
    log=job_logs("safety_calibration", "judge", "{judge}", "labelled"),
    on=("judge", SC_HF_JUDGES),
    resources=scoring_resources("judge"),
    params=dict(
        **SC_JUDGE_SETTINGS,
        labelled=untracked(
            SC_LABELLED
        ),  # a source file: keyed by content (_sc_judge_keys)
        work_dir=lambda w: os.path.join(SC_DIR, "chunks/judge", w.judge, "labelled"),
    ),
)


rule safety_judge_labelled:
    input:
        unpack(SAFETY_JUDGE_LABELLED.inputs),
        **SAFETY_JUDGE_LABELLED.named_inputs,
    output:
        **SAFETY_JUDGE_LABELLED.output,
    log:
        **SAFETY_JUDGE_LABELLED.log,
    wildcard_constraints:
        **SAFETY_JUDGE_LABELLED.cpu_constraints,
    resources:
        **SAFETY_JUDGE_LABELLED.resources,
    params:
        **SAFETY_JUDGE_LABELLED.params,
    run:
        call(
            SAFETY_JUDGE_LABELLED.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_judge_labelled_gpu:
    input:
        unpack(SAFETY_JUDGE_LABELLED.inputs),
        **SAFETY_JUDGE_LABELLED.named_inputs,
    output:
        **SAFETY_JUDGE_LABELLED.output,
    log:
        **SAFETY_JUDGE_LABELLED.log,
    wildcard_constraints:
        **SAFETY_JUDGE_LABELLED.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **SAFETY_JUDGE_LABELLED.resources,
    params:
        **SAFETY_JUDGE_LABELLED.gpu_params,
    script:
        GPU_ADAPTER


rule safety_judge_labelled_served:
    input:
        unpack(SAFETY_JUDGE_LABELLED.inputs),  # nothing: a served judge is no tiny model
        **SAFETY_JUDGE_LABELLED.named_inputs,
    output:
        **SAFETY_JUDGE_LABELLED.output,
    log:
        **SAFETY_JUDGE_LABELLED.log,
    wildcard_constraints:
        judge=one_of(SC_SERVED_JUDGES),
    localrule: True  # requests: where Snakemake runs (reaches the server; compute nodes may lack internet)
    params:
        **SAFETY_JUDGE_LABELLED.params,
        connection=lambda w: served_connection(w.judge),
        request_cache=lambda w: served_request_cache(w.judge, "judge", "labelled"),
    run:
        call(sc_judging.write_labelled_judgement, input, output, params, wildcards, log)


rule safety_response_sra:
    input:
        unpack(
            lambda w: (
                {}
                if w.judge == PHRASE
                else {"judgement": SC_JUDGED.format(**dict(w.items()))}
            )
        ),
        responses=SC_RESPONSES_FILE,
        manifest="results/data/{dataset}.parquet",  # labels and categories
    output:
        table=os.path.join(
            SC_DIR, "{model}/{dataset}/{split}/responses/{variant}/{judge}.parquet"
        ),
    log:
        **job_logs(
            "safety_calibration",
            "response_sra",
            "{model}",
            "{dataset}",
            "{split}",
            "{variant}",
            "{judge}",
        ),
    wildcard_constraints:
        model=one_of(SC_MODELS),  # a served model without logprobs is no scored model
        variant=one_of(SC_VARIANTS),
        judge=one_of(SC_JUDGES),
    resources:
        **analysis_resources(),
    params:
        code=code_of(safety_calibration.write_response_sra),
        threshold=SC["threshold"],
        verdicts=SC_VERDICTS,
    run:
        call(
            safety_calibration.write_response_sra,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule safety_responses_table:
    input:
        pieces=_sc_response_pieces,
    output:
        **table_outputs("safety_responses"),
    log:
        **job_logs("tables", "safety_responses"),
    localrule: True
    params:
        code=code_of(safety_report.assemble_safety_responses),
    run:
        call(
            safety_report.assemble_safety_responses,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule safety_judges_table:
    input:
        judgements=[SC_LABELLED_JUDGED.format(judge=j) for j in SC_MODEL_JUDGES],
    output:
        **table_outputs("safety_judges"),
    log:
        **job_logs("tables", "safety_judges"),
    localrule: True
    params:
        code=code_of(safety_report.write_judges_table),
        labelled=untracked(SC_LABELLED),
        depends_on={"labelled": file_key(SC_LABELLED)},
        judges=SC_MODEL_JUDGES,
        backends={j: config["models"][j]["backend"] for j in SC_MODEL_JUDGES},
    run:
        call(safety_report.write_judges_table, input, output, params, wildcards, log)


rule safety_calibration_table:
    input:
        pieces=_sc_pieces,
    output:
        **table_outputs("safety_calibration"),
    log:
        **job_logs("tables", "safety_calibration"),
    localrule: True
    params:
        code=code_of(safety_report.assemble_safety_calibration),
    run:
        call(
            safety_report.assemble_safety_calibration,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule safety_calibration_scatter:
    input:
        table="results/tables/safety_calibration.parquet",
    output:
        figure=figure_output(
            "safety_calibration_{dataset}.png", "safety_calibration_scatter.rst"
        ),
    log:
        **job_logs("figures", "safety_calibration", "{dataset}"),
    localrule: True
    params:
        code=code_of(safety_figures.write_sra_scatter),
        method=SC["scatter_method"],
        verdicts=SC_VERDICTS,
    run:
        call(safety_figures.write_sra_scatter, input, output, params, wildcards, log)


rule safety_tradeoff:
    input:
        caches=sorted(
            {
                e[key]
                for e in _sc_tradeoff_entries()
                for key in (
                    "scores",
                    "helpfulness",
                    "multiple_choice",
                    "multiple_choice_manifest",
                    "manifest",
                    "helpfulness_manifest",
                )
                if key in e
            }
        ),
    output:
        **table_outputs("safety_tradeoff"),
    log:
        **job_logs("tables", "safety_tradeoff"),
    localrule: True
    params:
        code=code_of(safety_report.write_tradeoff_tables),
        entries=_sc_tradeoff_entries(),
        threshold=SC["threshold"],
        n_bins=config["analysis"]["ece_bins"],
    run:
        call(safety_report.write_tradeoff_tables, input, output, params, wildcards, log)


rule safety_pareto:
    input:
        tradeoff="results/tables/safety_tradeoff.parquet",
    output:
        figure=figure_output("safety_pareto.png", "safety_pareto.rst"),
    log:
        **job_logs("figures", "safety_pareto"),
    localrule: True
    params:
        code=code_of(safety_figures.write_pareto_figure),
    run:
        call(safety_figures.write_pareto_figure, input, output, params, wildcards, log)
