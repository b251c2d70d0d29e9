"""UnSAF self-assessment, the label-free half: parse generated questions and answers, count and score.

Stage 1 (:mod:`prompt_reliability.scoring.self_assessment_inference`) asks a model, per image, for ``k``
answerable and ``k`` unanswerable questions, multiple-choice (``mc``: question + options A-D) or
open-ended (``open``). :func:`parse_questions` turns each raw generation into questions:

- a question starts at a line labelled ``Question`` (``Question 2:``, ``**Question:**``, ``Q1.``) or a
  numbered / bulleted line or any line ending in ``?``; labels, numbering and Markdown emphasis are
  stripped; text shorter than two words is not a question. In a reply with labelled or numbered
  questions, the lines before the first of them are preamble ("Sure! Here are five questions:");
- ``mc``: options are lines (or inline runs) ``A.`` / ``A)`` / ``(A)`` / ``A:`` up to ``D``, also as
  bullets (``- A) ...``); a question counts only with all four options non-empty, each letter once
  (extra options E+ are ignored);
- at most ``k`` questions are kept per generation (the first ones). Everything asked for and not
  recovered is *unparseable*: ``n_unparseable = sum over generations of (k - questions kept)``, so
  ``n_questions + n_unparseable = 2 * images * k`` always. Nothing is dropped silently.

Stage 2 answers each question in a fresh conversation. :func:`is_abstention` reads the reply: case,
surrounding quotes / asterisks / punctuation are ignored; it abstains when the reply says
*unanswerable* / *not answerable* / *cannot (be) answer(ed)* / *can't tell* / *impossible to determine* /
*I don't know* / *not enough information* / *the image does not provide enough information*, or is
as a whole *N/A*, *unknown*, *unclear*, *not sure*, *no idea* (:data:`_ABSTAIN`, :data:`_ABSTAIN_WHOLE`).
Any other non-empty reply is an answer (its content is not judged: UnSAF is label-free). An empty
reply is neither; it is counted in ``n_empty`` and left out of the four types.

Types (paper eq. 1): TA answered an answerable question, FA answered an unanswerable one, TU abstained
on an unanswerable one, FU abstained on an answerable one. ``audacity = TA / (TA + FA)``,
``timidity = TA / (TA + FU)``, ``UnF1`` their harmonic mean. Undefined is not zero:

- a model that abstained on every question (TA + FA = 0) has an undefined audacity (NaN) and, as the
  paper's eq. 1 defines it, UnF1 = 0;
- with no answerable question classified (TA + FU = 0) timidity is NaN and so is UnF1 (unless TA + FA = 0);
- a run with no parsed question, or none classified, is NaN throughout; the table's ``note`` says why,
  and rankings leave such rows out (:mod:`prompt_reliability.analysis.metric_stability`).

Several seeds (the simulated self-assessor) pool their counts: the four counts are sums over seeds and
the ratios come from the pooled counts (so UnF1 always matches the row's counts); ``unf1_seed_sd`` is
the spread of the per-seed UnF1.

Conventional metrics (paper Appendix B) come from *task answers* (``correct``, ``confidence`` = the
top-label confidence of the model's answer to a benchmark item): ``accuracy``, ``brier`` (eq. 2),
``macro_ce`` (eq. 6), ``ece`` and ``mce_top`` (eq. 4 and 5, 15 equal-width bins of the top-label
confidence against accuracy; ``mce_top`` is distinct from the core paper's class-1 ``mce``). Without
task answers they are NaN and ``conventional_note`` says why.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import metrics
from prompt_reliability.base import io
from prompt_reliability.data import self_assessment_protocol as protocol

log = logging.getLogger(__name__)

SETTINGS, KINDS, OPTION_LETTERS = protocol.SETTINGS, protocol.KINDS, protocol.OPTION_LETTERS
TYPES = ("ta", "fa", "tu", "fu")
CONVENTIONAL = ("accuracy", "brier", "macro_ce", "ece", "mce_top")

_EMPHASIS = re.compile(r"[*_`#]+")
_LABEL = re.compile(r"^\s*(?:\d+\s*[.):]\s*)?(?:question|q)\s*\d*\s*[.):：-]?\s*", re.IGNORECASE)
_LABEL_STRICT = re.compile(r"^\s*(?:\d+\s*[.):]\s*)?(?:question\s*\d*\s*[:：.)-]|q\s*\d+\s*[:.)-])", re.IGNORECASE)
_NUMBERED = re.compile(r"^\s*(?:\d+\s*[.):]|[-•*])\s+")
_OPTION_LINE = re.compile(r"^\s*(?:[-•*]\s*)?\(?([A-Ha-h])\s*[.):]\)?\s+(.*)$")
_OPTION_INLINE = re.compile(r"(?:^|\s)\(?([A-H])[.)]\)?\s+")
_ABSTAIN = re.compile(
    r"\bunanswerable\b|\bnot\s+answerable\b"
    r"|\b(?:can\s*not|can't|cannot|could\s*not|couldn't|unable\s+to|impossible\s+to|not\s+possible\s+to|no\s+way\s+to)"
    r"\s+(?:be\s+)?(?:answer|tell|determine|know|say|see|identify|infer|verify)"
    r"|\bi\s+(?:do\s+not|don't)\s+know\b|\b(?:can\s*not|can't|cannot)\s+(?:be\s+)?determined?\b"
    r"|\b(?:not|insufficient)\s+enough\s+(?:information|info|context|detail)|\binsufficient\s+(?:information|context)"
    r"|\b(?:does|do|did)\s*(?:n't|\s+not)\s+(?:provide|show|contain|give|include)\s+(?:enough|sufficient|any)\s+"
    r"(?:information|detail|clue|indication|context)"
    r"|\bno\s+(?:information|way\s+of\s+knowing)\b|\bthere\s+is\s+no\s+(?:way|information)\b",
    re.IGNORECASE)
# whole replies that abstain (as words inside a longer answer they need not: "the brand is unknown to me" is
# caught above only when it says so)
_ABSTAIN_WHOLE = re.compile(r"(?:n/?a|unknown|unclear|not sure|i'?m not sure|i am not sure|no idea|uncertain|"
                            r"no answer|not applicable|unsure|cannot say|can't say|hard to say|impossible to say)",
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
    lines = [line for line in (_clean(raw) for raw in (text or "").splitlines()) if line]
    # a reply with labelled or numbered questions: the unlabelled lines before the first are preamble
    structured = [i for i, line in enumerate(lines) if _LABEL_STRICT.match(line) or _NUMBERED.match(line)]
    first = structured[0] if structured else 0
    for index, line in enumerate(lines):
        if index < first:
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
    value = normalise_reply(text)
    return bool(_ABSTAIN.search(value) or _ABSTAIN_WHOLE.fullmatch(value))


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


def classify_all(kinds: Sequence[str], replies: Sequence[str | None]) -> list[str | None]:
    """:func:`classify` of every (kind, reply), reading each distinct reply once (replies repeat a lot)."""
    seen: dict[str | None, tuple[bool, bool]] = {}
    out: list[str | None] = []
    for kind, reply in zip(kinds, replies):
        if reply not in seen:
            seen[reply] = (not normalise_reply(reply), is_abstention(reply))
        empty, abstained = seen[reply]
        if kind not in KINDS:
            raise ValueError(f"question kind must be one of {KINDS}, got {kind!r}")
        out.append(None if empty else ("fu" if abstained else "ta") if kind == "answerable" else
                   ("tu" if abstained else "fa"))
    return out


def unf1_scores(ta: int, fa: int, tu: int, fu: int) -> dict[str, float]:
    """Audacity, timidity and UnF1 from the four counts (module docstring: NaN where undefined, UnF1 0 at TA + FA = 0)."""
    nan = float("nan")
    audacity = ta / (ta + fa) if ta + fa else nan
    timidity = ta / (ta + fu) if ta + fu else nan
    if ta + fa == 0:
        unf1 = 0.0  # the paper's eq. 1: a model that answers nothing scores 0
    elif ta + fu == 0:
        unf1 = nan
    else:
        unf1 = 2 * audacity * timidity / (audacity + timidity) if audacity + timidity else 0.0
    return {"audacity": audacity, "timidity": timidity, "unf1": unf1}


def undefined_note(n_questions: int, n_unparseable: int, counts: Mapping[str, int], n_parsed: int | None = None) -> str:
    """Why a row's ratios are undefined ('' when they are defined); ``n_parsed``: questions parsed in the run."""
    if n_questions == 0 and n_parsed:
        return f"no answer under this variant ({n_parsed} questions parsed): undefined, left out of rankings"
    if n_questions == 0:
        return f"no parsed question ({n_unparseable} requested, none parseable): undefined, left out of rankings"
    if sum(counts[t] for t in TYPES) == 0:
        return "no classified reply (every reply empty): undefined, left out of rankings"
    if counts["ta"] + counts["fa"] == 0:
        return "abstained on every question: audacity undefined, UnF1 = 0 (paper eq. 1)"
    if counts["ta"] + counts["fu"] == 0:
        return "no answerable question among the parsed ones: timidity and UnF1 undefined"
    return ""


def conventional_metrics(task: pl.DataFrame | None, n_bins: int = 15) -> dict[str, Any]:
    """Accuracy, Brier, MacroCE, ECE and top-label MCE of task answers (``correct``, ``confidence``); NaN + note without."""
    nan = float("nan")
    empty = {"n_task_items": 0, **dict.fromkeys(CONVENTIONAL, nan)}
    if task is None:
        return {**empty, "conventional_note": "no task answers with confidence and correctness for this run"}
    known = task.filter(pl.col("correct").is_not_null() & pl.col("confidence").is_not_null())
    if known.height == 0:
        return {**empty, "conventional_note": "no row carries both confidence and correctness: conventional metrics "
                                              "undefined"}
    y = known["correct"].cast(pl.Float64).to_numpy()
    p = known["confidence"].to_numpy()
    return {"n_task_items": known.height, "accuracy": float(y.mean()), "brier": metrics.brier(y, p),
            "macro_ce": metrics.macro_ce(y, p), "ece": metrics.ece(y, p, n_bins), "mce_top": metrics.mce(y, p, n_bins),
            "conventional_note": ""}


# --- tables --------------------------------------------------------------------------------------


QUESTION_SCHEMA = {"question_id": pl.String, "sample_id": pl.String, "image_path": pl.String, "setting": pl.String,
                   "kind": pl.String, "question": pl.String, **{f"option_{c}": pl.String for c in "abcd"}}
PARSE_SCHEMA = {"sample_id": pl.String, "kind": pl.String, "n_parsed": pl.Int64, "n_rejected": pl.Int64,
                "n_unparseable": pl.Int64}


def parse_generations(generations: pl.DataFrame, k: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each stage-1 row ``sample_id, image_path, setting, kind, text`` parsed once: (questions, parse counts).

    Questions: ``question_id, sample_id, image_path, setting, kind, question, option_a..option_d`` (options
    null for ``open``). Parse counts, per generation: ``sample_id, kind, n_parsed, n_rejected, n_unparseable``.
    """
    rows, counts = [], []
    for gen in generations.iter_rows(named=True):
        parsed = parse_questions(gen["text"], gen["setting"], k)
        for j, q in enumerate(parsed.questions):
            rows.append({
                "question_id": f"{gen['sample_id']}:{gen['kind']}:{j}", "sample_id": gen["sample_id"],
                "image_path": gen["image_path"], "setting": gen["setting"], "kind": gen["kind"], "question": q.text,
                **{f"option_{letter.lower()}": q.options.get(letter) for letter in OPTION_LETTERS},
            })
        counts.append({"sample_id": gen["sample_id"], "kind": gen["kind"], "n_parsed": len(parsed.questions),
                       "n_rejected": parsed.rejected, "n_unparseable": parsed.unparseable})
    return pl.DataFrame(rows, schema=QUESTION_SCHEMA), pl.DataFrame(counts, schema=PARSE_SCHEMA)


def questions_table(generations: pl.DataFrame, k: int) -> pl.DataFrame:
    """The parsed questions of :func:`parse_generations`."""
    return parse_generations(generations, k)[0]


def parse_counts(generations: pl.DataFrame, k: int) -> pl.DataFrame:
    """The per-generation parse counts of :func:`parse_generations`."""
    return parse_generations(generations, k)[1]


def write_questions(generations: str, questions: str, parse_report: str, *, k: int) -> pl.DataFrame:
    """Rule ``self_assessment_questions``: stage-1 generations -> questions Parquet + per-generation parse counts."""
    gens = pl.read_parquet(generations)
    table, counts = parse_generations(gens, k)
    io.write_parquet(table, questions)
    io.write_parquet(counts, parse_report)
    expected = gens.height * k
    log.info("%d of %d requested questions parsed (%d generations, %d malformed candidates)",
                                     table.height, expected, gens.height, int(counts["n_rejected"].sum()))
    return table


def type_counts(answers: pl.DataFrame) -> pl.DataFrame:
    """Per variant (and seed, when the rows have one): ``variant, seed, n_questions, ta, fa, tu, fu, n_empty``."""
    frame = answers if "seed" in answers.columns else answers.with_columns(pl.lit(0, pl.Int64).alias("seed"))
    frame = frame.with_columns(pl.Series("type", classify_all(frame["kind"], frame["reply"]), dtype=pl.String))
    return (frame.group_by("variant", "seed", maintain_order=True)
            .agg(pl.len().cast(pl.Int64).alias("n_questions"),
                 *((pl.col("type") == t).sum().cast(pl.Int64).alias(t) for t in TYPES),
                 pl.col("type").is_null().sum().cast(pl.Int64).alias("n_empty")))


TABLE_SCHEMA = {"model": pl.String, "dataset": pl.String, "setting": pl.String, "variant": pl.String,
                "n_questions": pl.Int64, "n_unparseable": pl.Int64, **{t: pl.Int64 for t in TYPES},
                "audacity": pl.Float64, "timidity": pl.Float64, "unf1": pl.Float64, "n_empty": pl.Int64,
                "n_seeds": pl.Int64, "unf1_seed_sd": pl.Float64, "note": pl.String, "n_task_items": pl.Int64,
                "accuracy": pl.Float64, "brier": pl.Float64, "macro_ce": pl.Float64, "ece": pl.Float64,
                "mce_top": pl.Float64, "conventional_note": pl.String}


def score_table(answers: pl.DataFrame, parse_report: pl.DataFrame, variants: Sequence[str], *, model: str, dataset: str,
                setting: str, task: pl.DataFrame | None = None, n_bins: int = 15) -> pl.DataFrame:
    """The rows of ``self_assessment.csv`` for one (model, dataset, setting): one per variant (TABLE_SCHEMA).

    ``answers`` rows ``kind, variant, reply`` (and ``seed``); counts are pooled over seeds (module docstring).
    ``parse_report`` counts the unparseable questions of every seed; ``task`` gives the conventional metrics.
    """
    per_seed = type_counts(answers) if answers.height else None
    n_unparseable = int(parse_report["n_unparseable"].sum()) if parse_report.height else 0
    n_parsed = int(parse_report["n_parsed"].sum()) if "n_parsed" in parse_report.columns else None
    conventional = conventional_metrics(task, n_bins)
    rows = []
    for variant in variants:
        part = per_seed.filter(pl.col("variant") == variant) if per_seed is not None else None
        if part is None or part.height == 0:
            c = {"n_questions": 0, **dict.fromkeys(TYPES, 0), "n_empty": 0}
            seed_unf1: list[float] = []
        else:
            c = {key: int(part[key].sum()) for key in ("n_questions", *TYPES, "n_empty")}
            seed_unf1 = [unf1_scores(r["ta"], r["fa"], r["tu"], r["fu"])["unf1"] for r in part.iter_rows(named=True)]
        note = undefined_note(c["n_questions"], n_unparseable, c, n_parsed)
        scores = unf1_scores(c["ta"], c["fa"], c["tu"], c["fu"])
        if c["n_questions"] == 0 or sum(c[t] for t in TYPES) == 0:
            scores = dict.fromkeys(scores, float("nan"))
        finite = [v for v in seed_unf1 if not math.isnan(v)]
        rows.append({"model": model, "dataset": dataset, "setting": setting, "variant": variant,
                     "n_questions": c["n_questions"], "n_unparseable": n_unparseable, **{t: c[t] for t in TYPES},
                     **scores, "n_empty": c["n_empty"], "n_seeds": len(seed_unf1),
                     "unf1_seed_sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"), "note": note,
                     **conventional})
    return pl.DataFrame(rows, schema=TABLE_SCHEMA)


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
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame(schema=TABLE_SCHEMA)
