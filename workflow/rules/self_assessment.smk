# UnSAF self-assessment (issue 15): stage 1 question generation and stage 2 answering (one job each
# per model x dataset x setting: hf models in torch, served models as requests from a CPU worker),
# parsing, UnF1, and which metrics rank models stably.
from prompt_reliability.base.jobs import call
from prompt_reliability.analysis import (
    self_assessment_findings,
    self_assessment_imports,
    self_assessment_scores,
    self_assessment_simulation,
)
from prompt_reliability.report import self_assessment_tables
from prompt_reliability.scoring import self_assessment_inference
from prompt_reliability.report.figures import (
    self_assessment as self_assessment_figures,
)

# (SA_* names and helpers: common.smk; the block is checked with the config there)


SA_RUN = "results/self_assessment/{model}/{dataset}/{setting}"
SA_SETTING = {"setting": one_of(SA_ALL_SETTINGS)}
# a run of a model that writes text (hf or served): its parsing and scores
SA_GEN_RUN = {"model": one_of(SA_GEN_MODELS), **SA_SETTING}
SA_SERVED_RUN = {"model": one_of(SA_SERVED_MODELS), **SA_SETTING}
# what stage 1 is keyed on besides the model and settings: the prompts and the samples it sees
SA_GENERATE_KEYS = dict(
    manifest=lambda w: untracked(manifest_path(w.dataset)),
    prompts=untracked(SA_PROMPTS),
    depends_on=sa_keys,
)
# stage 2 reads the questions: keyed on the prompts only
SA_ANSWER_KEYS = dict(
    prompts=untracked(SA_PROMPTS),
    depends_on={"prompts": file_key(SA_PROMPTS)},
)
# a served model's two stages: what shapes its requests, how they reach the server, the settings they
# read (no batch size: the server batches) and the cache of answered requests, shared by both stages
SA_SERVED = dict(
    model_config=lambda w: served_request_config(w.model),
    connection=lambda w: served_connection(w.model),
    settings=sa_served_settings(),
    request_cache=lambda w: served_request_cache(
        w.model, "self_assessment", w.dataset, w.setting
    ),
)
# an hf model's two stages (common.smk, ModelStep): one job per model x dataset x setting, the model's
# config (path resolved) and the self-assessment settings they read
SA_HF_STEP = dict(
    on=("model", SA_HF_MODELS), constraints=SA_SETTING, resources=scoring_resources()
)
SA_HF_SETTINGS = dict(
    model_config=lambda w: hf_model_config(w.model), settings=sa_settings()
)
SELF_ASSESSMENT_GENERATE = ModelStep(
    "prompt_reliability.scoring.self_assessment_inference:generate_questions",
    inputs=sa_model_inputs,
    output={"generations": f"{SA_RUN}/generations.parquet"},
    log=job_logs("self_assessment", "{model}", "{dataset}", "{setting}", "generate"),
    **SA_HF_STEP,
    params=dict(
        **SA_HF_SETTINGS,
        **SA_GENERATE_KEYS,
    ),
)
SELF_ASSESSMENT_ANSWER = ModelStep(
    "prompt_reliability.scoring.self_assessment_inference:answer_questions",
    named_inputs={
        "questions": f"{SA_RUN}/questions.parquet",
        "model_dir": lambda w: (
            [tiny_model_folder(w.model)] if w.model in TINY_MODELS else []
        ),
    },
    output={"answers": f"{SA_RUN}/answers.parquet"},
    log=job_logs("self_assessment", "{model}", "{dataset}", "{setting}", "answer"),
    **SA_HF_STEP,
    params=dict(
        **SA_HF_SETTINGS,
        **SA_ANSWER_KEYS,
    ),
)


rule self_assessment_generate:
    input:
        unpack(SELF_ASSESSMENT_GENERATE.inputs),
        **SELF_ASSESSMENT_GENERATE.named_inputs,
    output:
        **SELF_ASSESSMENT_GENERATE.output,
    log:
        **SELF_ASSESSMENT_GENERATE.log,
    wildcard_constraints:
        **SELF_ASSESSMENT_GENERATE.cpu_constraints,
    resources:
        **SELF_ASSESSMENT_GENERATE.resources,
    params:
        **SELF_ASSESSMENT_GENERATE.params,
    run:
        call(
            SELF_ASSESSMENT_GENERATE.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule self_assessment_generate_gpu:
    input:
        unpack(SELF_ASSESSMENT_GENERATE.inputs),
        **SELF_ASSESSMENT_GENERATE.named_inputs,
    output:
        **SELF_ASSESSMENT_GENERATE.output,
    log:
        **SELF_ASSESSMENT_GENERATE.log,
    wildcard_constraints:
        **SELF_ASSESSMENT_GENERATE.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **SELF_ASSESSMENT_GENERATE.resources,
    params:
        **SELF_ASSESSMENT_GENERATE.gpu_params,
    script:
        GPU_ADAPTER


rule self_assessment_answer:
    input:
        unpack(SELF_ASSESSMENT_ANSWER.inputs),
        **SELF_ASSESSMENT_ANSWER.named_inputs,
    output:
        **SELF_ASSESSMENT_ANSWER.output,
    log:
        **SELF_ASSESSMENT_ANSWER.log,
    wildcard_constraints:
        **SELF_ASSESSMENT_ANSWER.cpu_constraints,
    resources:
        **SELF_ASSESSMENT_ANSWER.resources,
    params:
        **SELF_ASSESSMENT_ANSWER.params,
    run:
        call(
            SELF_ASSESSMENT_ANSWER.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule self_assessment_answer_gpu:
    input:
        unpack(SELF_ASSESSMENT_ANSWER.inputs),
        **SELF_ASSESSMENT_ANSWER.named_inputs,
    output:
        **SELF_ASSESSMENT_ANSWER.output,
    log:
        **SELF_ASSESSMENT_ANSWER.log,
    wildcard_constraints:
        **SELF_ASSESSMENT_ANSWER.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **SELF_ASSESSMENT_ANSWER.resources,
    params:
        **SELF_ASSESSMENT_ANSWER.gpu_params,
    script:
        GPU_ADAPTER


# A served model's two stages: requests from a CPU worker (call), each answered request cached in
# results/served/<model>/self_assessment/<dataset>/<setting>.jsonl, so a killed job resumes with
# exactly the requests it lacks.
rule self_assessment_generate_served:
    output:
        **SELF_ASSESSMENT_GENERATE.output,
    log:
        **SELF_ASSESSMENT_GENERATE.log,
    wildcard_constraints:
        **SA_SERVED_RUN,
    localrule: True  # requests: where Snakemake runs (reaches the server; compute nodes may lack internet)
    params:
        **SA_GENERATE_KEYS,
        **SA_SERVED,
    run:
        call(
            self_assessment_inference.generate_questions,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule self_assessment_answer_served:
    input:
        questions=f"{SA_RUN}/questions.parquet",
    output:
        **SELF_ASSESSMENT_ANSWER.output,
    log:
        **SELF_ASSESSMENT_ANSWER.log,
    wildcard_constraints:
        **SA_SERVED_RUN,
    localrule: True  # requests: where Snakemake runs (reaches the server; compute nodes may lack internet)
    params:
        **SA_ANSWER_KEYS,
        **SA_SERVED,
    run:
        call(
            self_assessment_inference.answer_questions,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule self_assessment_questions:
    input:
        generations=f"{SA_RUN}/generations.parquet",
    output:
        questions=f"{SA_RUN}/questions.parquet",
        parse_report=f"{SA_RUN}/parse_report.parquet",
    log:
        **job_logs("self_assessment", "{model}", "{dataset}", "{setting}", "questions"),
    wildcard_constraints:
        **SA_GEN_RUN,
    localrule: True
    params:
        code=code_of(self_assessment_scores.write_questions),
        k=SA["k"],
    run:
        call(self_assessment_scores.write_questions, input, output, params, None, log)


rule self_assessment_scores:
    input:
        answers=f"{SA_RUN}/answers.parquet",
        parse_report=f"{SA_RUN}/parse_report.parquet",
    output:
        scores=f"{SA_RUN}/scores.parquet",
    log:
        **job_logs("self_assessment", "{model}", "{dataset}", "{setting}", "scores"),
    wildcard_constraints:
        **SA_GEN_RUN,
    localrule: True
    params:
        code=code_of(self_assessment_scores.write_scores),
        variants=SA["variants"],
    run:
        call(self_assessment_scores.write_scores, input, output, params, wildcards, log)


# The simulator picks the dataset's images (never its labels): keyed on the sample inputs.
rule self_assessment_simulate:
    output:
        generations=sa_setting_files("generations.parquet"),
        questions=sa_setting_files("questions.parquet"),
        parse_report=sa_setting_files("parse_report.parquet"),
        answers=sa_setting_files("answers.parquet"),
        scores=sa_setting_files("scores.parquet"),
        task="results/self_assessment/{model}/{dataset}/task.parquet",
    log:
        **job_logs("self_assessment", "{model}", "{dataset}", "simulate"),
    wildcard_constraints:
        model=one_of(SA_SIM_MODELS),
    localrule: True
    params:
        code=code_of(self_assessment_simulation.simulate_run),
        manifest=lambda w: untracked(manifest_path(w.dataset)),
        depends_on=manifest_keys(lambda w: [w.dataset], "samples", "order"),
        profile=lambda w: SA["simulate"][w.model],
        simulation=SA["simulation"],
        settings=SA_SETTINGS,
        images=SA["images"],
        k=SA["k"],
        variants=SA["variants"],
        ece_bins=config["analysis"]["ece_bins"],
    run:
        call(
            self_assessment_simulation.simulate_run,
            input,
            output,
            params,
            wildcards,
            log,
        )


# Answers produced elsewhere: a source file, its mtime ignored (a clone), its content keyed.
rule self_assessment_import:
    input:
        source=lambda w: ancient(SA_IMPORTS[w.name]),
    output:
        scores="results/self_assessment/imported/{name}/scores.parquet",
        answers="results/self_assessment/imported/{name}/answers.parquet",
    log:
        **job_logs("self_assessment", "imported", "{name}"),
    wildcard_constraints:
        name=one_of(list(SA_IMPORTS)),
    localrule: True
    params:
        code=code_of(self_assessment_imports.import_answers),
        depends_on=lambda w: {"source": file_key(SA_IMPORTS[w.name])},
        ece_bins=config["analysis"]["ece_bins"],
    run:
        call(self_assessment_imports.import_answers, input, output, params, None, log)


rule self_assessment_table:
    input:
        pieces=sa_run_files("scores.parquet") + sa_import_files("scores.parquet"),
    output:
        **table_outputs("self_assessment"),
    log:
        **job_logs("tables", "self_assessment"),
    localrule: True
    params:
        code=code_of(self_assessment_tables.write_self_assessment_table),
    run:
        call(
            self_assessment_tables.write_self_assessment_table,
            input,
            output,
            params,
            None,
            log,
        )


rule self_assessment_figure:
    input:
        table="results/tables/self_assessment.parquet",
    output:
        figure=figure_output(
            "self_assessment/answer_types.png", "self_assessment_figure.rst"
        ),
    log:
        **job_logs("figures", "self_assessment"),
    localrule: True
    params:
        code=code_of(self_assessment_figures.write_answer_types),
    run:
        call(
            self_assessment_figures.write_answer_types,
            input,
            output,
            params,
            None,
            log,
        )


rule metric_stability:
    input:
        reliability=per_pair(
            "results/analysis/{model}/{dataset}/{split}/reliability.parquet"
        ),
        self_assessment="results/tables/self_assessment.parquet",
    output:
        **table_outputs("metric_stability"),
    log:
        **job_logs("tables", "metric_stability"),
    localrule: True
    params:
        code=code_of(self_assessment_tables.write_ranking_stability),
        models=SA["stability"]["models"],
    run:
        call(
            self_assessment_tables.write_ranking_stability,
            input,
            output,
            params,
            None,
            log,
        )


rule metric_stability_figure:
    input:
        table="results/tables/metric_stability.parquet",
    output:
        figure=figure_output(
            "self_assessment/metric_stability.png", "metric_stability_figure.rst"
        ),
    log:
        **job_logs("figures", "metric_stability"),
    localrule: True
    params:
        code=code_of(self_assessment_figures.write_footrule_heatmap),
    run:
        call(
            self_assessment_figures.write_footrule_heatmap,
            input,
            output,
            params,
            None,
            log,
        )


rule metric_sample_size:
    input:
        matrices=[
            f"results/matrix/{p['model']}/{p['dataset']}.parquet" for p in SA_PAIRS
        ],
        locks=[f"results/lock/{p['model']}.json" for p in SA_PAIRS],
        answers=sa_run_files("answers.parquet"),
        imported=sa_import_files("answers.parquet"),
        tasks=[
            f"results/self_assessment/{r['model']}/{r['dataset']}/task.parquet"
            for r in SA_TASK_RUNS
        ],
    output:
        **table_outputs("metric_sample_size"),
    log:
        **job_logs("tables", "metric_sample_size"),
    localrule: True
    params:
        code=code_of(self_assessment_tables.write_sample_size),
        pairs=SA_PAIRS,
        runs=SA_RUNS,
        task_runs=SA_TASK_RUNS,
        stability=SA["stability"],
        analysis=analysis_params("ece_bins", "eps"),
    run:
        call(self_assessment_tables.write_sample_size, input, output, params, None, log)


rule metric_sample_size_figure:
    input:
        table="results/tables/metric_sample_size.parquet",
    output:
        figure=figure_output(
            "self_assessment/metric_sample_size.png", "metric_sample_size_figure.rst"
        ),
    log:
        **job_logs("figures", "metric_sample_size"),
    localrule: True
    params:
        code=code_of(self_assessment_figures.write_sample_size_figure),
    run:
        call(
            self_assessment_figures.write_sample_size_figure,
            input,
            output,
            params,
            None,
            log,
        )


rule self_assessment_findings:
    input:
        self_assessment="results/tables/self_assessment.parquet",
        stability="results/tables/metric_stability.parquet",
        sample_size="results/tables/metric_sample_size.parquet",
    output:
        **table_outputs("self_assessment_findings"),
    log:
        **job_logs("tables", "self_assessment_findings"),
    localrule: True
    params:
        code=code_of(self_assessment_findings.write_findings),
        scales=SA_SCALES,
        instruction_pairs=SA["instruction_pairs"],
    run:
        call(
            self_assessment_findings.write_findings,
            input,
            output,
            params,
            None,
            log,
        )


rule self_assessment_findings_figures:
    input:
        table="results/tables/self_assessment.parquet",
    output:
        instruction=figure_output(
            "self_assessment/instruction_tuning.png", "self_assessment_instruction.rst"
        ),
        prompt_variants=figure_output(
            "self_assessment/prompt_variants.png",
            "self_assessment_prompt_variants.rst",
        ),
        scale=figure_output("self_assessment/scale.png", "self_assessment_scale.rst"),
    log:
        **job_logs("figures", "self_assessment_findings"),
    localrule: True
    params:
        code=code_of(self_assessment_figures.write_findings_figures),
        scales=SA_SCALES,
        instruction_pairs=SA["instruction_pairs"],
    run:
        call(
            self_assessment_figures.write_findings_figures,
            input,
            output,
            params,
            None,
            log,
        )
