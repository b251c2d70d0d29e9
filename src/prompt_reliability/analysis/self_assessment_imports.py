"""UnSAF from answers produced elsewhere (an API, another harness): one JSONL file, the same tables and figures.

Config ``self_assessment.imports: {<name>: <path.jsonl>}``; rule ``self_assessment_import`` (one job per
file). One JSON object per line, one line per question asked and answered:

=============  ========  =====================================================================
field          required  value
=============  ========  =====================================================================
model          yes       the self-assessed model's name (a non-empty string)
dataset        yes       the dataset whose image was used (a non-empty string)
image_id       yes       the image (string or integer)
setting        yes       ``mc`` or ``open``
kind           yes       the requested kind: ``answerable`` or ``unanswerable``
question       yes       the generated question; ``null`` = a requested question that could not be
                         parsed (counted in ``n_unparseable``, its reply ignored)
options        mc        four options: a list ``[A, B, C, D]`` or a mapping ``{"A": .., "D": ..}``;
                         absent or ``null`` for ``open``
reply          yes       the stage-2 reply (a string; ``""`` = empty, left out of the four types)
variant        no        the answering instruction (default ``"default"``)
seed           no        an integer (several seeds pool their counts)
confidence     no        the model's confidence in its answer, in [0, 1]
correct        no        whether the answer was right (``true`` / ``false`` / 0 / 1)
=============  ========  =====================================================================

Every line is checked before anything is written; a bad line fails the job with the file, the line
number and the field (up to :data:`MAX_ERRORS` of them). The reply goes through the same abstention
detector as a model's own. Conventional metrics (accuracy, Brier, MacroCE, ECE, top-label MCE) come
from the lines that carry both ``confidence`` and ``correct``, per model and dataset; without any
they are NaN and ``conventional_note`` says so.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import polars as pl

from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.base import io

log = logging.getLogger(__name__)

MAX_ERRORS = 10
REQUIRED = ("model", "dataset", "image_id", "setting", "kind", "question", "reply")
KNOWN = {*REQUIRED, "options", "variant", "seed", "confidence", "correct"}
ROW_SCHEMA = {"model": pl.String, "dataset": pl.String, "sample_id": pl.String, "setting": pl.String, "kind": pl.String,
              "question": pl.String, "variant": pl.String, "seed": pl.Int64, "reply": pl.String,
              "confidence": pl.Float64, "correct": pl.Boolean, "line": pl.Int64}


class ImportedAnswersError(ValueError):
    """Bad lines in an imported answers file; the message names the file, each line and field, and the fix."""


def _check_line(record: Any) -> tuple[dict[str, Any] | None, list[str]]:
    """The normalised row of one parsed line, or the problems ``field: what is wrong (fix)``."""
    if not isinstance(record, dict):
        return None, [f"expected a JSON object with fields {list(REQUIRED)}, got {type(record).__name__}"]
    problems = [f"field {f!r}: missing (required)" for f in REQUIRED if f not in record]
    problems += [f"field {f!r}: unknown field (allowed: {sorted(KNOWN)})" for f in record if f not in KNOWN]
    for f in ("model", "dataset"):
        if f in record and not (isinstance(record[f], str) and record[f]):
            problems.append(f"field {f!r}: {record[f]!r} is not a non-empty string")
    if "image_id" in record and (isinstance(record["image_id"], bool) or not isinstance(record["image_id"], (str, int))
                                 or record["image_id"] == ""):
        problems.append(f"field 'image_id': {record['image_id']!r} is not a string or integer")
    setting, kind = record.get("setting"), record.get("kind")
    if "setting" in record and setting not in sa.SETTINGS:
        problems.append(f"field 'setting': {setting!r} is not one of {list(sa.SETTINGS)}")
    if "kind" in record and kind not in sa.KINDS:
        problems.append(f"field 'kind': {kind!r} is not one of {list(sa.KINDS)} (the kind requested in stage 1)")
    question = record.get("question")
    if "question" in record and question is not None and not (isinstance(question, str) and question.strip()):
        problems.append(f"field 'question': {question!r} is not a non-empty string (null = unparseable)")
    if "reply" in record and not isinstance(record["reply"], str):
        problems.append(f"field 'reply': {record['reply']!r} is not a string (\"\" for an empty reply)")
    options = record.get("options")
    if setting == "mc" and question is not None:
        values = (list(options) if isinstance(options, list) else
                  [options.get(letter) for letter in sa.OPTION_LETTERS] if isinstance(options, dict) else None)
        if values is None or len(values) != 4 or not all(isinstance(v, str) and v.strip() for v in values) or (
                isinstance(options, dict) and set(options) != set(sa.OPTION_LETTERS)):
            problems.append(f"field 'options': {options!r}; an mc question needs four non-empty options, "
                            "[A, B, C, D] or {\"A\": .., \"B\": .., \"C\": .., \"D\": ..}")
    elif setting == "open" and options not in (None, [], {}):
        problems.append(f"field 'options': {options!r}; an open question has none (leave it out)")
    if "variant" in record and not (isinstance(record["variant"], str) and record["variant"]):
        problems.append(f"field 'variant': {record['variant']!r} is not a non-empty string")
    if "seed" in record and (isinstance(record["seed"], bool) or not isinstance(record["seed"], int)):
        problems.append(f"field 'seed': {record['seed']!r} is not an integer")
    confidence = record.get("confidence")
    if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, (int, float))
                                   or not (0.0 <= confidence <= 1.0) or math.isnan(confidence)):
        problems.append(f"field 'confidence': {confidence!r} is not a number in [0, 1] (or null)")
    correct = record.get("correct")
    if correct is not None and correct not in (True, False, 0, 1):
        problems.append(f"field 'correct': {correct!r} is not true / false / 0 / 1 (or null)")
    if problems:
        return None, problems
    return {"model": record["model"], "dataset": record["dataset"], "sample_id": str(record["image_id"]),
            "setting": setting, "kind": kind, "question": question, "variant": record.get("variant", "default"),
            "seed": record.get("seed", 0), "reply": record["reply"],
            "confidence": None if confidence is None else float(confidence),
            "correct": None if correct is None else bool(correct)}, []


def read_imported_answers(path: str | Path) -> pl.DataFrame:
    """The checked rows of an imported answers file (columns :data:`ROW_SCHEMA`); raises on any bad line."""
    rows, errors = [], []
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as err:
        raise ImportedAnswersError(f"{path}: cannot read the imported answers file ({err}); check "
                                   "self_assessment.imports") from None
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            record = json.loads(text)
        except json.JSONDecodeError as err:
            errors.append(f"{path}:{number}: not valid JSON ({err.msg} at column {err.colno})")
            continue
        row, problems = _check_line(record)
        errors += [f"{path}:{number}: {p}" for p in problems]
        if row is not None:
            rows.append({**row, "line": number})
    if errors:
        shown = errors[:MAX_ERRORS]
        more = f"\n... and {len(errors) - MAX_ERRORS} more" if len(errors) > MAX_ERRORS else ""
        raise ImportedAnswersError(f"{len(errors)} problem(s) in the imported answers (format: module "
                                   "prompt_reliability.analysis.self_assessment_imports):\n" + "\n".join(shown) + more)
    if not rows:
        raise ImportedAnswersError(f"{path}: no answers (an empty file); one JSON object per line is expected")
    return pl.DataFrame(rows, schema=ROW_SCHEMA)


def _once(frame: pl.DataFrame, variants: list[str]) -> int:
    """Lines of one variant (the first that has any): a question is requested once, whatever the variants."""
    first = next((v for v in variants if v in set(frame["variant"])), None)
    return frame.filter(pl.col("variant") == first).height if first is not None else 0


def score_imported(rows: pl.DataFrame, n_bins: int = 15) -> pl.DataFrame:
    """The ``self_assessment`` rows of every (model, dataset, setting) in the file, every variant it has."""
    pieces = []
    for (model, dataset), pair in rows.group_by("model", "dataset", maintain_order=True):
        task = pair.select("correct", "confidence")
        for (setting,), run in pair.group_by("setting", maintain_order=True):
            variants = sorted(set(run["variant"]), key=lambda v: (v != "default", v))
            asked = run.filter(pl.col("question").is_not_null())
            unparseable = run.filter(pl.col("question").is_null())
            report = pl.DataFrame({"n_parsed": [_once(asked, variants)], "n_unparseable": [_once(unparseable, variants)]},
                                  schema={"n_parsed": pl.Int64, "n_unparseable": pl.Int64})
            pieces.append(sa.score_table(asked.select("kind", "variant", "seed", "reply"), report, variants,
                                         model=model, dataset=dataset, setting=setting, task=task, n_bins=n_bins))
    table = pl.concat(pieces, how="vertical_relaxed")
    no_task = table["n_task_items"] == 0
    return table.with_columns(pl.when(no_task).then(pl.lit("imported rows carry no confidence and correctness: "
                                                           "conventional metrics undefined"))
                              .otherwise(pl.col("conventional_note")).alias("conventional_note"))


def import_answers(source: str, scores: str, answers: str, *, ece_bins: int) -> pl.DataFrame:
    """Rule ``self_assessment_import``: check every line, then write the table rows and the answers."""
    rows = read_imported_answers(source)
    table = score_imported(rows, ece_bins)
    io.write_parquet(rows.filter(pl.col("question").is_not_null()).drop("line"), answers)
    io.write_parquet(table, scores)
    log.info("%s: %d lines, %d models, %d runs", source, rows.height, rows["model"].n_unique(),
             table.select("model", "dataset", "setting").n_unique())
    return table
