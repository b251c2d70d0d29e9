"""A seeded simulated self-assessor: the *text* a VLM would write in UnSAF's two stages, and its task answers.

It stands in for a model (``self_assessment.simulate: {<name>: <profile>}``) so that the paper's analyses
can be drawn at its scale without GPUs. It writes text, never labels: stage-1 generations go through the
real question parser and stage-2 replies through the real abstention detector
(:mod:`prompt_reliability.analysis.self_assessment_scores`).

The behaviour of a model ``m`` on a dataset ``d`` (seeded by the names, so runs and job order do not
matter; ``z = log2(params_b / 7)``):

- **well-formed share** ``profile.well_formed``: each requested question is written parseably with this
  probability; otherwise it is a caption sentence (open) or a question with two options (mc), which the
  parser rejects. The parse rate therefore estimates ``well_formed``.
- **awareness** ``w = 1 / (1 + exp(-A))``, ``A = 1 + profile.awareness + effects.scale * 0.8 * z +
  N(0, effects.awareness_dataset_sd)`` (one draw per model x dataset): a requested kind is honoured
  with probability ``w`` (else a question of the other kind is written; the kind shows in the text,
  from two pools of question templates), and in the fresh answering conversation the model perceives
  a question's true kind with probability ``w``.
- **answer propensity**: answers with probability ``sigmoid(b + 2)`` when it perceives the question as
  answerable, ``sigmoid(b - 2)`` otherwise; ``b = profile.answer_bias - instruct * effects.instruction_timidity
  + variant shift (cautious -effects.prompt_shift, encouraging +effects.prompt_shift) + mc_answer_bias``
  (mc only: models pick an option readily). The same uniform draws serve every variant (common random
  numbers), so a variant moves answers one way only.
- **task answers** (the conventional metrics' input): ``task_items`` benchmark items, item logit
  ``t ~ N(0, 1.5)``, ``P(correct) = sigmoid(0.8 + profile.skill + effects.scale * 0.6 * z - difficulty_d + t)``;
  the stated top-label confidence is ``sigmoid(logit P(correct) + profile.overconfidence + c_md)`` with
  ``c_md ~ N(0, effects.calibration_dataset_sd)`` per model x dataset: a dataset-specific miscalibration,
  what moves ECE, MCE and Brier rankings between datasets in the paper.

Setting an effect to 0 switches it off (the claims tests do this). ``seeds`` independent repetitions
are drawn (the paper averages three); every row carries its ``seed``.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.data import self_assessment_protocol as protocol

SETTINGS, KINDS = protocol.SETTINGS, protocol.KINDS
VARIANT_SHIFT = {"default": 0.0, "cautious": -1.0, "encouraging": 1.0}
ANSWER_GAP = 2.0

OBJECTS = ("dog", "bicycle", "cup", "bench", "umbrella", "car", "kite", "clock", "tree", "sign", "bus", "chair")
ANSWERABLE_TEMPLATES = (
    "What colour is the {obj} in the image?",
    "How many {obj}s can be seen in the picture?",
    "Is the {obj} on the left or the right side of the image?",
    "What is the {obj} standing next to?",
    "Which object is closest to the {obj}?",
)
UNANSWERABLE_TEMPLATES = (
    "What is the name of the person who owns the {obj}?",
    "How much did the {obj} cost when it was bought?",
    "What will happen to the {obj} tomorrow morning?",
    "Who was the last person to touch the {obj} before the photo?",
    "What was the {obj} thinking about at that moment?",
)
# the model reads a question's true kind from its wording (it wrote it)
UNANSWERABLE_OPENINGS = tuple(t.split("{obj}")[0] for t in UNANSWERABLE_TEMPLATES)
OPTIONS = {
    "colour": ("Red", "Blue", "Green", "White"), "count": ("One", "Two", "Three", "Four"),
    "person": ("Anna", "Ben", "Carlos", "Dina"), "other": ("The first", "The second", "The third", "The fourth"),
}
PREAMBLES = ("Here are {k} questions about the image:", "Sure! Below are the questions you asked for.",
             "Of course. These questions are based on the picture:")
CLOSINGS = ("Let me know if you need more questions.", "I hope these questions are helpful.")
CAPTIONS = ("The image shows a {obj} in an outdoor scene.", "A {obj} and some other objects are visible here.",
            "This picture contains a {obj} near the centre.")
ABSTENTIONS = ("Unanswerable.", "unanswerable", "I can't tell from the image.", "Not enough information to answer.",
               "This cannot be determined from the picture.", "N/A", "Unknown.", "I don't know.",
               "The image does not provide enough information to answer this question.",
               "Sorry, I cannot answer that based on the image.")
OPEN_ANSWERS = ("Red.", "There are two of them.", "It is on the left side.", "Next to a bench.", "A small {obj}.",
                "The {obj} is white.", "Three", "Blue")
MC_ANSWERS = ("{letter}", "{letter}.", "The answer is {letter}.", "({letter}) {option}", "{letter}. {option}",
              "Answer: {letter}")


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _rng(*parts: Any) -> np.random.Generator:
    """A generator seeded from names and numbers (crc32 of each name): the same in every run and job order."""
    return np.random.default_rng([p if isinstance(p, int) else zlib.crc32(str(p).encode()) for p in parts])


def _text_rng(*parts: Any) -> random.Random:
    """The scalar generator of the text writer (string seeds are hashed the same way in every run)."""
    return random.Random("/".join(map(str, parts)))


def _z(profile: Mapping[str, Any]) -> float:
    return float(np.log2(profile["params_b"] / 7.0))


def awareness(profile: Mapping[str, Any], effects: Mapping[str, Any], model: str, dataset: str) -> float:
    """``w``: the probability of writing the requested kind and of perceiving a question's kind (module docstring)."""
    jitter = _rng("awareness", model, dataset).normal(0.0, effects["awareness_dataset_sd"]) if effects[
        "awareness_dataset_sd"] > 0 else 0.0
    return float(_sigmoid(1.0 + profile["awareness"] + effects["scale"] * 0.8 * _z(profile) + jitter))


def answer_bias(profile: Mapping[str, Any], effects: Mapping[str, Any], setting: str, variant: str,
                mc_answer_bias: float) -> float:
    shift = VARIANT_SHIFT.get(variant, 0.0) * effects["prompt_shift"]
    return (profile["answer_bias"] - (effects["instruction_timidity"] if profile["instruct"] else 0.0) + shift
            + (mc_answer_bias if setting == "mc" else 0.0))


# --- stage 1 -------------------------------------------------------------------------------------


def _question(rng: random.Random, kind: str) -> tuple[str, str]:
    pool = ANSWERABLE_TEMPLATES if kind == "answerable" else UNANSWERABLE_TEMPLATES
    template = rng.choice(pool)
    options = ("colour" if "colour" in template else "count" if "many" in template
               else "person" if "person" in template else "other")
    return template.format(obj=rng.choice(OBJECTS)), options


def _mc_block(rng: random.Random, label: str, text: str, options: Sequence[str], letters: Sequence[str]) -> str:
    style = rng.randrange(4)
    if style == 3:  # options inline after the question
        return f"{label}{text} " + " ".join(f"{ch}. {opt}" for ch, opt in zip(letters, options))
    line = {0: "{ch}. {opt}", 1: "({ch}) {opt}", 2: "- {ch}) {opt}"}[style]
    return "\n".join([f"{label}{text}", *(line.format(ch=ch, opt=opt) for ch, opt in zip(letters, options))])


def write_generation(rng: random.Random, *, setting: str, kind: str, k: int, well_formed: float,
                     faithful: float) -> tuple[str, list[str]]:
    """One stage-1 reply asking for ``k`` questions of ``kind``; also the true kind of each well-formed question."""
    labels = (lambda j: f"Question {j}: ", lambda j: f"{j}. ", lambda j: "- ", lambda j: f"**Q{j}.** ")
    label = rng.choice(labels)
    lines = [rng.choice(PREAMBLES).format(k=k)] if rng.random() < 0.5 else []
    truths: list[str] = []
    other = {"answerable": "unanswerable", "unanswerable": "answerable"}
    for j in range(1, k + 1):
        if rng.random() >= well_formed:
            if setting == "mc" and rng.random() < 0.5:  # a question with two options: rejected by the parser
                text, family = _question(rng, kind)
                lines.append(_mc_block(rng, label(j), text, OPTIONS[family][:2], "AB"))
            else:  # a caption instead of a question: not a question start
                lines.append(rng.choice(CAPTIONS).format(obj=rng.choice(OBJECTS)))
            continue
        truth = kind if rng.random() < faithful else other[kind]
        text, family = _question(rng, truth)
        truths.append(truth)
        lines.append(_mc_block(rng, label(j), text, OPTIONS[family], "ABCD") if setting == "mc" else f"{label(j)}{text}")
    if rng.random() < 0.3:
        lines.append(rng.choice(CLOSINGS))
    return "\n".join(lines), truths


def simulate_generations(images: pl.DataFrame, profile: Mapping[str, Any], effects: Mapping[str, Any], *,
                         model: str, dataset: str, setting: str, k: int, seed: int) -> pl.DataFrame:
    """Stage 1 for one seed: rows ``sample_id, image_path, setting, kind, text`` (as the HF stage writes)."""
    rng = _text_rng("generate", seed, model, dataset, setting)
    w = awareness(profile, effects, model, dataset)
    rows = []
    for sample_id, image_path in zip(images["sample_id"], images["image_path"]):
        for kind in KINDS:
            text, _ = write_generation(rng, setting=setting, kind=kind, k=k, well_formed=profile["well_formed"],
                                       faithful=w)
            rows.append({"sample_id": sample_id, "image_path": image_path, "setting": setting, "kind": kind,
                         "text": text})
    return pl.DataFrame(rows, schema={"sample_id": pl.String, "image_path": pl.String, "setting": pl.String,
                                      "kind": pl.String, "text": pl.String})


# --- stage 2 -------------------------------------------------------------------------------------


def true_kind(question: str) -> str:
    """The kind a simulated question really is, read from its wording."""
    return "unanswerable" if question.startswith(UNANSWERABLE_OPENINGS) else "answerable"


def _reply(rng: random.Random, answered: bool, setting: str, question: Mapping[str, Any]) -> str:
    if not answered:
        return rng.choice(ABSTENTIONS)
    if setting == "mc":
        letter = rng.choice("ABCD")
        return rng.choice(MC_ANSWERS).format(letter=letter,
                                                                 option=question[f"option_{letter.lower()}"] or "")
    return rng.choice(OPEN_ANSWERS).format(obj=rng.choice(OBJECTS))


def simulate_answers(questions: pl.DataFrame, profile: Mapping[str, Any], effects: Mapping[str, Any], *, model: str,
                     dataset: str, setting: str, variants: Sequence[str], seed: int,
                     mc_answer_bias: float) -> pl.DataFrame:
    """Stage 2 for one seed: every parsed question under every variant -> ``question_id, kind, variant, reply``."""
    rng = _rng("answer", seed, model, dataset, setting)
    n = questions.height
    w = awareness(profile, effects, model, dataset)
    truth_answerable = np.array([true_kind(q) == "answerable" for q in questions["question"]], dtype=bool)
    perceived_answerable = np.where(rng.random(n) < w, truth_answerable, ~truth_answerable)
    uniform = rng.random(n)  # common random numbers across variants
    rows = []
    records = list(questions.iter_rows(named=True))
    for variant in variants:
        b = answer_bias(profile, effects, setting, variant, mc_answer_bias)
        answered = uniform < _sigmoid(np.where(perceived_answerable, b + ANSWER_GAP, b - ANSWER_GAP))
        style = _text_rng("style", seed, model, dataset, setting, variant)
        for q, yes in zip(records, answered):
            rows.append({"question_id": q["question_id"], "kind": q["kind"], "variant": variant,
                         "reply": _reply(style, bool(yes), setting, q)})
    return pl.DataFrame(rows, schema={"question_id": pl.String, "kind": pl.String, "variant": pl.String,
                                      "reply": pl.String})


# --- task answers (conventional metrics) ---------------------------------------------------------


def simulate_task(profile: Mapping[str, Any], effects: Mapping[str, Any], *, model: str, dataset: str, n_items: int,
                  difficulty: float, seed: int) -> pl.DataFrame:
    """``item_id, seed, correct, confidence`` of ``n_items`` benchmark items answered by the model (one seed)."""
    rng = _rng("task", seed, model, dataset)
    shift = (_rng("calibration", model, dataset).normal(0.0, effects["calibration_dataset_sd"])
             if effects["calibration_dataset_sd"] > 0 else 0.0)
    logit = 0.8 + profile["skill"] + effects["scale"] * 0.6 * _z(profile) - difficulty + rng.normal(0.0, 1.5, n_items)
    correct = rng.random(n_items) < _sigmoid(logit)
    confidence = _sigmoid(logit + profile["overconfidence"] + shift)
    return pl.DataFrame({"item_id": [f"{dataset}-{i}" for i in range(n_items)], "seed": [seed] * n_items,
                         "correct": correct, "confidence": confidence},
                        schema={"item_id": pl.String, "seed": pl.Int64, "correct": pl.Boolean, "confidence": pl.Float64})
