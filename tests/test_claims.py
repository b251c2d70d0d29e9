"""The claims check: the repository's claims file loads, malformed files fail clearly, missing inputs stay visible."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from prompt_reliability.analysis import claims as cl

REPO = Path(__file__).resolve().parents[1]
CLAIMS_FILE = REPO / "workflow" / "claims.yaml"

WINS = pl.DataFrame({"challenger": ["mean", "mean"], "baseline": ["selected", "selected"], "metric": ["nll", "ece"],
                     "wins": [14, 5], "pairs": [14, 14]})
AGG = pl.DataFrame({"rule": ["mean", "median", "max"], "n_pairs": [14] * 3, "nll_wins": [9, 4, 1],
                    "avg_nll_rank": [2.0, 1.5, 14.0]})
SELECTIVE = pl.DataFrame({"target": ["aurc_error_full"], "pairs": [14], "std": [2], "entropy": [8], "margin": [4]})
BOOT = pl.DataFrame({"metric": ["nll", "ece"], "prevalence": ["native", "native"], "pairs": [14, 14],
                     "ci_wins": [13, 12], "ci_losses": [0, 2]})


def claim(**changes):
    base = {"id": "c", "claim": "text", "paper_table": "Table 1", "table": "wins",
            "where": {"challenger": "mean", "baseline": "selected", "metric": "nll"},
            "statistic": {"kind": "count", "count": "wins", "pairs": "pairs"}, "paper": "14/14"}
    return {**base, **changes}


def test_repository_claims_cover_the_issue():
    claims = cl.load_claims(CLAIMS_FILE)
    assert len(claims) >= 12
    assert set(cl.claim_tables(claims)) <= {"wins", "bootstrap_summary", "fragility_summary", "aggregation_summary",
                                             "calibration_summary", "selective_summary", "family_wins"}


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "single key 'claims'"),
    ("claims: []\n", "non-empty list"),
    ("claims:\n  - id: x\n", "missing key(s)"),
    ("claims: [1]\n", "expected a mapping"),
    ("claims: {a: 1\n", "not valid YAML"),
])
def test_malformed_file_fails_clearly(tmp_path, text, message):
    path = tmp_path / "claims.yaml"
    path.write_text(text)
    with pytest.raises(cl.ClaimsError, match=re.escape(message)) as err:
        cl.load_claims(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("changes, message", [
    ({"statistic": {"kind": "median"}}, "'kind' is one of"),
    ({"statistic": {"kind": "count", "count": "wins"}}, "lacks key(s) ['pairs']"),
    ({"statistic": {"kind": "count", "count": "wins", "pairs": "pairs", "colour": 1}}, "unknown key(s) ['colour']"),
    ({"statistic": {"kind": "best_row", "column": "x", "best": "most", "pairs": "p"}}, "'max' or 'min'"),
    ({"paper": 2.0}, "quote numbers"),
    ({"where": {}}, "'where' must be"),
    ({"table_name": "wins"}, "unknown key(s) ['table_name']"),
])
def test_malformed_claim_names_claim_and_key(changes, message):
    with pytest.raises(cl.ClaimsError, match=r"claim 1 \('c'\).*" + re.escape(message)):
        cl.validate_claims({"claims": [claim(**changes)]}, "f.yaml")


def test_duplicate_ids_rejected():
    with pytest.raises(cl.ClaimsError, match="duplicate id 'c'"):
        cl.validate_claims({"claims": [claim(), claim()]})


def test_statistics_and_holds():
    claims = [
        claim(),
        claim(id="ece", where={"challenger": "mean", "baseline": "selected", "metric": "ece"}),
        claim(id="wins", table="aggregation_summary", where={"rule": "mean"},
              statistic={"kind": "best_row", "column": "nll_wins", "best": "max", "pairs": "n_pairs"}),
        claim(id="rank", table="aggregation_summary", where={"rule": "mean"},
              statistic={"kind": "best_row", "column": "avg_nll_rank", "best": "min", "pairs": "n_pairs"}),
        claim(id="entropy", table="selective_summary", where={"target": "aurc_error_full"},
              statistic={"kind": "best_column", "column": "entropy", "others": ["std", "margin"], "best": "max",
                         "pairs": "pairs"}),
        claim(id="ece_ci", table="bootstrap_summary", where={"metric": "ece", "prevalence": "native"},
              statistic={"kind": "count", "count": ["ci_wins", "ci_losses"], "pairs": "pairs"}),
        claim(id="at_least", statistic={"kind": "count", "count": "wins", "pairs": "pairs", "at_least": 1.0}),
    ]
    frames = {"wins": WINS, "aggregation_summary": AGG, "selective_summary": SELECTIVE, "bootstrap_summary": BOOT}
    table = cl.check_claims(cl.validate_claims({"claims": claims}), frames)
    got = {r["id"]: (r["this_run"], r["pairs"], r["holds"]) for r in table.iter_rows(named=True)}
    assert got == {"c": ("14", 14, True), "ece": ("5", 14, False), "wins": ("9", 14, True),
                   "rank": ("2.00", 14, False), "entropy": ("8", 14, True), "ece_ci": ("14", 14, True),
                   "at_least": ("14", 14, True)}
    assert table.columns[:6] == ["claim", "statistic", "this_run", "pairs", "paper", "holds"]


def test_missing_inputs_stay_as_rows():
    claims = cl.validate_claims({"claims": [
        claim(id="no_table", table="bootstrap_summary",
              where={"metric": "nll", "prevalence": "0.05"}),
        claim(id="no_row", table="bootstrap_summary", where={"metric": "nll", "prevalence": "0.05"},
              statistic={"kind": "count", "count": "ci_wins", "pairs": "pairs"}),
        claim(id="no_column", where={"challenger": "mean", "colour": "red"}),
    ]})
    table = cl.check_claims(claims[:1], {})
    assert table["note"][0].startswith("missing: table 'bootstrap_summary'")
    table = cl.check_claims(claims[1:], {"bootstrap_summary": BOOT, "wins": WINS})
    assert table.height == 2
    assert table["this_run"].to_list() == [None, None] and table["holds"].to_list() == [None, None]
    assert "no row with metric=nll, prevalence=0.05" in table["note"][0]
    assert "lacks column(s) ['colour']" in table["note"][1]
