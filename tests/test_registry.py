"""The registry of analyses (report/registry.py) is the one list: captions exist, summaries read registered
tables, the workflow produces exactly the registered tables, and no other file lists analyses again."""

from __future__ import annotations

import re

import polars as pl
import pytest
from conftest import REPO

from prompt_reliability.base.config import validate_config
from prompt_reliability.report import registry
from prompt_reliability.report.registry import ANALYSES, OWN_RULE, PIECES, Analysis, produced

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"


def test_every_analysis_has_its_caption():
    missing = [a.caption for a in ANALYSES.values() if not (REPO / "workflow" / "report" / a.caption).is_file()]
    assert not missing, f"captions missing under workflow/report/: {missing}"


def test_summaries_read_registered_tables_and_only_summaries_have_functions():
    for analysis in ANALYSES.values():
        if analysis.made_from in (PIECES, OWN_RULE):
            assert analysis.function is None, analysis.name
        else:
            assert callable(analysis.function), analysis.name
            assert list(ANALYSES).index(analysis.made_from) < list(ANALYSES).index(analysis.name)


def test_register_refuses_duplicates_and_unknown_sources():
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(ANALYSES["reliability"])
    with pytest.raises(ValueError, match="not registered"):
        registry.register(Analysis("x_summary", "Tables", "no_such_table", function=len))
    with pytest.raises(ValueError, match="only a summary"):
        Analysis("x", "Tables", PIECES, function=len)
    assert "x_summary" not in ANALYSES


def test_headline_tables_keep_the_paper_order():
    papers = [a.headline.paper for a in ANALYSES.values() if a.headline and a.headline.paper]
    numbers = [int(re.search(r"Table (\d+)", p).group(1)) for p in papers]
    assert numbers == sorted(numbers) == list(range(1, 10))


def test_the_workflow_produces_exactly_the_registered_tables(import_run):
    import yaml

    config = yaml.safe_load((import_run / "config.yaml").read_text())
    validate_config(config, str(SCHEMA))
    expected = {a.name for a in produced(config)}
    written = {p.name.removesuffix(".parquet") for p in (import_run / "results" / "tables").glob("*.parquet")}
    assert written == expected
    for name in expected:  # every table comes with its renderings for people
        assert (import_run / "results" / "tables" / f"{name}.csv").is_file()
        assert (import_run / "results" / "tables" / f"{name}.md").is_file()
    figures = {p.relative_to(import_run / "results" / "figures").as_posix()
               for p in (import_run / "results" / "figures").rglob("*.png")}
    patterns = [re.sub(r"\\\{\w+\\\}", "[^/]+", re.escape(f)) for a in produced(config) for f in a.figures]
    assert figures and all(any(re.fullmatch(p, f) for p in patterns) for f in figures), figures
    report = (import_run / "results" / "REPORT.md").read_text()
    for name, analysis in ANALYSES.items():
        if analysis.headline and name in expected:
            assert f"### {name}" in report


def test_summary_rules_call_their_own_function(import_run, tmp_path):
    # The summary rules are generated in a loop; each must run its own table's function, not the loop's last.
    tables = import_run / "results" / "tables"
    for analysis in registry.summaries():
        if not (tables / f"{analysis.made_from}.parquet").exists():  # a method this run does not have (distillation)
            assert analysis.made_from in ("distillation",), analysis.name
            continue
        written = pl.read_parquet(tables / f"{analysis.name}.parquet")
        source = tables / f"{analysis.made_from}.parquet"
        again = analysis.function(table=str(source), summary=str(tmp_path / "again.parquet"), csv=None, md=None)
        assert written.equals(again), analysis.name


# A list of three or more registered names in one bracket is a second list of analyses.
BRACKETS = re.compile(r"\[[^\[\]]*\]|\{[^{}]*\}|\([^()]*\)", re.S)


@pytest.mark.parametrize("path", sorted([*REPO.glob("workflow/rules/*.smk"), REPO / "Snakefile",
                                         *(p for p in REPO.glob("src/**/*.py") if p.name != "registry.py")]),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_no_other_file_lists_the_analyses_or_spells_a_category(path):
    names = set(ANALYSES)
    text = path.read_text()
    for block in BRACKETS.findall(text):
        quoted = {m for m in re.findall(r"""["']([a-z_]+)["']""", block) if m in names}
        assert len(quoted) < 3, f"{path.relative_to(REPO)} lists analyses {sorted(quoted)}: derive it from the registry"
    # a report category is the registry's: tables take their analysis's, figures the analysis that lists them
    categories = {a.category for a in ANALYSES.values()}
    spelled = sorted({m for m in re.findall(r"""["']([^"'\n]+)["']""", text) if m in categories})
    assert not spelled, (f"{path.relative_to(REPO)} spells report categories {spelled}: take them from the registry "
                         "(table_outputs, figure_output in common.smk)")


def test_figure_categories_come_from_the_analysis_that_lists_them():
    assert registry.figure_owner("topk/{model}/{dataset}/{split}.png").category == ANALYSES["topk"].category
    assert registry.figure_owner("self_assessment/scale.png").name == "self_assessment_findings"
    with pytest.raises(KeyError, match="not registered: add it to the figures of its analysis"):
        registry.figure_owner("topk/other.png")
