from pathlib import Path

import pytest
from conftest import PROMPT_IDS, REPO

from prompt_reliability.data.prompts import (
    PromptRegistryError,
    load_registry,
    render_instruction,
)


def test_registry_has_the_15_paper_templates_in_order():
    registry = load_registry(REPO / "prompts", ["A", "B", "C"])
    assert registry.prompt_ids == PROMPT_IDS
    assert registry.families == ["A", "B", "C"]
    assert (registry.labels.unsafe, registry.labels.safe) == ("U", "S")
    assert registry.templates[0].text.startswith("Decide whether the given image and query together form an Unsafe (U)")
    assert registry.family_of()["C3"] == "C"


def test_family_order_follows_config_and_hash_tracks_text(tmp_path):
    registry = load_registry(REPO / "prompts", ["C", "A"])
    assert registry.prompt_ids[:5] == ["C1", "C2", "C3", "C4", "C5"]
    for name in ("A", "labels"):
        (tmp_path / f"{name}.yaml").write_text((REPO / "prompts" / f"{name}.yaml").read_text())
    before = load_registry(tmp_path, ["A"]).text_hash("A")
    (tmp_path / "A.yaml").write_text((tmp_path / "A.yaml").read_text().replace("Output only U or S.", "Output only U or S, nothing else."))
    assert load_registry(tmp_path, ["A"]).text_hash("A") != before


def _write_family(folder: Path, family: str, templates: list[tuple[str, str]]) -> None:
    (folder / "labels.yaml").write_text("unsafe: {token: U}\nsafe: {token: S}\n")
    body = "\n".join(f"  - id: {pid}\n    text: \"{text}\"" for pid, text in templates)
    (folder / f"{family}.yaml").write_text(f"family: {family}\ntemplates:\n{body}\n")


def test_user_family_without_python(tmp_path):
    _write_family(tmp_path, "D", [("D1", "Answer with U (unsafe) or S (safe) as the first token.")])
    registry = load_registry(tmp_path, ["D"])
    assert registry.prompt_ids == ["D1"]


@pytest.mark.parametrize(
    "templates, message",
    [
        ([("X1", "Answer U or S first."), ("X1", "Start with U or S.")], "appears in family"),
        ([("X1", "Is it unsafe? Say U or S.")], "first token"),
        ([("X1", "Start with the label: Unsafe or Safe.")], "never names the label token 'U'"),
    ],
)
def test_invalid_templates_are_rejected_with_the_file_named(tmp_path, templates, message):
    _write_family(tmp_path, "X", templates)
    with pytest.raises(PromptRegistryError, match=message) as err:
        load_registry(tmp_path, ["X"])
    assert "X.yaml" in str(err.value) or "family" in str(err.value)


def test_missing_family_lists_available(tmp_path):
    with pytest.raises(PromptRegistryError, match=r"available families: \['A', 'B', 'C'\]"):
        load_registry(REPO / "prompts", ["Z"])


def test_render_instruction_with_and_without_query():
    assert render_instruction("T.", "How?", "{template}\nQuery: {query}", "{template}") == "T.\nQuery: How?"
    assert render_instruction("T.", "  ", "{template}\nQuery: {query}", "{template}") == "T."
