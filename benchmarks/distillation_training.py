"""Benchmark: seconds per LoRA distillation step (and per checkpoint) on this machine.

A tiny offline student (qwen2_vl, the tests' shape) is taught UnD-Joint examples from the simulated
self-assessor (the real UnSAF prompts, so sequences have the real prompt lengths), for --steps
optimizer steps with --batch examples each, torch on --threads threads; then one checkpoint is
written and read back. Prints s/step (the first --warmup steps excluded), s per checkpoint and the
checkpoint's size. On a GPU (`--device cuda`) the same loop times the student there. A tiny model
times the pipeline's overhead, not a real student's cost: scale by the model's FLOPs per token.

    PYTHONPATH=src python benchmarks/distillation_training.py [--steps 60] [--batch 4] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    import polars as pl
    import torch

    from prompt_reliability.analysis.distillation_data import build_examples, strategy_examples
    from prompt_reliability.analysis.self_assessment_scores import questions_table
    from prompt_reliability.data.synthetic import generate_object_scenes
    from prompt_reliability.scoring import distillation
    from prompt_reliability.scoring.backends.hf import load_model
    from prompt_reliability.scoring.self_assessment_inference import load_templates
    from prompt_reliability.scoring.self_assessment_simulator import simulate_answers, simulate_generations
    from prompt_reliability.scoring.tiny_models import build_tiny_model

    torch.set_num_threads(args.threads)
    profile = {"params_b": 70.0, "public_scale": True, "well_formed": 1.0, "awareness": 3.0, "answer_bias": 0.0,
               "instruct": False, "skill": 0.0, "overconfidence": 0.0}
    effects = {"scale": 0.0, "awareness_dataset_sd": 0.0, "instruction_timidity": 0.0, "prompt_shift": 0.0,
               "calibration_dataset_sd": 0.0}
    training = {"epochs": 1, "max_steps": args.steps, "batch_size": args.batch, "learning_rate": 4e-3,
                "weight_decay": 0.0, "warmup_ratio": 0.05, "max_grad_norm": 1.0, "rank": 16, "alpha": 32,
                "dropout": 0.05, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
                "checkpoint_steps": args.steps + 1, "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = generate_object_scenes("bench", 8, seed=0, image_dir=root / "img").select("sample_id", "image_path")
        generations = simulate_generations(images, profile, effects, model="t", dataset="d", setting="open", k=5, seed=0)
        questions = questions_table(generations, 5)
        answers = simulate_answers(questions, profile, effects, model="t", dataset="d", setting="open",
                                   variants=["default"], seed=0, mc_answer_bias=0.0)
        examples = strategy_examples(build_examples(questions, answers,
                                                    load_templates("prompts/self_assessment/unsaf.yaml"),
                                                    setting="open", k=5, variant="default", heldout_fraction=1e-9,
                                                    seed=0), "joint")
        build_tiny_model(root / "student", "qwen2_vl", seed=0)
        processor, model = load_model("student", {"path": str(root / "student"), "revision": None,
                                                  "trust_remote_code": False, "dtype": "float32", "device_map": None})
        model = model.to(args.device).requires_grad_(False)
        stamps: list[float] = []
        distilled, summary = distillation.train_lora(model, processor, examples, training, root / "ck",
                                                     on_step=lambda step: stamps.append(time.perf_counter()))
        timed = stamps[args.warmup:]
        per_step = (timed[-1] - timed[0]) / (len(timed) - 1)
        optimizer = torch.optim.AdamW([p for p in distilled.parameters() if p.requires_grad])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
        started = time.perf_counter()
        distillation.save_checkpoint(root / "ck" / "bench", distilled, optimizer, scheduler, {"step": 0})
        distillation.load_checkpoint(root / "ck" / "bench", distilled, optimizer, scheduler)
        checkpoint_s = time.perf_counter() - started
        size = sum(f.stat().st_size for f in (root / "ck" / "bench").iterdir())
        tokens = pl.Series([len(processor.tokenizer(t)["input_ids"]) for t in examples["instruction"]])
    figures = {"device": args.device, "threads": args.threads, "steps": args.steps, "batch": args.batch,
               "examples": examples.height, "mean_instruction_tokens": round(float(tokens.mean()), 1),
               "seconds_per_step": round(per_step, 4), "checkpoint_save_load_s": round(checkpoint_s, 4),
               "checkpoint_bytes": size, "final_loss": round(summary["losses"][-1][1], 4),
               "machine": f"{platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"}
    for key, value in figures.items():
        print(f"{key:>24}: {value}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
