# UnSAF section 5 (issue 29): uncertainty-aware distillation. Each teacher's self-assessment run
# becomes training data per strategy; each student gets a LoRA adapter per (teacher, strategy);
# the base student and each adapter ("arms") are evaluated on held-out images (self-assessment)
# and for object hallucination (POPE, CHAIR). Model steps of students with GPUs run through the
# adapter script in their own process and conda environment; CPU students run in the workers.
from prompt_reliability.analysis import distillation_data, distillation_scores
from prompt_reliability.analysis import self_assessment_scores as distil_sa_scores
from prompt_reliability.data import object_scenes
from prompt_reliability.report import distillation_tables


wildcard_constraints:
    student=one_of(DIST_STUDENTS),
    teacher=one_of(DIST_TEACHERS),
    strategy="qa|iq|joint",
    arm=one_of(DIST_ARMS),


# DIST_HOW_TO_TRAIN (common.smk): untracked, so changing them re-trains nothing
DIST_EVAL = f"{DIST_DIR}/eval/{{student}}/{{arm}}"
# which images are held out for the students' evaluation (the training data leaves them out)
DIST_IMAGE_SPLIT = dict(
    images=DIST["images"], heldout_fraction=DIST["heldout_fraction"], seed=DIST["seed"]
)
# The students' model steps (common.smk, ModelStep): students with GPUs in the GPU rules.
DIST_STEP = dict(
    on=("student", DIST_STUDENTS), gpu=DIST_GPU_STUDENTS, resources=student_resources()
)
# what a student arm's evaluation reads (self-assessment on the held-out images); the
# self-assessment prompt file is keyed by content, not an input (its path differs between clones)
DIST_EVALUATION = dict(
    model_config=student_config,
    evaluation=DIST["evaluation"],
    setting=DIST["setting"],
    prompts=untracked(SA_PROMPTS),
    depends_on={"prompts": file_key(SA_PROMPTS)},
)
DISTILLATION_TRAIN = ModelStep(
    "prompt_reliability.scoring.distillation:train_adapter",
    inputs=distillation_student_inputs,
    named_inputs={"data": f"{DIST_DIR}/data/{{teacher}}/{{strategy}}.parquet"},
    output={
        "adapter": directory(
            f"{DIST_DIR}/adapters/{{student}}/{{teacher}}/{{strategy}}"
        ),
        "curve": f"{DIST_DIR}/training/{{student}}/{{teacher}}/{{strategy}}.json",
    },
    log=job_logs("distillation", "train", "{student}", "{teacher}", "{strategy}"),
    **DIST_STEP,
    params=dict(
        model_config=student_config,
        training={
            k: v for k, v in DIST["training"].items() if k not in DIST_HOW_TO_TRAIN
        },
        running=untracked_settings({k: DIST["training"][k] for k in DIST_HOW_TO_TRAIN}),
        checkpoints=distillation_checkpoints,
    ),
)
DISTILLATION_GENERATE = ModelStep(
    "prompt_reliability.scoring.student_inference:student_generate",
    inputs=distillation_arm_inputs,
    named_inputs={
        "heldout": f"{DIST_DIR}/heldout_images.parquet",
        "scenes": f"{DIST_DIR}/hallucination/scenes.parquet",
        "probes": f"{DIST_DIR}/hallucination/pope_probes.parquet",
    },
    output={
        "generations": f"{DIST_EVAL}/generations.parquet",
        "pope": f"{DIST_EVAL}/pope.parquet",
        "captions": f"{DIST_EVAL}/captions.parquet",
    },
    log=job_logs("distillation", "eval", "{student}", "{arm}", "generate"),
    **DIST_STEP,
    params=dict(
        **DIST_EVALUATION,
        k=SA["k"],
        caption_prompt=DIST["hallucination"]["caption_prompt"],
    ),
)
DISTILLATION_ANSWER = ModelStep(
    "prompt_reliability.scoring.student_inference:student_answer",
    inputs=distillation_arm_inputs,
    named_inputs={
        "questions": f"{DIST_EVAL}/questions.parquet",
    },
    output={"answers": f"{DIST_EVAL}/answers.parquet"},
    log=job_logs("distillation", "eval", "{student}", "{arm}", "answer"),
    **DIST_STEP,
    params=dict(
        **DIST_EVALUATION,
        variant=DIST["variant"],
    ),
)


rule distillation_tiny_student:
    output:
        folder=directory(f"{DIST_DIR}/students/{{student}}"),
    log:
        **job_logs("distillation", "{student}", "tiny"),
    resources:
        **analysis_resources(),
    params:
        tiny=lambda w: DIST["students"][w.student]["tiny"],
    run:
        call(
            "prompt_reliability.scoring.tiny_models:write_tiny_model",
            None,
            output,
            params,
            {"model": wildcards.student},
            log,
            torch_threads=1,
        )


# Distillation data reads the manifest's sample inputs: keyed on them (common.smk, "Keys"), not on
# the file, so a corrected label re-trains no student.
rule distillation_heldout:
    output:
        heldout=f"{DIST_DIR}/heldout_images.parquet",
    log:
        **job_logs("distillation", "heldout"),
    localrule: True
    params:
        **DIST_IMAGE_SPLIT,
        code=code_of(distillation_data.write_heldout_images),
        manifest=untracked(manifest_path(DIST_DATASET)),
        depends_on=manifest_keys([DIST_DATASET], "samples", "order"),
    run:
        call(distillation_data.write_heldout_images, input, output, params, None, log)


rule distillation_scenes:
    input:
        objects=(  # a source file: its mtime is ignored (a clone), its content keyed
            [ancient(DIST["hallucination"]["objects"])]
            if DIST["hallucination"]["objects"]
            else []
        ),
    output:
        scenes=f"{DIST_DIR}/hallucination/scenes.parquet",
        probes=f"{DIST_DIR}/hallucination/pope_probes.parquet",
    log:
        **job_logs("distillation", "scenes"),
    localrule: True
    params:
        image_dir=untracked(f"{DIST_DIR}/hallucination/images"),
        n=DIST["hallucination"]["scenes"],
        seed=DIST["hallucination"]["seed"],
        image_size=DIST["hallucination"]["image_size"],
        objects_file=DIST["hallucination"]["objects"],
        depends_on=(
            {"objects": file_key(DIST["hallucination"]["objects"])}
            if DIST["hallucination"]["objects"]
            else {}
        ),
    run:
        call(object_scenes.write_object_scenes, None, output, params, None, log)


rule distillation_data:
    input:
        questions=f"results/self_assessment/{{teacher}}/{DIST_DATASET}/{DIST['setting']}/questions.parquet",
        answers=f"results/self_assessment/{{teacher}}/{DIST_DATASET}/{DIST['setting']}/answers.parquet",
    output:
        data=f"{DIST_DIR}/data/{{teacher}}/{{strategy}}.parquet",
    log:
        **job_logs("distillation", "data", "{teacher}", "{strategy}"),
    localrule: True
    params:
        **DIST_IMAGE_SPLIT,
        code=code_of(distillation_data.write_distillation_data),
        manifest=untracked(manifest_path(DIST_DATASET)),
        prompts=untracked(SA_PROMPTS),
        depends_on=lambda w: {
            **manifest_keys([DIST_DATASET], "samples", "order")(w),
            "prompts": file_key(SA_PROMPTS),
        },
        setting=DIST["setting"],
        k=SA["k"],
        variant=DIST["variant"],
    run:
        call(
            distillation_data.write_distillation_data,
            input,
            output,
            params,
            wildcards,
            log,
        )


rule distillation_train:
    input:
        unpack(DISTILLATION_TRAIN.inputs),
        **DISTILLATION_TRAIN.named_inputs,
    output:
        **DISTILLATION_TRAIN.output,
    log:
        **DISTILLATION_TRAIN.log,
    wildcard_constraints:
        **DISTILLATION_TRAIN.cpu_constraints,
    resources:
        **DISTILLATION_TRAIN.resources,
    params:
        **DISTILLATION_TRAIN.params,
    run:
        call(
            DISTILLATION_TRAIN.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule distillation_train_gpu:
    input:
        unpack(DISTILLATION_TRAIN.inputs),
        **DISTILLATION_TRAIN.named_inputs,
    output:
        **DISTILLATION_TRAIN.output,
    log:
        **DISTILLATION_TRAIN.log,
    wildcard_constraints:
        **DISTILLATION_TRAIN.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **DISTILLATION_TRAIN.resources,
    params:
        **DISTILLATION_TRAIN.gpu_params,
    script:
        GPU_ADAPTER


rule distillation_generate:
    input:
        unpack(DISTILLATION_GENERATE.inputs),
        **DISTILLATION_GENERATE.named_inputs,
    output:
        **DISTILLATION_GENERATE.output,
    log:
        **DISTILLATION_GENERATE.log,
    wildcard_constraints:
        **DISTILLATION_GENERATE.cpu_constraints,
    resources:
        **DISTILLATION_GENERATE.resources,
    params:
        **DISTILLATION_GENERATE.params,
    run:
        call(
            DISTILLATION_GENERATE.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule distillation_generate_gpu:
    input:
        unpack(DISTILLATION_GENERATE.inputs),
        **DISTILLATION_GENERATE.named_inputs,
    output:
        **DISTILLATION_GENERATE.output,
    log:
        **DISTILLATION_GENERATE.log,
    wildcard_constraints:
        **DISTILLATION_GENERATE.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **DISTILLATION_GENERATE.resources,
    params:
        **DISTILLATION_GENERATE.gpu_params,
    script:
        GPU_ADAPTER


rule distillation_questions:
    input:
        generations=f"{DIST_EVAL}/generations.parquet",
    output:
        questions=f"{DIST_EVAL}/questions.parquet",
        parse_report=f"{DIST_EVAL}/parse_report.parquet",
    log:
        **job_logs("distillation", "eval", "{student}", "{arm}", "questions"),
    localrule: True
    params:
        code=code_of(distil_sa_scores.write_questions),
        k=SA["k"],
    run:
        call(distil_sa_scores.write_questions, input, output, params, None, log)


rule distillation_answer:
    input:
        unpack(DISTILLATION_ANSWER.inputs),
        **DISTILLATION_ANSWER.named_inputs,
    output:
        **DISTILLATION_ANSWER.output,
    log:
        **DISTILLATION_ANSWER.log,
    wildcard_constraints:
        **DISTILLATION_ANSWER.cpu_constraints,
    resources:
        **DISTILLATION_ANSWER.resources,
    params:
        **DISTILLATION_ANSWER.params,
    run:
        call(
            DISTILLATION_ANSWER.function,
            input,
            output,
            params,
            wildcards,
            log,
            torch_threads=resources.cpus_per_task,
        )


rule distillation_answer_gpu:
    input:
        unpack(DISTILLATION_ANSWER.inputs),
        **DISTILLATION_ANSWER.named_inputs,
    output:
        **DISTILLATION_ANSWER.output,
    log:
        **DISTILLATION_ANSWER.log,
    wildcard_constraints:
        **DISTILLATION_ANSWER.gpu_constraints,
    conda:
        INFERENCE_ENV
    resources:
        **DISTILLATION_ANSWER.resources,
    params:
        **DISTILLATION_ANSWER.gpu_params,
    script:
        GPU_ADAPTER


rule distillation_scores:
    input:
        answers=f"{DIST_EVAL}/answers.parquet",
        parse_report=f"{DIST_EVAL}/parse_report.parquet",
        pope=f"{DIST_EVAL}/pope.parquet",
        captions=f"{DIST_EVAL}/captions.parquet",
        scenes=f"{DIST_DIR}/hallucination/scenes.parquet",
    output:
        score=f"{DIST_EVAL}/score.parquet",
    log:
        **job_logs("distillation", "eval", "{student}", "{arm}", "score"),
    localrule: True
    params:
        code=code_of(distillation_scores.write_arm_scores),
        teacher=lambda w: None if w.arm == "base" else w.arm.split("/")[0],
        strategy=lambda w: "baseline" if w.arm == "base" else w.arm.split("/")[1],
        variant=DIST["variant"],
    run:
        call(
            distillation_scores.write_arm_scores,
            input,
            output,
            params,
            {"student": wildcards.student},
            log,
        )


rule distillation_table:
    input:
        pieces=[
            f"{DIST_DIR}/eval/{s}/{a}/score.parquet"
            for s in DIST_STUDENTS
            for a in DIST_ARMS
        ],
    output:
        **table_outputs("distillation"),
    log:
        **job_logs("tables", "distillation"),
    localrule: True
    params:
        code=code_of(distillation_tables.write_distillation_table),
    run:
        call(
            distillation_tables.write_distillation_table,
            input,
            output,
            params,
            None,
            log,
        )


rule distillation_figures:
    input:
        table=table_paths("distillation")[0],
        curves=[
            f"{DIST_DIR}/training/{s}/{t}/{g}.json"
            for s in DIST_STUDENTS
            for t in DIST_TEACHERS
            for g in DIST_STRATEGIES
        ],
    output:
        unf1=figure_output("distillation/unf1.png", "distillation_unf1.rst"),
        answer_types=figure_output(
            "distillation/answer_types.png", "distillation_answer_types.rst"
        ),
        hallucination=figure_output(
            "distillation/hallucination.png", "distillation_hallucination.rst"
        ),
        loss=figure_output("distillation/training_loss.png", "distillation_loss.rst"),
    log:
        **job_logs("figures", "distillation"),
    localrule: True
    params:
        code=code_of(distillation_tables.write_distillation_figures),
    run:
        call(
            distillation_tables.write_distillation_figures,
            input,
            output,
            params,
            None,
            log,
        )
