"""The ``import`` backend: per-prompt scores produced elsewhere.

Accepted files:
- JSONL, one object per line: ``{"sample_id": "...", "split": "test", "label": 1,
  "prompt_id": "A1", "first_probs": {"U": 0.73, "S": 0.27}}``;
- Parquet with ``sample_id, split, label, prompt_id`` and either ``p_unsafe`` or
  ``logit_u, logit_s``.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import polars as pl

from prompt_reliability.base import io

PROB_SUM_TOLERANCE = 1e-6
_REQUIRED = ("sample_id", "split", "label", "prompt_id")


class ScoreFileError(ValueError):
    """A score file is malformed; the message names the file, the line and the fix."""


def read_import_file(path: str | Path, label_tokens: tuple[str, str] = ("U", "S")) -> pl.DataFrame:
    """Rows ``sample_id, split, label, prompt_id, logit_u, logit_s, p_unsafe`` from one score file."""
    path = Path(path)
    if not path.exists():
        raise ScoreFileError(f"score file {str(path)!r} does not exist (relative paths start at the working directory)")
    if path.suffix.lower() == ".parquet":
        rows = _read_parquet(path)
    elif path.suffix.lower() in (".jsonl", ".ndjson", ".json"):
        rows = _read_jsonl(path, label_tokens)
    else:
        raise ScoreFileError(f"{path}: unknown score file type {path.suffix!r}; use .jsonl or .parquet")
    dupes = rows.filter(pl.struct("sample_id", "prompt_id").is_duplicated())
    if len(dupes):
        first = dupes.row(0, named=True)
        raise ScoreFileError(f"{path}: sample {first['sample_id']!r} has more than one row for prompt {first['prompt_id']!r}; keep one")
    return rows


def _read_jsonl(path: Path, label_tokens: tuple[str, str]) -> pl.DataFrame:
    unsafe_token, safe_token = label_tokens
    columns: dict[str, list] = {k: [] for k in ("sample_id", "split", "label", "prompt_id", "p_unsafe", "p_safe")}
    for line_no, record in io.jsonl_records(path, ScoreFileError):
        where = f"{path}, line {line_no}"
        if not isinstance(record, dict):
            raise ScoreFileError(f"{where}: expected a JSON object")
        missing = [k for k in (*_REQUIRED, "first_probs") if k not in record]
        if missing:
            raise ScoreFileError(f"{where}: missing field(s) {missing}")
        probs = record["first_probs"]
        if not isinstance(probs, dict) or unsafe_token not in probs or safe_token not in probs:
            raise ScoreFileError(f"{where}: field 'first_probs' must be an object with keys {unsafe_token!r} and {safe_token!r}")
        p_u, p_s = _probability(probs[unsafe_token], where, unsafe_token), _probability(probs[safe_token], where, safe_token)
        if abs(p_u + p_s - 1.0) > PROB_SUM_TOLERANCE:
            raise ScoreFileError(f"{where}: first_probs must sum to 1 within {PROB_SUM_TOLERANCE} (got {p_u + p_s!r}); renormalise over the two labels")
        columns["label"].append(_label(record["label"], where))
        for key in ("sample_id", "split", "prompt_id"):
            columns[key].append(str(record[key]))
        columns["p_unsafe"].append(p_u)
        columns["p_safe"].append(p_s)
    if not columns["sample_id"]:
        raise ScoreFileError(f"{path}: the file has no rows")
    frame = pl.DataFrame(columns, schema={"sample_id": pl.Utf8, "split": pl.Utf8, "label": pl.Int8, "prompt_id": pl.Utf8, "p_unsafe": pl.Float64, "p_safe": pl.Float64})
    # log-probabilities are logits up to a shared constant, so sigmoid(logit_u - logit_s) = p_unsafe
    tiny = np.finfo(np.float64).tiny
    return frame.with_columns(
        pl.col("p_unsafe").clip(tiny, None).log().alias("logit_u"), pl.col("p_safe").clip(tiny, None).log().alias("logit_s")
    ).drop("p_safe")


def _read_parquet(path: Path) -> pl.DataFrame:
    frame = pl.read_parquet(path)
    missing = [c for c in _REQUIRED if c not in frame.columns]
    if missing:
        raise ScoreFileError(f"{path}: missing column(s) {missing}")
    frame = frame.with_columns(pl.col("sample_id", "split", "prompt_id").cast(pl.Utf8))
    bad_label = frame.with_row_index().filter(~pl.col("label").cast(pl.Int64, strict=False).is_in([0, 1]) | pl.col("label").is_null())
    if len(bad_label):
        raise ScoreFileError(f"{path}, row {bad_label['index'][0]}: field 'label' must be 0 (safe) or 1 (unsafe), got {bad_label['label'][0]!r}")
    frame = frame.with_columns(pl.col("label").cast(pl.Int8))
    if {"logit_u", "logit_s"} <= set(frame.columns):
        frame = frame.with_columns(pl.col("logit_u", "logit_s").cast(pl.Float64))
        frame = frame.with_columns((1.0 / (1.0 + (pl.col("logit_s") - pl.col("logit_u")).exp())).alias("p_unsafe"))
    elif "p_unsafe" in frame.columns:
        p = pl.col("p_unsafe").cast(pl.Float64)
        frame = frame.with_columns(p.alias("p_unsafe"))
        tiny = np.finfo(np.float64).tiny
        frame = frame.with_columns(p.clip(tiny, None).log().alias("logit_u"), (1.0 - p).clip(tiny, None).log().alias("logit_s"))
    else:
        raise ScoreFileError(f"{path}: needs either column 'p_unsafe' or columns 'logit_u' and 'logit_s'")
    bad = frame.with_row_index().filter(~pl.col("p_unsafe").is_between(0.0, 1.0) | pl.col("p_unsafe").is_nan() | pl.col("p_unsafe").is_null())
    if len(bad):
        raise ScoreFileError(f"{path}, row {bad['index'][0]}: p_unsafe must be a probability in [0, 1], got {bad['p_unsafe'][0]!r}")
    return frame.select(*_REQUIRED, "p_unsafe", "logit_u", "logit_s")


def _probability(value, where: str, token: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ScoreFileError(f"{where}: first_probs[{token!r}] must be a probability in [0, 1], got {value!r}")
    return float(value)


def _label(value, where: str) -> int:
    if isinstance(value, bool) or value not in (0, 1):
        raise ScoreFileError(f"{where}: field 'label' must be 0 (safe) or 1 (unsafe), got {value!r}")
    return int(value)
