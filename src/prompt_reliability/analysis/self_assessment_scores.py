"""UnSAF self-assessment, the label-free half: parse generated questions and answers, count and score.

Stage 1 (:mod:`prompt_reliability.scoring.self_assessment_inference`) asks a model, per image, for ``k``
answerable and ``k`` unanswerable questions, multiple-choice (``mc``: question + options A-D) or
open-ended (``open``). :func:`parse_questions` turns each raw generation into questions:

- a question starts at a line labelled ``Question`` (``Question 2:``, ``**Question:**``, ``Q1.``) or a
  numbered / bulleted line or any line ending in ``?``; labels, numbering and Markdown emphasis are
  stripped; text shorter than two words is not a question;
- ``mc``: options are lines (or inline runs) ``A.`` / ``A)`` / ``(A)`` / ``A:`` up to ``D``; a question
  counts only with all four options non-empty, each letter once (extra options E+ are ignored);
- at most ``k`` questions are kept per generation (the first ones). Everything asked for and not
  recovered is *unparseable*: ``n_unparseable = sum over generations of (k - questions kept)``, so
  ``n_questions + n_unparseable = 2 * images * k`` always. Nothing is dropped silently.

Stage 2 answers each question in a fresh conversation. :func:`is_abstention` reads the reply: case,
surrounding quotes / asterisks / punctuation are ignored; it abstains when the reply says
*unanswerable* / *not answerable* / *cannot (be) answer(ed)* / *unable to answer* / *I don't know* /
*cannot (be) determine(d)*. Any other non-empty reply is an answer (its content is not judged: UnSAF
is label-free). An empty reply is neither; it is counted in ``n_empty`` and left out of the four types.

Types (paper eq. 1): TA answered an answerable question, FA answered an unanswerable one, TU abstained
on an unanswerable one, FU abstained on an answerable one. ``audacity = TA / (TA + FA)``,
``timidity = TA / (TA + FU)``, ``UnF1`` their harmonic mean; audacity, timidity and UnF1 are 0 when
their denominator is 0, and UnF1 is 0 when TA + FA = 0 or TA + FU = 0.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import polars as pl

from prompt_reliability.base import io

log = logging.getLogger(__name__)

SETTINGS = ("mc", "open")
KINDS = ("answerable", "unanswerable")
OPTION_LETTERS = ("A", "B", "C", "D")
TYPES = ("ta", "fa", "tu", "fu")
TABLE_COLUMNS = ("model", "dataset", "setting", "variant", "n_questions", "n_unparseable", "ta", "fa", "tu", "fu",
                 "audacity", "timidity", "unf1", "n_empty")

_EMPHASIS = re.compile(r"[*_`#]+")
_LABEL = re.compile(r"^\s*(?:\d+\s*[.):]\s*)?(?:question|q)\s*\d*\s*[.):：-]?\s*", re.IGNORECASE)
_LABEL_STRICT = re.compile(r"^\s*(?:\d+\s*[.):]\s*)?(?:question\s*\d*\s*[:：.)-]|q\s*\d+\s*[:.)-])", re.IGNORECASE)
_NUMBERED = re.compile(r"^\s*(?:\d+\s*[.):]|[-•*])\s+")
_OPTION_LINE = re.compile(r"^\s*\(?([A-Ha-h])\s*[.):]\)?\s+(.*)$")
_OPTION_INLINE = re.compile(r"(?:^|\s)\(?([A-H])[.)]\)?\s+")
_ABSTAIN = re.compile(
    r"\bunanswerable\b|\bnot\s+answerable\b|\b(?:can\s*not|can't|cannot|could\s*not|couldn't|unable\s+to)\s+(?:be\s+)?answer"
    r"|\bi\s+(?:do\s+not|don't)\s+know\b|\b(?:can\s*not|can't|cannot)\s+(?:be\s+)?determined?\b",
    re.IGNORECASE)


@dataclass
class Question:
    text: str
    options: dict[str, str] = field(default_factory=dict)


@dataclass
class ParsedGeneration:
    questions: list[Question]
    rejected: int  # question candidates that were malformed (mc without four options, too short)
    unparseable: int  # k - len(questions)


def _clean(line: str) -> str:
    return _EMPHASIS.sub("", line).strip()


def _question_start(line: str) -> str | None:
    """The question text if ``line`` starts a question, else None."""
    if _LABEL_STRICT.match(line):
        return _LABEL.sub("", line, count=1).strip()
    if _NUMBERED.match(line):
        return _NUMBERED.sub("", line, count=1).strip()
    if line.rstrip().endswith("?") and not _OPTION_LINE.match(line):
        return line.strip()
    return None


def _split_inline_options(text: str) -> tuple[str, dict[str, str]]:
    """``"Which? A. x B. y C. z D. w"`` -> (``"Which?"``, options); text unchanged when there are no A-D runs."""
    marks = list(_OPTION_INLINE.finditer(text))
    letters = [m.group(1) for m in marks]
    if "A" not in letters or "B" not in letters:
        return text, {}
    start = letters.index("A")
    marks = marks[start:]
    options: dict[str, str] = {}
    for i, mark in enumerate(marks):
        end = marks[i + 1].start() if i + 1 < len(marks) else len(text)
        options.setdefault(mark.group(1), text[mark.end():end].strip())
    return text[:marks[0].start()].strip(), options


def parse_questions(text: str, setting: str, k: int) -> ParsedGeneration:
    """Questions (and, for ``mc``, options A-D) in one raw generation; see the module docstring."""
    if setting not in SETTINGS:
        raise ValueError(f"self-assessment setting must be one of {SETTINGS}, got {setting!r}")
    candidates: list[Question] = []
    current: Question | None = None
    label_only = False  # a bare "Question 1:" line: the question text is on the next line
    for raw in (text or "").splitlines():
        line = _clean(raw)
        if not line:
            continue
        if label_only and not _OPTION_LINE.match(line):
            label_only = False
            if _question_start(line) is None:
                line = f"Question: {line}"
        option = _OPTION_LINE.match(line)
        if setting == "mc" and option and current is not None:
            letter, rest = option.group(1).upper(), option.group(2).strip()
            # "A. x B. y" on one line
            _, inline = _split_inline_options(line)
            for key, value in (inline or {letter: rest}).items():
                current.options.setdefault(key, value)
            continue
        start = _question_start(line)
        if start is None:
            continue
        if not start and _LABEL_STRICT.match(line):
            label_only = True
            continue
        body, inline = _split_inline_options(start) if setting == "mc" else (start, {})
        current = Question(body, dict(inline))
        candidates.append(current)
    valid = [q for q in candidates if _valid(q, setting)]
    kept = valid[:k]
    for q in kept:
        if setting == "mc":
            q.options = {letter: q.options[letter] for letter in OPTION_LETTERS}
    return ParsedGeneration(kept, rejected=len(candidates) - len(valid), unparseable=k - len(kept))


def _valid(question: Question, setting: str) -> bool:
    if len(question.text.split()) < 2:
        return False
    if setting == "mc":
        return all(question.options.get(letter, "").strip() for letter in OPTION_LETTERS)
    return True


def normalise_reply(text: str | None) -> str:
    """Lower-cased, whitespace-collapsed, without surrounding quotes, emphasis and punctuation."""
    value = re.sub(r"\s+", " ", (text or "")).strip().lower()
    return value.strip(" \t\"'`*_.,;:!?()[]{}<>“”‘’«»")


def is_abstention(text: str | None) -> bool:
    """Whether a stage-2 reply abstains (module docstring)."""
    return bool(_ABSTAIN.search(normalise_reply(text)))


def option_letter(text: str | None) -> str | None:
    """The option letter of an ``mc`` reply (``"B"``, ``"(b)"``, ``"Answer: C."``), else None."""
    value = normalise_reply(text)
    match = re.fullmatch(r"(?:(?:the\s+)?(?:answer|option)\s*(?:is)?\s*[:\-]?\s*)?\(?([a-d])\)?(?:[.):]\s*.*)?", value)
    return match.group(1).upper() if match else None


def classify(kind: str, reply: str | None) -> str | None:
    """``ta`` / ``fa`` / ``tu`` / ``fu`` for a question of ``kind`` and its reply; None for an empty reply."""
    if kind not in KINDS:
        raise ValueError(f"question kind must be one of {KINDS}, got {kind!r}")
    if not normalise_reply(reply):
        return None
    abstained = is_abstention(reply)
    if kind == "answerable":
        return "fu" if abstained else "ta"
    return "tu" if abstained else "fa"


def unf1_scores(ta: int, fa: int, tu: int, fu: int) -> dict[str, float]:
    """Audacity, timidity and UnF1 from the four counts (0 where a denominator is 0)."""
    audacity = ta / (ta + fa) if ta + fa else 0.0
    timidity = ta / (ta + fu) if ta + fu else 0.0
    unf1 = 2 * audacity * timidity / (audacity + timidity) if (ta + fa and ta + fu and audacity + timidity) else 0.0
    return {"audacity": audacity, "timidity": timidity, "unf1": unf1}


# --- tables --------------------------------------------------------------------------------------


def questions_table(generations: pl.DataFrame, k: int) -> pl.DataFrame:
    """One row per parsed question from stage-1 rows ``sample_id, image_path, setting, kind, text``.

    Columns: ``question_id, sample_id, image_path, setting, kind, question, option_a..option_d``
    (options null for ``open``). Per-generation parse counts go to :func:`parse_counts`.
    """
    rows = []
    for gen in generations.iter_rows(named=True):
        parsed = parse_questions(gen["text"], gen["setting"], k)
        for j, q in enumerate(parsed.questions):
            rows.append({
                "question_id": f"{gen['sample_id']}:{gen['kind']}:{j}", "sample_id": gen["sample_id"],
                "image_path": gen["image_path"], "setting": gen["setting"], "kind": gen["kind"], "question": q.text,
                **{f"option_{letter.lower()}": q.options.get(letter) for letter in OPTION_LETTERS},
            })
    schema = {"question_id": pl.String, "sample_id": pl.String, "image_path": pl.String, "setting": pl.String,
              "kind": pl.String, "question": pl.String, **{f"option_{c}": pl.String for c in "abcd"}}
    return pl.DataFrame(rows, schema=schema)


def parse_counts(generations: pl.DataFrame, k: int) -> pl.DataFrame:
    """Per generation: ``sample_id, kind, n_parsed, n_rejected, n_unparseable``."""
    rows = []
    for gen in generations.iter_rows(named=True):
        parsed = parse_questions(gen["text"], gen["setting"], k)
        rows.append({"sample_id": gen["sample_id"], "kind": gen["kind"], "n_parsed": len(parsed.questions),
                     "n_rejected": parsed.rejected, "n_unparseable": parsed.unparseable})
    return pl.DataFrame(rows, schema={"sample_id": pl.String, "kind": pl.String, "n_parsed": pl.Int64,
                                      "n_rejected": pl.Int64, "n_unparseable": pl.Int64})


def write_questions(generations: str, questions: str, parse_report: str, *, k: int) -> pl.DataFrame:
    """Rule ``self_assessment_questions``: stage-1 generations -> questions Parquet + per-generation parse counts."""
    gens = pl.read_parquet(generations)
    table = questions_table(gens, k)
    counts = parse_counts(gens, k)
    io.write_parquet(table, questions)
    io.write_parquet(counts, parse_report)
    expected = gens.height * k
    log.info("%d of %d requested questions parsed (%d generations, %d malformed candidates)",
                                     table.height, expected, gens.height, int(counts["n_rejected"].sum()))
    return table


def type_counts(answers: pl.DataFrame) -> pl.DataFrame:
    """Per variant: ``variant, n_answered_rows, ta, fa, tu, fu, n_empty`` from rows ``variant, kind, reply``."""
    rows = []
    for (variant,), group in answers.group_by("variant", maintain_order=True):
        counts = dict.fromkeys(TYPES, 0)
        empty = 0
        for kind, reply in zip(group["kind"], group["reply"]):
            t = classify(kind, reply)
            if t is None:
                empty += 1
            else:
                counts[t] += 1
        rows.append({"variant": variant, "n_questions": group.height, **counts, "n_empty": empty})
    return pl.DataFrame(rows, schema={"variant": pl.String, "n_questions": pl.Int64, **{t: pl.Int64 for t in TYPES},
                                      "n_empty": pl.Int64})


def score_table(answers: pl.DataFrame, parse_report: pl.DataFrame, variants: Sequence[str], *, model: str, dataset: str,
                setting: str) -> pl.DataFrame:
    """The rows of ``self_assessment.csv`` for one (model, dataset, setting): one per variant (TABLE_COLUMNS)."""
    counts = {r["variant"]: r for r in type_counts(answers).iter_rows(named=True)} if answers.height else {}
    n_unparseable = int(parse_report["n_unparseable"].sum()) if parse_report.height else 0
    rows = []
    for variant in variants:
        c = counts.get(variant, {"n_questions": 0, **dict.fromkeys(TYPES, 0), "n_empty": 0})
        rows.append({"model": model, "dataset": dataset, "setting": setting, "variant": variant,
                     "n_questions": c["n_questions"], "n_unparseable": n_unparseable, **{t: c[t] for t in TYPES},
                     **unf1_scores(c["ta"], c["fa"], c["tu"], c["fu"]), "n_empty": c["n_empty"]})
    schema = {"model": pl.String, "dataset": pl.String, "setting": pl.String, "variant": pl.String, "n_questions": pl.Int64,
              "n_unparseable": pl.Int64, **{t: pl.Int64 for t in TYPES}, "audacity": pl.Float64, "timidity": pl.Float64,
              "unf1": pl.Float64, "n_empty": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def write_scores(answers: str, parse_report: str, scores: str, *, model: str, dataset: str, setting: str,
                 variants: Sequence[str]) -> pl.DataFrame:
    """Rule ``self_assessment_scores``: one (model, dataset, setting) -> its rows of the table (Parquet piece)."""
    table = score_table(pl.read_parquet(answers), pl.read_parquet(parse_report), variants, model=model, dataset=dataset,
                        setting=setting)
    io.write_parquet(table, scores)
    return table


def combine_scores(pieces: Sequence[str]) -> pl.DataFrame:
    """The per-run score pieces as one table (TABLE_COLUMNS), empty with the right columns when there are none."""
    frames = [pl.read_parquet(p) for p in pieces]
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame(schema=list(TABLE_COLUMNS))
