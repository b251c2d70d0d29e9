"""Uncertainty-aware distillation data (UnSAF section 5.1) from a teacher's two-stage run.

The teacher is any self-assessor (a served or hf model, the simulated one, imported answers): what
is read is its run's file contract, ``questions.parquet`` (stage 1, parsed) and ``answers.parquet``
(stage 2), plus the prompts file that asked for them. Each example is one user turn with an image:

- **UnD-IQ** (instruction -> questions): the stage-1 instruction for a kind (answerable or
  unanswerable, ``{k}`` filled) -> the teacher's parsed questions of that image and kind, written
  back in the prompt's own output format (``Question: ...`` and, multiple-choice, ``A. ...`` to
  ``D. ...``), so every target parses. A generation with no parsed question gives no example.
- **UnD-QA** (question -> answer): the stage-2 instruction for a question (answering variant
  ``variant``) -> the teacher's reply, or exactly ``unanswerable`` when the reply abstains
  (:func:`is_abstention`). Empty replies give no example.
- **UnD-Joint**: both.

Images are split, not examples: a seeded hash of each image's bytes puts it in ``train`` or
``heldout`` (``heldout_fraction``), so no image is trained on and evaluated on (the held-out images
are the student evaluation's). Columns: ``example_id, task (iq|qa), split, sample_id, image_path,
image_sha256, kind, instruction, target``; the file metadata holds the provenance (teacher, run
files and their content hashes, prompts hash, the teacher's own run metadata).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from prompt_reliability.analysis.self_assessment_scores import OPTION_LETTERS, is_abstention, normalise_reply
from prompt_reliability.base import io
from prompt_reliability.scoring.self_assessment_inference import answer_instruction, load_templates, select_images

log = logging.getLogger(__name__)

STRATEGIES = {"qa": ("qa",), "iq": ("iq",), "joint": ("iq", "qa")}  # UnD-QA, UnD-IQ, UnD-Joint
STRATEGY_LABELS = {"qa": "UnD-QA", "iq": "UnD-IQ", "joint": "UnD-Joint"}
ABSTAIN_TARGET = "unanswerable"
COLUMNS = {"example_id": pl.String, "task": pl.String, "split": pl.String, "sample_id": pl.String,
           "image_path": pl.String, "image_sha256": pl.String, "kind": pl.String, "instruction": pl.String,
           "target": pl.String}


class DistillationDataError(ValueError):
    """The teacher's run files do not fit; the message names the file and the fix."""


def file_sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def image_splits(image_hashes: list[str], heldout_fraction: float, seed: int) -> dict[str, str]:
    """``train`` or ``heldout`` per distinct image hash: a seeded hash decides, so the split of an image
    never depends on which other images are there (adding images moves none)."""
    splits = {}
    for digest in dict.fromkeys(image_hashes):
        draw = int.from_bytes(hashlib.sha256(f"{seed}:{digest}".encode()).digest()[:8], "big") / 2**64
        splits[digest] = "heldout" if draw < heldout_fraction else "train"
    return splits


def render_questions(rows: list[Mapping[str, Any]], setting: str) -> str:
    """Parsed questions in the generation prompt's output format."""
    blocks = []
    for q in rows:
        lines = [f"Question: {q['question']}"]
        if setting == "mc":
            lines += [f"{letter}. {q[f'option_{letter.lower()}']}" for letter in OPTION_LETTERS]
        blocks.append("\n".join(lines))
    return "\n".join(blocks)


def build_examples(questions: pl.DataFrame, answers: pl.DataFrame, templates: Mapping[str, Any], *, setting: str,
                   k: int, variant: str, heldout_fraction: float, seed: int,
                   image_hash=file_sha256) -> pl.DataFrame:
    """Every UnD-IQ and UnD-QA example of one teacher run (module docstring), train and held-out."""
    if questions.height and set(questions["setting"].unique()) != {setting}:
        raise DistillationDataError(f"the teacher's questions are of settings {sorted(questions['setting'].unique())}, "
                                    f"not {setting!r}")
    hashes = {path: image_hash(path) for path in questions["image_path"].unique(maintain_order=True)}
    split_of = image_splits(list(hashes.values()), heldout_fraction, seed)
    rows: list[dict[str, Any]] = []
    # one generation = one (image, kind), per seed when the teacher's run repeats seeds
    keys = ["sample_id", "image_path", "kind", *(["seed"] if "seed" in questions.columns else [])]
    for key, group in questions.group_by(keys, maintain_order=True):
        sample_id, image_path, kind = key[:3]
        seed_part = f":{key[3]}" if len(key) > 3 else ""
        instruction = templates["generation"][setting][kind].replace("{k}", str(k))
        rows.append({"example_id": f"iq:{sample_id}:{kind}{seed_part}", "task": "iq", "sample_id": sample_id,
                     "image_path": image_path, "kind": kind, "instruction": instruction,
                     "target": render_questions(list(group.iter_rows(named=True)), setting)})
    replies = answers.filter(pl.col("variant") == variant).select("question_id", "reply")
    for q in questions.join(replies, on="question_id", how="inner", maintain_order="left").iter_rows(named=True):
        if not normalise_reply(q["reply"]):
            continue
        target = ABSTAIN_TARGET if is_abstention(q["reply"]) else q["reply"].strip()
        rows.append({"example_id": f"qa:{q['question_id']}", "task": "qa", "sample_id": q["sample_id"],
                     "image_path": q["image_path"], "kind": q["kind"],
                     "instruction": answer_instruction(templates, q, setting, variant), "target": target})
    for row in rows:
        row["image_sha256"] = hashes[row["image_path"]]
        row["split"] = split_of[row["image_sha256"]]
    return pl.DataFrame(rows, schema=COLUMNS).select(list(COLUMNS))


def strategy_examples(examples: pl.DataFrame, strategy: str, split: str = "train") -> pl.DataFrame:
    """The ``split`` examples a strategy trains on (``qa``, ``iq`` or ``joint``)."""
    if strategy not in STRATEGIES:
        raise DistillationDataError(f"distillation strategy must be one of {sorted(STRATEGIES)}, got {strategy!r}")
    return examples.filter(pl.col("task").is_in(list(STRATEGIES[strategy])) & (pl.col("split") == split))


def write_distillation_data(*, manifest: str, questions: str, answers: str, prompts: str, data: str, teacher: str,
                            strategy: str, setting: str, k: int, variant: str, images: int, heldout_fraction: float,
                            seed: int) -> pl.DataFrame:
    """Rule ``distillation_data``: one teacher run -> the training examples of one strategy (Parquet)."""
    table_q, table_a = pl.read_parquet(questions), pl.read_parquet(answers)
    missing = [(path, c) for path, table, cols in ((questions, table_q, ("question_id", "sample_id", "image_path",
                                                                          "setting", "kind", "question")),
                                                   (answers, table_a, ("question_id", "variant", "reply")))
               for c in cols if c not in table.columns]
    if missing:
        raise DistillationDataError(f"{missing[0][0]}: lacks column {missing[0][1]!r}; a teacher run is the "
                                    "self-assessment's questions.parquet and answers.parquet (docs/architecture.md)")
    if table_a.height and variant not in set(table_a["variant"].unique()):
        raise DistillationDataError(f"{answers}: has no answers of variant {variant!r} (has "
                                    f"{sorted(table_a['variant'].unique())}); set distillation.variant or add it "
                                    "to self_assessment.variants")
    first = select_images(pl.read_parquet(manifest), images)["image_path"]
    table_q = table_q.filter(pl.col("image_path").is_in(first.to_list()))
    templates = load_templates(prompts)
    examples = build_examples(table_q, table_a, templates, setting=setting, k=k, variant=variant,
                              heldout_fraction=heldout_fraction, seed=seed)
    provenance = {
        "teacher": teacher, "strategy": strategy, "setting": setting, "k": k, "variant": variant, "images": images,
        "heldout_fraction": heldout_fraction, "seed": seed, "questions_sha256": file_sha256(questions),
        "answers_sha256": file_sha256(answers), "prompts_sha256": file_sha256(prompts),
        "prompt_sha256": {f"generation.{setting}.{kind}": hashlib.sha256(
            templates["generation"][setting][kind].encode()).hexdigest() for kind in ("answerable", "unanswerable")}
        | {f"answering.{setting}": hashlib.sha256(templates["answering"][setting].encode()).hexdigest(),
           f"variants.{variant}": hashlib.sha256(templates["variants"][variant].encode()).hexdigest()},
        "teacher_run": {"questions": io.read_parquet_metadata(questions), "answers": io.read_parquet_metadata(answers)},
    }
    chosen = strategy_examples(examples, strategy)
    io.write_parquet(chosen, data, metadata={"distillation_data": provenance})
    log.info("%s %s: %d training examples %s from %d images (%d held out)", teacher, STRATEGY_LABELS[strategy],
             chosen.height, dict(chosen.group_by("task").len().iter_rows()), chosen["image_sha256"].n_unique(),
             examples.filter(pl.col("split") == "heldout")["image_sha256"].n_unique())
    return chosen


def heldout_images(manifest: pl.DataFrame, n_images: int, heldout_fraction: float, seed: int,
                   image_hash=file_sha256) -> pl.DataFrame:
    """``sample_id, image_path, image_sha256`` of the held-out images among the first ``n_images`` distinct
    images of the dataset (the images the teachers' runs ask about): the students are evaluated on these."""
    images = select_images(manifest, n_images)
    hashes = [image_hash(p) for p in images["image_path"]]
    split_of = image_splits(hashes, heldout_fraction, seed)
    images = images.with_columns(pl.Series("image_sha256", hashes, dtype=pl.String))
    return (images.filter(pl.Series([split_of[h] == "heldout" for h in hashes], dtype=pl.Boolean))
            .unique("image_sha256", keep="first", maintain_order=True))


def write_heldout_images(*, manifest: str, heldout: str, images: int, heldout_fraction: float, seed: int) -> pl.DataFrame:
    """Rule ``distillation_heldout``: the evaluation images of every student (never trained on)."""
    held = heldout_images(pl.read_parquet(manifest), images, heldout_fraction, seed)
    if held.height == 0:
        raise DistillationDataError(f"{manifest}: no image of the first {images} falls in the held-out share "
                                    f"({heldout_fraction}); raise distillation.heldout_fraction or self_assessment.images")
    io.write_parquet(held, heldout, metadata={"heldout_fraction": heldout_fraction, "seed": seed, "images": images})
    log.info("%d held-out images of %d for the students' evaluation", held.height, images)
    return held
