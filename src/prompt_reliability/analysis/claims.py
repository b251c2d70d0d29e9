"""The claims check: the paper's headline statistics recomputed from this run's tables.

Claims are data (``workflow/claims.yaml``, or the file config key ``claims`` names): each names a
table (the run's Parquet table ``<table>``), the row it reads (``where``) and a statistic (kinds in
:data:`KINDS`, documented in the claims file). :func:`load_claims` rejects a malformed file with the
claim and the key at fault; :func:`check_claims` evaluates every claim and never drops one: a claim
whose table or row is missing in this run gets an empty ``this_run`` / ``holds`` and a ``note``.

Table ``claims``: ``claim, statistic, this_run, pairs, paper, holds, paper_table, id, source, note``
(``this_run`` is text, as the paper prints it: counts as integers, other statistics to 2 decimals).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from prompt_reliability.base import tables

KINDS = {
    "count": {"required": {"count", "pairs"}, "optional": {"at_least"}},
    "best_row": {"required": {"column", "best", "pairs"}, "optional": set()},
    "best_column": {"required": {"column", "others", "best", "pairs"}, "optional": set()},
}
CLAIM_KEYS = {"id", "claim", "paper_table", "table", "where", "statistic", "paper"}
COLUMNS = ("claim", "statistic", "this_run", "pairs", "paper", "holds", "paper_table", "id", "source", "note")


class ClaimsError(ValueError):
    """The claims file is malformed; the message names the file, the claim and the key."""


def _fail(source: str, where: str, message: str) -> None:
    raise ClaimsError(f"{source}: {where}: {message}")


def validate_claims(document: Any, source: str = "claims") -> list[dict[str, Any]]:
    """The claims of a parsed claims document, checked key by key."""
    if not isinstance(document, Mapping) or set(document) != {"claims"}:
        _fail(source, "top level", "expected a mapping with the single key 'claims' (a list of claims)")
    claims = document["claims"]
    if not isinstance(claims, list) or not claims:
        _fail(source, "claims", "expected a non-empty list of claims")
    seen: set[str] = set()
    for k, claim in enumerate(claims):
        at = f"claim {k + 1}"
        if not isinstance(claim, Mapping):
            _fail(source, at, f"expected a mapping with keys {sorted(CLAIM_KEYS)}, got {type(claim).__name__}")
        at = f"claim {k + 1} ({claim.get('id', 'no id')!r})"
        missing, unknown = CLAIM_KEYS - set(claim), set(claim) - CLAIM_KEYS
        if missing:
            _fail(source, at, f"missing key(s) {sorted(missing)}")
        if unknown:
            _fail(source, at, f"unknown key(s) {sorted(unknown)}; allowed: {sorted(CLAIM_KEYS)}")
        for key in ("id", "claim", "paper_table", "table", "paper"):
            if not isinstance(claim[key], str) or not claim[key]:
                _fail(source, at, f"{key!r} must be a non-empty string (quote numbers such as \"2.00\")")
        if claim["id"] in seen:
            _fail(source, at, f"duplicate id {claim['id']!r}")
        seen.add(claim["id"])
        if not isinstance(claim["where"], Mapping) or not claim["where"]:
            _fail(source, at, "'where' must be a non-empty mapping column -> value")
        statistic = claim["statistic"]
        if not isinstance(statistic, Mapping) or statistic.get("kind") not in KINDS:
            _fail(source, at, f"'statistic' must be a mapping whose 'kind' is one of {sorted(KINDS)}")
        spec = KINDS[statistic["kind"]]
        keys = set(statistic) - {"kind"}
        if spec["required"] - keys:
            _fail(source, at, f"statistic {statistic['kind']!r} lacks key(s) {sorted(spec['required'] - keys)}")
        if keys - spec["required"] - spec["optional"]:
            _fail(source, at, f"statistic {statistic['kind']!r} has unknown key(s) "
                              f"{sorted(keys - spec['required'] - spec['optional'])}")
        if "best" in statistic and statistic["best"] not in ("max", "min"):
            _fail(source, at, "statistic 'best' must be 'max' or 'min'")
        if "at_least" in statistic and not (isinstance(statistic["at_least"], (int, float))
                                            and 0 < statistic["at_least"] <= 1):
            _fail(source, at, "statistic 'at_least' must be a share in (0, 1]")
    return [dict(c) for c in claims]


def load_claims(path: str | Path) -> list[dict[str, Any]]:
    """The validated claims of the YAML file at ``path``."""
    try:
        document = yaml.safe_load(Path(path).read_text())
    except OSError as err:
        raise ClaimsError(f"{path}: cannot read the claims file ({err})") from None
    except yaml.YAMLError as err:
        raise ClaimsError(f"{path}: not valid YAML ({err})") from None
    return validate_claims(document, str(path))


def claim_tables(claims: Sequence[Mapping[str, Any]]) -> list[str]:
    """The table names the claims read, in first-use order."""
    return list(dict.fromkeys(c["table"] for c in claims))


def _as_list(value: str | Sequence[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _row(frame: pl.DataFrame, where: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str]:
    absent = [c for c in where if c not in frame.columns]
    if absent:
        return None, f"table lacks column(s) {absent}"
    rows = frame.filter(*(pl.col(c).cast(pl.String) == str(v) for c, v in where.items()))
    condition = ", ".join(f"{c}={v}" for c, v in where.items())
    if not len(rows):
        return None, f"no row with {condition} in this run"
    if len(rows) > 1:
        return None, f"{len(rows)} rows with {condition}; a claim reads one"
    return rows.row(0, named=True), ""


def evaluate_claim(claim: Mapping[str, Any], frame: pl.DataFrame | None) -> dict[str, Any]:
    """One claims-table row: this run's statistic, its pairs and whether the claim holds."""
    statistic = claim["statistic"]
    where = ", ".join(f"{c}={v}" for c, v in claim["where"].items())
    kind = statistic["kind"]
    described = {"count": f"{'+'.join(_as_list(statistic.get('count', [])))} of pairs",
                 "best_row": f"{statistic.get('column')} ({statistic.get('best')} over rows)",
                 "best_column": f"{statistic.get('column')} vs {statistic.get('others')} ({statistic.get('best')})"}[kind]
    out = {"claim": claim["claim"], "statistic": f"{claim['table']}[{where}].{described}", "this_run": None,
           "pairs": None, "paper": claim["paper"], "holds": None, "paper_table": claim["paper_table"], "id": claim["id"],
           "source": claim["table"], "note": ""}
    if frame is None:
        return {**out, "note": f"missing: table {claim['table']!r} was not produced in this run"}
    row, problem = _row(frame, claim["where"])
    if row is None:
        return {**out, "note": f"missing: {problem}"}
    needed = [*_as_list(statistic.get("count", [])), statistic.get("column"), *statistic.get("others", []),
              statistic["pairs"]]
    absent = [c for c in needed if c is not None and c not in row]
    if absent:
        return {**out, "note": f"missing: table {claim['table']!r} lacks column(s) {absent}"}
    pairs = int(row[statistic["pairs"]])
    if kind == "count":
        raw = sum(row[c] for c in _as_list(statistic["count"]))
        value = float(raw)
        share = statistic.get("at_least")
        holds = value >= share * pairs if share is not None else 2 * value > pairs
    else:
        raw = row[statistic["column"]]
        value = float(raw)
        better = max if statistic["best"] == "max" else min
        if kind == "best_row":
            rivals = [float(v) for v in frame[statistic["column"]].to_list() if v is not None]
        else:
            rivals = [float(row[c]) for c in statistic["others"]] + [value]
        holds = value == better(rivals)
    text = str(raw) if isinstance(raw, int) else f"{value:.2f}"
    return {**out, "this_run": text, "pairs": pairs, "holds": bool(holds) if pairs else None,
            "note": "" if pairs else "no evaluation pairs"}


def check_claims(claims: Sequence[Mapping[str, Any]], frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The claims table; ``frames`` maps table names to this run's tables (absent = not produced)."""
    schema = {"claim": pl.String, "statistic": pl.String, "this_run": pl.String, "pairs": pl.Int64,
              "paper": pl.String, "holds": pl.Boolean, "paper_table": pl.String, "id": pl.String, "source": pl.String,
              "note": pl.String}
    return pl.DataFrame([evaluate_claim(c, frames.get(c["table"])) for c in claims], schema=schema)


def file_hash(path: str | Path) -> str:
    """sha256 (16 hex) of the claims file's bytes: the rule re-runs when the claims change, not when the path does."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def write_claims(*, claims: str | Path, source_tables: Sequence[str], table: str, csv: str, md: str,
                 claims_hash: str | None = None) -> pl.DataFrame:
    """Rule-facing: read the claims file and this run's Parquet tables, write the claims table."""
    frames = {Path(p).name.removesuffix(".parquet"): pl.read_parquet(p) for p in source_tables if Path(p).exists()}
    return tables.write_table(check_claims(load_claims(claims), frames), table, csv, md,
                              "Claims of the paper checked on this run")
