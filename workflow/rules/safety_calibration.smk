# Safety calibration (issue 14, VSCBench): over- vs under-safety per category, test-time
# calibration variants (few-shot, activation steering, response mode) and their cost in helpfulness.
import os

from prompt_reliability.base.jobs import call
from prompt_reliability.data.prompts import load_registry as _sc_load_registry
from prompt_reliability.data.prompts import prompts_by_family
from prompt_reliability.scoring.variants import variant_names
from prompt_reliability.analysis import safety_calibration
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
        **job_logs("safety_calibration", "sra", "{model}", "{dataset}", "{split}"),
    group:
        PAIR_GROUP
    resources:
        **analysis_resources(),
    params:
        threshold=SC["threshold"],
        verdicts=SC_VERDICTS,
        families=prompts_by_family(FAMILY_OF),
    run:
        call(safety_calibration.write_safety_sra, input, output, params, wildcards, log)


SAFETY_STEERING_VECTORS_PARAMS = dict(
    model_config=lambda w: hf_model_config(w.model),
    prompt_dir=untracked(PROMPT_DIR),
    families=config["prompts"],
    family=SC["family"],
    prompt_format=config["prompt_format"],
    split=SC_LOCK["split"],
    layers=SC["steering"]["layers"],
    dataset=SC_LOCK["dataset"],
)


rule safety_steering_vectors:
    input:
        unpack(lambda w: _sc_model_dir(w.model)),
        manifest=f"results/data/{SC_LOCK['dataset']}.parquet",
        prompt_file=os.path.join(PROMPT_DIR, f"{SC['family']}.yaml"),
    output:
        vectors=os.path.join(SC_DIR, "steering/{model}.safetensors"),
    log:
        **job_logs("safety_calibration", "steering", "{model}"),
    wildcard_constraints:
        model=cpu_models(SC_MODELS),
    resources:
        **scoring_resources(),
    params:
        **SAFETY_STEERING_VECTORS_PARAMS,
    run:
        call(
            "prompt_reliability.scoring.steering_vectors:write_steering_vectors",
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_steering_vectors_gpu:
    input:
        unpack(lambda w: _sc_model_dir(w.model)),
        manifest=f"results/data/{SC_LOCK['dataset']}.parquet",
        prompt_file=os.path.join(PROMPT_DIR, f"{SC['family']}.yaml"),
    output:
        vectors=os.path.join(SC_DIR, "steering/{model}.safetensors"),
    log:
        **job_logs("safety_calibration", "steering", "{model}"),
    wildcard_constraints:
        model=gpu_models(SC_MODELS),
    conda:
        INFERENCE_ENV
    resources:
        **scoring_resources(),
    params:
        **SAFETY_STEERING_VECTORS_PARAMS,
        function="prompt_reliability.scoring.steering_vectors:write_steering_vectors",
    script:
        GPU_ADAPTER


# One job per (model, variant) scores every dataset it needs: the evaluation datasets with the
# calibration family, the helpfulness set with its yes/no family (torch loads once per job).
SAFETY_VARIANT_SCORES_PARAMS = dict(
    model_config=lambda w: hf_model_config(w.model),
    datasets=[_sc_scored_spec(d) for d in SC_SCORED],
    prompt_format=config["prompt_format"],
    work_dir=os.path.join(SC_DIR, "chunks"),
    few_shot=SC_FEW_SHOT,
    prompting=SC_PROMPTING,
)


rule safety_variant_scores:
    input:
        unpack(_sc_variant_inputs),
    output:
        scores=[
            os.path.join(SC_DIR, "scores/{model}/{variant}/") + f"{d}.parquet"
            for d in SC_SCORED
        ],
    log:
        **job_logs("safety_calibration", "scores", "{model}", "{variant}"),
    wildcard_constraints:
        model=cpu_models(SC_MODELS),
        variant=one_of(SC_VARIANTS),
    resources:
        **scoring_resources(),
    params:
        **SAFETY_VARIANT_SCORES_PARAMS,
    run:
        call(
            "prompt_reliability.scoring.variants:score_variant_datasets",
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_variant_scores_gpu:
    input:
        unpack(_sc_variant_inputs),
    output:
        scores=[
            os.path.join(SC_DIR, "scores/{model}/{variant}/") + f"{d}.parquet"
            for d in SC_SCORED
        ],
    log:
        **job_logs("safety_calibration", "scores", "{model}", "{variant}"),
    wildcard_constraints:
        model=gpu_models(SC_MODELS),
        variant=one_of(SC_VARIANTS),
    conda:
        INFERENCE_ENV
    resources:
        **scoring_resources(),
    params:
        **SAFETY_VARIANT_SCORES_PARAMS,
        function="prompt_reliability.scoring.variants:score_variant_datasets",
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


SAFETY_RESPONSES_PARAMS = dict(
    model_config=lambda w: hf_model_config(w.model),
    max_new_tokens=SC["responses"]["max_new_tokens"],
    splits=lambda w: _sc_splits(w.dataset),
)


rule safety_responses:
    input:
        unpack(lambda w: _sc_model_dir(w.model)),
        manifest="results/data/{dataset}.parquet",
    output:
        responses=os.path.join(SC_DIR, "responses/{model}/{dataset}.parquet"),
    log:
        **job_logs("safety_calibration", "responses", "{model}", "{dataset}"),
    wildcard_constraints:
        model=cpu_models(SC_MODELS),
    resources:
        **scoring_resources(),
    params:
        **SAFETY_RESPONSES_PARAMS,
    run:
        call(
            "prompt_reliability.scoring.responses:write_responses",
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_responses_gpu:
    input:
        unpack(lambda w: _sc_model_dir(w.model)),
        manifest="results/data/{dataset}.parquet",
    output:
        responses=os.path.join(SC_DIR, "responses/{model}/{dataset}.parquet"),
    log:
        **job_logs("safety_calibration", "responses", "{model}", "{dataset}"),
    wildcard_constraints:
        model=gpu_models(SC_MODELS),
    conda:
        INFERENCE_ENV
    resources:
        **scoring_resources(),
    params:
        **SAFETY_RESPONSES_PARAMS,
        function="prompt_reliability.scoring.responses:write_responses",
    script:
        GPU_ADAPTER


SAFETY_MODEL_JUDGE_PARAMS = dict(
    judge=SC_JUDGE,
    judge_config=lambda w: hf_model_config(SC_JUDGE),
    prompt_dir=os.path.join(WORKFLOW_DIR, "prompts", "judge"),
    prompt_format=config["prompt_format"],
    work_dir=os.path.join(SC_DIR, "chunks/judge"),
)


rule safety_model_judge:
    input:
        responses=os.path.join(SC_DIR, "responses/{model}/{dataset}.parquet"),
        manifest="results/data/{dataset}.parquet",
        judge_dir=lambda w: (
            [tiny_model_folder(SC_JUDGE)] if SC_JUDGE in TINY_MODELS else []
        ),
    output:
        judge_manifest=os.path.join(
            SC_DIR, "responses/{model}/{dataset}.judge_items.parquet"
        ),
        judgement=os.path.join(SC_DIR, "responses/{model}/{dataset}.judgement.parquet"),
    log:
        **job_logs("safety_calibration", "judge", "{model}", "{dataset}"),
    wildcard_constraints:
        model=cpu_models(SC_MODELS),
    resources:
        **scoring_resources(),
    params:
        **SAFETY_MODEL_JUDGE_PARAMS,
    run:
        call(
            "prompt_reliability.scoring.responses:write_model_judgement",
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule safety_model_judge_gpu:
    input:
        responses=os.path.join(SC_DIR, "responses/{model}/{dataset}.parquet"),
        manifest="results/data/{dataset}.parquet",
        judge_dir=lambda w: (
            [tiny_model_folder(SC_JUDGE)] if SC_JUDGE in TINY_MODELS else []
        ),
    output:
        judge_manifest=os.path.join(
            SC_DIR, "responses/{model}/{dataset}.judge_items.parquet"
        ),
        judgement=os.path.join(SC_DIR, "responses/{model}/{dataset}.judgement.parquet"),
    log:
        **job_logs("safety_calibration", "judge", "{model}", "{dataset}"),
    wildcard_constraints:
        model=gpu_models(SC_MODELS),
    conda:
        INFERENCE_ENV
    resources:
        **scoring_resources(),
    params:
        **SAFETY_MODEL_JUDGE_PARAMS,
        function="prompt_reliability.scoring.responses:write_model_judgement",
    script:
        GPU_ADAPTER


rule safety_responses_sra:
    input:
        **(
            {
                "judgement": os.path.join(
                    SC_DIR, "responses/{model}/{dataset}.judgement.parquet"
                )
            }
            if SC_JUDGE != "string"
            else {}
        ),
        responses=os.path.join(SC_DIR, "responses/{model}/{dataset}.parquet"),
    output:
        table=os.path.join(SC_DIR, "{model}/{dataset}/{split}/responses_sra.parquet"),
    log:
        **job_logs(
            "safety_calibration", "responses_sra", "{model}", "{dataset}", "{split}"
        ),
    resources:
        **analysis_resources(),
    params:
        method=f"response:{SC_JUDGE}",
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


rule safety_calibration_table:
    input:
        pieces=_sc_pieces,
    output:
        **table_outputs("safety_calibration"),
    log:
        **job_logs("tables", "safety_calibration"),
    localrule: True
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
        figure=report(
            "results/figures/safety_calibration_{dataset}.png",
            caption="../report/safety_calibration_scatter.rst",
            category="Safety calibration",
        ),
    log:
        **job_logs("figures", "safety_calibration", "{dataset}"),
    localrule: True
    params:
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
                for key in ("scores", "helpfulness")
            }
        ),
    output:
        **table_outputs("safety_tradeoff"),
    log:
        **job_logs("tables", "safety_tradeoff"),
    localrule: True
    params:
        entries=_sc_tradeoff_entries(),
        threshold=SC["threshold"],
        n_bins=config["analysis"]["ece_bins"],
    run:
        call(safety_report.write_tradeoff_tables, input, output, params, wildcards, log)


rule safety_pareto:
    input:
        tradeoff="results/tables/safety_tradeoff.parquet",
    output:
        figure=report(
            "results/figures/safety_pareto.png",
            caption="../report/safety_pareto.rst",
            category="Safety calibration",
        ),
    log:
        **job_logs("figures", "safety_pareto"),
    localrule: True
    run:
        call(safety_figures.write_pareto_figure, input, output, params, wildcards, log)
