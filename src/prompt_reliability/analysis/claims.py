"""The claims check: each paper's headline statistics recomputed from this run's tables, with a verdict.

Claims are data: one YAML file per paper (``workflow/claims/<paper>.yaml``; config key ``claims``
names others). Each file has ``paper`` (the paper's short name) and ``claims``; each claim names a
table (the run's Parquet table ``<table>``), the row it reads (``where``) and a statistic (kinds in
:data:`KINDS`). :func:`load_claims` rejects a malformed file with the file, the claim and the key at
fault, including a paper value not written in its statistic's notation; :func:`check_claims`
evaluates every claim and never drops one.

Verdicts (:data:`VERDICTS`; the rule is pinned here and written in ``workflow/claims/README.md``):

* count claims (paper ``K/N`` with K/N > 1/2, this run k of n pairs): ``contradicted`` when
  k/n <= 1/2; else ``weaker`` when the one-sided Boschloo exact test (H1: this run's rate is below
  the paper's, :func:`scipy.stats.boschloo_exact`) gives p < :data:`ALPHA`; else ``reproduced``.
  ``p_value`` is that test's p-value.
* best claims (``best_row``: the named row is the best of the table's rows; ``best_column``: the
  named column is the best of ``others`` in the row): ``reproduced`` when the named value is this
  run's best or within the statistic's ``tolerance`` of it (default 0, in the column's units);
  ``weaker`` when it is not but still strictly better than at least half of its rivals;
  ``contradicted`` otherwise. When the paper value is a count ``K/N`` (the column counts pairs),
  the count rule is applied to the named value as well and the worse verdict stands.
* ``not testable`` when this run lacks the claim's table, row or column, or has no pairs (``note``).

Table ``claims``: ``claim, statistic, this_run, pairs, paper, verdict, p_value, paper_name,
paper_table, id, source, note`` (``this_run`` is text, as the paper prints it: counts as integers,
other statistics to 2 decimals).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from prompt_reliability.base import tables

KINDS = {
    "count": {"required": {"count", "pairs"}, "optional": set()},
    "best_row": {"required": {"column", "best", "pairs"}, "optional": {"tolerance"}},
    "best_column": {"required": {"column", "others", "best", "pairs"}, "optional": {"tolerance"}},
}
CLAIM_KEYS = {"id", "claim", "paper_table", "table", "where", "statistic", "paper"}
FILE_KEYS = {"paper", "claims"}
VERDICTS = ("reproduced", "weaker", "contradicted", "not testable")
ALPHA = 0.05
COUNT_NOTATION = re.compile(r"^(\d+)/(\d+)$")
NUMBER_NOTATION = re.compile(r"^-?\d+(\.\d+)?$")
SCHEMA = {"claim": pl.String, "statistic": pl.String, "this_run": pl.String, "pairs": pl.Int64, "paper": pl.String,
          "verdict": pl.String, "p_value": pl.Float64, "paper_name": pl.String, "paper_table": pl.String,
          "id": pl.String, "source": pl.String, "note": pl.String}


class ClaimsError(ValueError):
    """The claims file is malformed; the message names the file, the claim and the key."""


def _fail(source: str, where: str, message: str) -> None:
    raise ClaimsError(f"{source}: {where}: {message}")


def paper_count(paper: str) -> tuple[int, int] | None:
    """(K, N) of a paper value written ``K/N``; None for any other notation."""
    match = COUNT_NOTATION.match(paper)
    return (int(match[1]), int(match[2])) if match else None


def _check_paper_value(source: str, at: str, kind: str, paper: str) -> None:
    count = paper_count(paper)
    if kind == "count":
        if count is None:
            _fail(source, at, f"paper value {paper!r} is not in a count statistic's notation K/N (e.g. 12/14); "
                              "write the paper's single figure")
        k, n = count
        if not 0 < n or not 2 * k > n or k > n:
            _fail(source, at, f"paper value {paper!r}: a count claim states a majority of pairs (N/2 < K <= N); "
                              "phrase a minority as its complement")
    elif count is None and not NUMBER_NOTATION.match(paper):
        _fail(source, at, f"paper value {paper!r} is not in a {kind} statistic's notation: a count K/N (the column "
                          "counts pairs) or a number such as \"2.00\"")
    elif count is not None and (count[1] <= 0 or count[0] > count[1]):
        _fail(source, at, f"paper value {paper!r}: K/N needs 0 <= K <= N and N > 0")


def validate_claims(document: Any, source: str = "claims") -> list[dict[str, Any]]:
    """The claims of a parsed claims document, checked key by key; each gets the file's ``paper_name``."""
    if not isinstance(document, Mapping) or set(document) != FILE_KEYS:
        _fail(source, "top level", "expected a mapping with the keys 'paper' (the paper's short name) and "
                                   "'claims' (a list of claims)")
    if not isinstance(document["paper"], str) or not document["paper"]:
        _fail(source, "paper", "expected the paper's short name (a non-empty string)")
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
        tolerance = statistic.get("tolerance", 0)
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not tolerance >= 0:
            _fail(source, at, "statistic 'tolerance' must be a number >= 0 (in the column's units)")
        _check_paper_value(source, at, statistic["kind"], claim["paper"])
    return [{**c, "paper_name": document["paper"]} for c in claims]


def load_claims(paths: str | Path | Sequence[str | Path]) -> list[dict[str, Any]]:
    """The validated claims of the YAML file(s) at ``paths``, in file order; ids are unique over all files."""
    claims: list[dict[str, Any]] = []
    owner: dict[str, str] = {}
    for path in [paths] if isinstance(paths, (str, Path)) else paths:
        try:
            document = yaml.safe_load(Path(path).read_text())
        except OSError as err:
            raise ClaimsError(f"{path}: cannot read the claims file ({err})") from None
        except yaml.YAMLError as err:
            raise ClaimsError(f"{path}: not valid YAML ({err})") from None
        for claim in validate_claims(document, str(path)):
            if claim["id"] in owner:
                _fail(str(path), f"claim {claim['id']!r}", f"id already used in {owner[claim['id']]}; ids are "
                                                           "unique over all claims files")
            owner[claim["id"]] = str(path)
            claims.append(claim)
    return claims


def claim_files(configured: str | Sequence[str] | None, default_dir: str | Path) -> list[str]:
    """The claims files of a run: the configured file(s), or every ``*.yaml`` of ``default_dir`` (sorted)."""
    if configured:
        return [configured] if isinstance(configured, str) else list(configured)
    return [str(p) for p in sorted(Path(default_dir).glob("*.yaml"))]


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


def boschloo_below(k: int, n: int, paper_k: int, paper_n: int) -> float:
    """One-sided Boschloo exact p-value for "this run's rate k/n is below the paper's K/N"."""
    from scipy.stats import boschloo_exact  # scipy.stats costs ~0.3 s to import: only the claims job needs it

    # columns are the two samples (this run, the paper); row 0 counts the pairs where the claim holds
    return float(boschloo_exact([[k, paper_k], [n - k, paper_n - paper_k]], alternative="less").pvalue)


def count_verdict(k: int, n: int, paper: tuple[int, int]) -> tuple[str, float]:
    """(verdict, p-value) of a count claim: k of this run's n pairs against the paper's K/N."""
    p_value = boschloo_below(k, n, *paper)
    if 2 * k <= n:
        return "contradicted", p_value
    return ("weaker" if p_value < ALPHA else "reproduced"), p_value


def best_verdict(value: float, rivals: Sequence[float], best: str, tolerance: float) -> str:
    """Verdict of "``value`` is the best": within ``tolerance`` of the best of ``rivals`` (value included)
    reproduces; else strictly better than at least half of the other rivals is weaker; else contradicted."""
    sign = 1.0 if best == "max" else -1.0
    top = max(sign * r for r in rivals)
    if sign * value >= top - tolerance:
        return "reproduced"
    others = list(rivals)
    others.remove(value)
    beaten = sum(sign * value > sign * r for r in others)
    return "weaker" if 2 * beaten >= len(others) else "contradicted"


def _worse(a: str, b: str) -> str:
    return max(a, b, key=VERDICTS.index)


def evaluate_claim(claim: Mapping[str, Any], frame: pl.DataFrame | None) -> dict[str, Any]:
    """One claims-table row: this run's statistic, its pairs, the verdict and (count notation) the p-value."""
    statistic = claim["statistic"]
    where = ", ".join(f"{c}={v}" for c, v in claim["where"].items())
    kind = statistic["kind"]
    described = {"count": f"{'+'.join(_as_list(statistic.get('count', [])))} of pairs",
                 "best_row": f"{statistic.get('column')} ({statistic.get('best')} over rows)",
                 "best_column": f"{statistic.get('column')} vs {statistic.get('others')} ({statistic.get('best')})"}[kind]
    out = {"claim": claim["claim"], "statistic": f"{claim['table']}[{where}].{described}", "this_run": None,
           "pairs": None, "paper": claim["paper"], "verdict": "not testable", "p_value": None,
           "paper_name": claim.get("paper_name", ""), "paper_table": claim["paper_table"], "id": claim["id"],
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
    pairs = int(row[statistic["pairs"]] or 0)
    raw = (sum(row[c] for c in _as_list(statistic["count"])) if kind == "count" else row[statistic["column"]])
    if not pairs or raw is None or (isinstance(raw, float) and math.isnan(raw)):
        return {**out, "pairs": pairs, "note": "no evaluation pairs" if not pairs else "this run's value is undefined"}
    value = float(raw)
    paper = paper_count(claim["paper"])
    verdict, p_value = count_verdict(int(raw), pairs, paper) if paper else ("reproduced", None)
    if kind != "count":
        if kind == "best_row":
            rivals = [float(v) for v in frame[statistic["column"]].to_list() if v is not None and v == v]
        else:
            rivals = [float(row[c]) for c in statistic["others"] if row[c] is not None and row[c] == row[c]] + [value]
        verdict = _worse(verdict, best_verdict(value, rivals, statistic["best"], statistic.get("tolerance", 0)))
    text = str(int(raw)) if isinstance(raw, int) else f"{value:.2f}"
    return {**out, "this_run": text, "pairs": pairs, "verdict": verdict, "p_value": p_value}


def check_claims(claims: Sequence[Mapping[str, Any]], frames: Mapping[str, pl.DataFrame]) -> pl.DataFrame:
    """The claims table; ``frames`` maps table names to this run's tables (absent = not produced)."""
    return pl.DataFrame([evaluate_claim(c, frames.get(c["table"])) for c in claims], schema=SCHEMA)


def write_claims(*, claims: Sequence[Mapping[str, Any]], source_tables: Sequence[str], table: str, csv: str,
                 md: str) -> pl.DataFrame:
    """Rule-facing: the claims as :func:`load_claims` returns them and this run's Parquet tables -> the claims table."""
    frames = {Path(p).name.removesuffix(".parquet"): pl.read_parquet(p) for p in source_tables if Path(p).exists()}
    return tables.write_table(check_claims(claims, frames), table, csv, md,
                              "Claims of the papers checked on this run")
