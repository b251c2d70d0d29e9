"""REPORT.md builder: every section present, captions name the paper table, missing tables stay visible."""

from __future__ import annotations

import polars as pl

from prompt_reliability.report import report_md


def test_report_names_paper_tables_and_missing_inputs(tmp_path):
    claims = pl.DataFrame({"claim": ["c1", "c2"], "statistic": ["s", "s"], "this_run": ["14", None], "pairs": [14, None],
                           "paper": ["14/14", "12/14"], "verdict": ["reproduced", "not testable"], "p_value": [1.0, None],
                           "paper_name": ["core", "core"], "paper_table": ["Table 1", "Table 9"],
                           "id": ["a", "b"], "source": ["wins", "bootstrap_summary"], "note": ["", "missing: no row"]})
    frames = {"claims": claims,
              "fragility_summary": pl.DataFrame({"family": ["all"], "pairs": [1], "mistake_d10_worse": [1]})}
    run = report_md.run_section(
        models={"m": {"backend": "hf", "path": "org/model", "revision": "abc", "dtype": "bfloat16"}},
        manifests={"d": pl.DataFrame({"split": ["train", "train", "test"], "label": [1, 0, 1]})},
        locks=[{"model": "m", "selected_prompt": "A1", "random_prompt": "B2", "n": 2, "unsafe_rate": 0.5}],
        prompts={"A": {"prompt_ids": ["A1"], "hash": "h"}}, lock_split={"dataset": "d", "split": "train"},
        evaluate=[{"dataset": "d", "split": "test"}], seeds={"analysis.seed": 42}, config_digest="cafe",
        versions={"numpy": "2"})
    figure = str(tmp_path / "figures" / "x.png")
    text = report_md.build_report(frames=frames, run=run, figures=[figure], table_files=[], base=str(tmp_path))
    assert "| m | hf | org/model | abc | bfloat16 |  |" in text
    assert "| d | test | 1 | 1.0000 | evaluate |" in text
    assert "Of 2 claims checked on this run, 1 reproduced, 1 not testable." in text
    for paper in ("Table 1", "Table 2", "Table 3", "Table 4", "Table 5", "Table 6", "Table 7", "Table 8", "Table 9"):
        assert f"paper {paper}" in text
    assert "Not produced in this run." in text  # e.g. reliability
    assert "operating_points table was not produced" in text
    assert "[figures/x.png](figures/x.png)" in text
    assert "Config hash: `cafe`" in text


def test_claims_section_counts_verdicts_per_paper():
    claims = pl.DataFrame({"claim": ["c1", "c2", "c3"], "this_run": ["5", "8", "3"], "pairs": [14, 14, 7],
                           "paper": ["12/14", "12/14", "7/7"], "verdict": ["contradicted", "reproduced", "weaker"],
                           "p_value": [0.004, 0.055, 0.035], "paper_name": ["core", "core", "vscbench"],
                           "paper_table": ["T2", "T1", "T3"], "note": ["", "", ""]})
    text = report_md.claims_section(claims)
    first = text.split("\n\n")[1]
    assert first.startswith("Of 3 claims checked on this run, 1 reproduced, 1 weaker, 1 contradicted "
                            "(core: 1 reproduced, 1 contradicted; vscbench: 1 weaker).")
    assert "### core" in text and "### vscbench" in text
    assert "| c2 | 8 | 14 | 12/14 | reproduced | 0.0550 |" in text


def test_claims_of_a_paper_this_config_does_not_run_are_one_line_not_a_table():
    claims = pl.DataFrame({"claim": ["c1", "c2", "u1", "u2"], "this_run": ["14", "8", None, None],
                           "pairs": [14, 14, None, None], "paper": ["14/14", "12/14", "4/4", "5/5"],
                           "verdict": ["reproduced", "reproduced", "not testable", "not testable"],
                           "p_value": [1.0, 0.055, None, None], "paper_name": ["core", "core", "unsaf", "unsaf"],
                           "paper_table": ["T1", "T1", "F2", "F3"], "note": ["", "", "missing", "missing"]})
    text = report_md.claims_section(claims)
    assert "Of 2 claims checked on this run, 2 reproduced." in text
    assert "Not run in this config, so not counted: the claims of unsaf (2)" in text
    assert "### unsaf" not in text and "| u1 |" not in text
    # a paper with one testable claim keeps its table, its untestable claims counted
    partly = claims.with_columns(pl.when(pl.col("claim") == "u1").then(pl.lit("reproduced")).otherwise(pl.col("verdict"))
                                 .alias("verdict"))
    text = report_md.claims_section(partly)
    assert "### unsaf" in text and "1 not testable" in text and "Not run in this config" not in text
