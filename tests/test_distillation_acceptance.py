"""The training is real: a tiny random student, taught by the simulated self-assessor, learns the teacher's
format and abstentions on its training images; the adapter-disabled and untrained-adapter controls do not.

This shows the pipeline works on CPU, not that distillation helps: the student is a random-weight
toy and the teacher a simulator.
"""

from __future__ import annotations

import time

import polars as pl
import pytest

from prompt_reliability.analysis.distillation_data import build_examples, strategy_examples
from prompt_reliability.analysis.self_assessment_scores import is_abstention, parse_questions, questions_table
from prompt_reliability.data.synthetic import generate_object_scenes
from prompt_reliability.scoring.self_assessment_inference import load_templates
from prompt_reliability.scoring.self_assessment_simulator import simulate_answers, simulate_generations

K = 2
PROFILE = {"params_b": 70.0, "public_scale": True, "well_formed": 1.0, "awareness": 3.0, "answer_bias": 0.0,
           "instruct": False, "skill": 0.0, "overconfidence": 0.0}
EFFECTS = {"scale": 0.0, "awareness_dataset_sd": 0.0, "instruction_timidity": 0.0, "prompt_shift": 0.0,
           "calibration_dataset_sd": 0.0}
TRAINING = {"epochs": 1, "max_steps": 300, "batch_size": 4, "learning_rate": 6e-3, "weight_decay": 0.0,
            "warmup_ratio": 0.05, "max_grad_norm": 1.0, "rank": 16, "alpha": 32, "dropout": 0.0,
            "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            "checkpoint_steps": 1000, "seed": 0}


def teacher_examples(tmp_path) -> pl.DataFrame:
    """The simulated teacher's two-stage run on 8 synthetic images -> UnD-Joint training examples."""
    images = generate_object_scenes("toy", 8, seed=1, image_dir=tmp_path).select("sample_id", "image_path")
    generations = simulate_generations(images, PROFILE, EFFECTS, model="teacher", dataset="toy", setting="open", k=K,
                                       seed=0)
    questions = questions_table(generations, K)
    answers = simulate_answers(questions, PROFILE, EFFECTS, model="teacher", dataset="toy", setting="open",
                               variants=["default"], seed=0, mc_answer_bias=0.0)
    examples = build_examples(questions, answers, load_templates("prompts/self_assessment/unsaf.yaml"), setting="open",
                              k=K, variant="default", heldout_fraction=1e-9, seed=0)
    return strategy_examples(examples, "joint")


def behaviour(generate, examples: pl.DataFrame, pictures) -> dict[str, float | list[str]]:
    """Parse rate of the IQ replies, TU share of the replies to unanswerable QA questions (and the replies)."""
    iq = examples.filter(pl.col("task") == "iq")
    qa = examples.filter((pl.col("task") == "qa") & (pl.col("kind") == "unanswerable"))
    iq_replies = generate([pictures[p] for p in iq["image_path"]], iq["instruction"].to_list())
    qa_replies = generate([pictures[p] for p in qa["image_path"]], qa["instruction"].to_list())
    parsed = sum(len(parse_questions(r, "open", K).questions) for r in iq_replies)
    return {"parse_rate": parsed / (K * iq.height), "tu_share": sum(map(is_abstention, qa_replies)) / qa.height,
            "replies": iq_replies + qa_replies}


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_distilled_student_follows_the_teacher(tmp_path, tiny_models):
    from PIL import Image

    from prompt_reliability.scoring.backends.hf import load_model
    from prompt_reliability.scoring.distillation import lora_model, train_lora
    from prompt_reliability.scoring.generation import HFGenerator

    examples = teacher_examples(tmp_path)
    pictures = {p: Image.open(p).convert("RGB") for p in examples["image_path"].unique()}
    qa_unanswerable = examples.filter((pl.col("task") == "qa") & (pl.col("kind") == "unanswerable"))
    teacher_tu = (qa_unanswerable["target"] == "unanswerable").mean()
    assert qa_unanswerable.height >= 8 and teacher_tu >= 0.5

    settings = {"path": str(tiny_models["qwen2_vl"]), "revision": None, "trust_remote_code": False,
                "dtype": "float32", "device_map": None}
    processor, student = load_model("student", settings)
    student.requires_grad_(False)
    before = behaviour(HFGenerator(processor, student, 96, 8), examples, pictures)

    started = time.perf_counter()
    distilled, summary = train_lora(student, processor, examples, TRAINING, tmp_path / "checkpoints")
    seconds = time.perf_counter() - started
    generate = HFGenerator(processor, distilled, 96, 8)
    after = behaviour(generate, examples, pictures)
    with distilled.disable_adapter():
        disabled = behaviour(generate, examples, pictures)
    processor, fresh = load_model("student", settings)
    untrained = behaviour(HFGenerator(processor, lora_model(fresh, TRAINING), 96, 8), examples, pictures)

    print(f"\nparse rate {before['parse_rate']:.2f} -> {after['parse_rate']:.2f}; TU share {before['tu_share']:.2f} -> "
          f"{after['tu_share']:.2f} (teacher {teacher_tu:.2f}); {summary['steps']} steps in {seconds:.1f} s "
          f"({summary['seconds_per_step']:.3f} s/step, {summary['threads']} thread(s)); loss "
          f"{summary['losses'][0][1]:.2f} -> {summary['losses'][-1][1]:.3f}; {examples.height} examples")
    assert before["parse_rate"] <= 0.1
    assert after["parse_rate"] >= 0.8
    assert after["tu_share"] - before["tu_share"] >= 0.5 * (teacher_tu - before["tu_share"])
    # controls: the adapter switched off, and an adapter never trained, write exactly what the base model writes
    assert disabled["replies"] == before["replies"] and untrained["replies"] == before["replies"]
    assert disabled["parse_rate"] == untrained["parse_rate"] == before["parse_rate"]
