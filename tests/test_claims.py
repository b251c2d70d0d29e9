"""The claims check: the repository's claims file loads, malformed files fail clearly, missing inputs stay visible."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest
import yaml
from brute_force import boschloo_below

from prompt_reliability.analysis import claims as cl

REPO = Path(__file__).resolve().parents[1]
CLAIMS_DIR = REPO / "workflow" / "claims"

WINS = pl.DataFrame({"challenger": ["mean", "mean", "mean_ens"], "baseline": ["selected"] * 3,
                     "metric": ["nll", "ece", "ece"], "wins": [14, 5, 8], "pairs": [14, 14, 14]})
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


def test_repository_claims_files_load():
    files = cl.claim_files(None, CLAIMS_DIR)
    assert any(f.endswith("prompt_variance.yaml") for f in files)
    claims = cl.load_claims(files)  # every paper's file; ids unique over all of them
    core = [c for c in claims if c["paper_name"] == "prompt-induced score variance"]
    assert len(core) == 19
    assert set(cl.claim_tables(core)) <= {"wins", "bootstrap_summary", "fragility_summary", "aggregation_summary",
                                           "calibration_summary", "selective_summary", "family_wins"}
    assert {c["id"]: c["paper"] for c in core}["entropy_top_error_aurc"] == "10/14"  # the paper's Table 4


def test_configured_files_replace_the_folder(tmp_path):
    assert cl.claim_files("mine.yaml", CLAIMS_DIR) == ["mine.yaml"]
    assert cl.claim_files(["a.yaml", "b.yaml"], CLAIMS_DIR) == ["a.yaml", "b.yaml"]


def test_ids_unique_over_files(tmp_path):
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump({"paper": name, "claims": [claim()]}))
    with pytest.raises(cl.ClaimsError, match="id already used in .*a.yaml"):
        cl.load_claims([tmp_path / "a.yaml", tmp_path / "b.yaml"])


@pytest.mark.parametrize("text, message", [
    ("- a\n- b\n", "keys 'paper'"),
    ("claims: [1]\n", "keys 'paper'"),
    ("paper: ''\nclaims: [1]\n", "paper's short name"),
    ("paper: p\nclaims: []\n", "non-empty list"),
    ("paper: p\nclaims:\n  - id: x\n", "missing key(s)"),
    ("paper: p\nclaims: [1]\n", "expected a mapping"),
    ("paper: p\nclaims: {a: 1\n", "not valid YAML"),
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
    ({"paper": "8-10/14"}, "not in a count statistic's notation K/N"),
    ({"paper": "0.86"}, "not in a count statistic's notation K/N"),
    ({"paper": "6/14"}, "states a majority"),
    ({"paper": "15/14"}, "states a majority"),
    ({"paper": "8-10/14", "statistic": {"kind": "best_row", "column": "x", "best": "max", "pairs": "p"}},
     "a count K/N (the column counts pairs) or a number"),
    ({"paper": "86%", "statistic": {"kind": "best_row", "column": "x", "best": "max", "pairs": "p"}},
     "or a number"),
    ({"statistic": {"kind": "best_row", "column": "x", "best": "max", "pairs": "p", "tolerance": -1}},
     "'tolerance' must be a number >= 0"),
])
def test_malformed_claim_names_claim_and_key(changes, message):
    with pytest.raises(cl.ClaimsError, match=r"claim 1 \('c'\).*" + re.escape(message)):
        cl.validate_claims({"paper": "p", "claims": [claim(**changes)]}, "f.yaml")


def test_duplicate_ids_rejected():
    with pytest.raises(cl.ClaimsError, match="duplicate id 'c'"):
        cl.validate_claims({"paper": "p", "claims": [claim(), claim()]})


def test_verdicts_follow_the_written_rule():
    claims = [
        claim(),  # 14/14 vs 14/14
        claim(id="ece", where={"challenger": "mean", "baseline": "selected", "metric": "ece"}, paper="12/14"),
        claim(id="ece8", where={"challenger": "mean_ens", "baseline": "selected", "metric": "ece"}, paper="12/14"),
        claim(id="ece_weaker", where={"challenger": "mean_ens", "baseline": "selected", "metric": "ece"}),
        claim(id="wins", table="aggregation_summary", where={"rule": "mean"}, paper="12/14",
              statistic={"kind": "best_row", "column": "nll_wins", "best": "max", "pairs": "n_pairs"}),
        claim(id="rank", table="aggregation_summary", where={"rule": "mean"}, paper="2.00",
              statistic={"kind": "best_row", "column": "avg_nll_rank", "best": "min", "pairs": "n_pairs"}),
        claim(id="rank_tolerant", table="aggregation_summary", where={"rule": "mean"}, paper="2.00",
              statistic={"kind": "best_row", "column": "avg_nll_rank", "best": "min", "pairs": "n_pairs",
                         "tolerance": 0.5}),
        claim(id="rank_last", table="aggregation_summary", where={"rule": "max"}, paper="2.00",
              statistic={"kind": "best_row", "column": "avg_nll_rank", "best": "min", "pairs": "n_pairs"}),
        claim(id="entropy", table="selective_summary", where={"target": "aurc_error_full"}, paper="10/14",
              statistic={"kind": "best_column", "column": "entropy", "others": ["std", "margin"], "best": "max",
                         "pairs": "pairs"}),
        claim(id="std", table="selective_summary", where={"target": "aurc_error_full"}, paper="3.00",
              statistic={"kind": "best_column", "column": "std", "others": ["entropy", "margin"], "best": "max",
                         "pairs": "pairs"}),
        claim(id="ece_ci", table="bootstrap_summary", where={"metric": "ece", "prevalence": "native"},
              statistic={"kind": "count", "count": ["ci_wins", "ci_losses"], "pairs": "pairs"}),
    ]
    frames = {"wins": WINS, "aggregation_summary": AGG, "selective_summary": SELECTIVE, "bootstrap_summary": BOOT}
    table = cl.check_claims(cl.validate_claims({"paper": "p", "claims": claims}), frames)
    got = {r["id"]: (r["this_run"], r["pairs"], r["verdict"]) for r in table.iter_rows(named=True)}
    assert got == {
        "c": ("14", 14, "reproduced"),
        "ece": ("5", 14, "contradicted"),        # 5/14 <= 1/2
        "ece8": ("8", 14, "reproduced"),         # 8/14 vs 12/14: p = 0.055, not below 0.05
        "ece_weaker": ("8", 14, "weaker"),       # 8/14 vs 14/14: p < 0.05 and above half
        "wins": ("9", 14, "reproduced"),         # the most wins, and 9/14 vs 12/14 is not significantly fewer
        "rank": ("2.00", 14, "weaker"),          # 1.5 is better; 2.00 still beats half of the others (14.0)
        "rank_tolerant": ("2.00", 14, "reproduced"),
        "rank_last": ("14.00", 14, "contradicted"),
        "entropy": ("8", 14, "reproduced"),
        "std": ("2", 14, "contradicted"),        # beaten by both others
        "ece_ci": ("14", 14, "reproduced"),
    }
    p_values = dict(zip(table["id"], table["p_value"]))
    assert p_values["ece8"] == pytest.approx(0.0547, abs=5e-4)  # the figure for 8/14 vs 12/14
    for key, (k, paper_k) in {"ece": (5, 12), "ece8": (8, 12), "ece_weaker": (8, 14), "wins": (9, 12)}.items():
        assert p_values[key] == pytest.approx(boschloo_below(k, 14, paper_k, 14, grid=2001), abs=2e-3)
    assert p_values["rank"] is None and p_values["std"] is None  # no test for a non-count figure
    assert p_values["c"] == pytest.approx(1.0)
    assert table.columns[:7] == ["claim", "statistic", "this_run", "pairs", "paper", "verdict", "p_value"]
    assert set(table["verdict"]) <= set(cl.VERDICTS)


def test_best_claim_printed_as_count_takes_the_worse_verdict():
    agg = AGG.with_columns(pl.Series("nll_wins", [5, 4, 1]))  # still the most wins, but 5/14 <= 1/2
    table = cl.check_claims(cl.validate_claims({"paper": "p", "claims": [
        claim(id="wins", table="aggregation_summary", where={"rule": "mean"}, paper="12/14",
              statistic={"kind": "best_row", "column": "nll_wins", "best": "max", "pairs": "n_pairs"})]}),
        {"aggregation_summary": agg})
    assert table["verdict"].to_list() == ["contradicted"]
    assert table["p_value"][0] < 0.05


def test_missing_inputs_stay_as_rows():
    claims = cl.validate_claims({"paper": "p", "claims": [
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
    assert table["this_run"].to_list() == [None, None] and table["verdict"].to_list() == ["not testable"] * 2
    assert "no row with metric=nll, prevalence=0.05" in table["note"][0]
    assert "lacks column(s) ['colour']" in table["note"][1]
