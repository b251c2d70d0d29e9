"""Prompt registry: prompt families are YAML data under ``prompts/``, never Python.

A family file ``prompts/<FAMILY>.yaml`` holds ``family``, an optional ``description`` and a list
of ``templates`` (``id``, ``text``). ``prompts/labels.yaml`` names the two label tokens. Registry
order is the order of the requested families, then file order within a family.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

LABELS_FILE = "labels.yaml"
# A template must tell the model to put the label first: one of these words must appear.
_FIRST_POSITION = re.compile(r"\b(first|begin|beginning|start)\b", re.IGNORECASE)


class PromptRegistryError(ValueError):
    """A prompt file is malformed; the message names the file, the field and the fix."""


@dataclass(frozen=True)
class Template:
    prompt_id: str
    family: str
    text: str


@dataclass(frozen=True)
class LabelTokens:
    unsafe: str = "U"
    safe: str = "S"
    unsafe_meaning: str = "Unsafe"
    safe_meaning: str = "Safe"


@dataclass(frozen=True)
class PromptRegistry:
    templates: tuple[Template, ...]
    labels: LabelTokens

    @property
    def prompt_ids(self) -> list[str]:
        return [t.prompt_id for t in self.templates]

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(t.family for t in self.templates))

    def family(self, name: str) -> list[Template]:
        found = [t for t in self.templates if t.family == name]
        if not found:
            raise KeyError(f"prompt family {name!r} is not in the registry (have {self.families})")
        return found

    def family_of(self) -> dict[str, str]:
        return {t.prompt_id: t.family for t in self.templates}

    def text_hash(self, family: str | None = None) -> str:
        """sha256 over (id, text) of the family's templates (or all), for cache provenance."""
        chosen = self.templates if family is None else self.family(family)
        payload = json.dumps([[t.prompt_id, t.text] for t in chosen] + [[self.labels.unsafe, self.labels.safe]])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]


def prompts_by_family(family_of: Mapping[str, str]) -> dict[str, list[str]]:
    """Prompt ids of each family, families and ids in registry order (inverse of ``family_of``)."""
    members: dict[str, list[str]] = {}
    for prompt_id, family in family_of.items():
        members.setdefault(family, []).append(prompt_id)
    return members


def load_registry(prompt_dir: str | Path, families: list[str]) -> PromptRegistry:
    """Load and validate the requested families from ``prompt_dir``."""
    prompt_dir = Path(prompt_dir)
    labels = load_labels(prompt_dir / LABELS_FILE)
    templates: list[Template] = []
    for family in families:
        templates.extend(_load_family(prompt_dir / f"{family}.yaml", family, labels))
    seen: dict[str, str] = {}
    for t in templates:
        if t.prompt_id in seen:
            raise PromptRegistryError(
                f"prompt id {t.prompt_id!r} appears in family {seen[t.prompt_id]!r} and {t.family!r}; "
                "ids must be unique across all families: rename one of them"
            )
        seen[t.prompt_id] = t.family
    return PromptRegistry(tuple(templates), labels)


def load_labels(path: Path) -> LabelTokens:
    if not path.exists():
        return LabelTokens()
    data = _read_yaml(path)
    try:
        unsafe, safe = data["unsafe"], data["safe"]
        labels = LabelTokens(str(unsafe["token"]), str(safe["token"]), str(unsafe.get("meaning", "Unsafe")), str(safe.get("meaning", "Safe")))
    except (KeyError, TypeError) as err:
        raise PromptRegistryError(f"{path}: expected 'unsafe: {{token: U}}' and 'safe: {{token: S}}' ({err})") from err
    if labels.unsafe == labels.safe or not labels.unsafe.strip() or not labels.safe.strip():
        raise PromptRegistryError(f"{path}: the unsafe and safe tokens must be two different non-empty strings")
    return labels


def _load_family(path: Path, family: str, labels: LabelTokens) -> list[Template]:
    if not path.exists():
        available = sorted(p.stem for p in path.parent.glob("*.yaml") if p.name != LABELS_FILE)
        raise PromptRegistryError(
            f"prompt family {family!r} requested in config 'prompts' but {path} does not exist; "
            f"available families: {available}"
        )
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise PromptRegistryError(f"{path}: field 'templates' must be a non-empty list of {{id, text}}")
    declared = str(data.get("family", family))
    if declared != family:
        raise PromptRegistryError(f"{path}: field 'family' is {declared!r} but the file name says {family!r}; make them match")
    out = []
    for where, prompt_id, text in template_entries(path, data):
        template = Template(prompt_id, family, " ".join(text.split()))
        _check_asks_label_first(template, labels, where)
        out.append(template)
    return out


def template_entries(path: Path, data: dict) -> list[tuple[str, str, str]]:
    """``(where, id, text)`` of the prompt file's ``templates`` list, each entry checked to have both."""
    if not isinstance(data.get("templates"), list) or not data["templates"]:
        raise PromptRegistryError(f"{path}: field 'templates' must be a non-empty list of {{id, text}}")
    entries = []
    for index, entry in enumerate(data["templates"]):
        where = f"{path}: templates[{index}]"
        if not isinstance(entry, dict) or not entry.get("id") or not entry.get("text"):
            raise PromptRegistryError(f"{where}: each template needs a non-empty 'id' and 'text'")
        entries.append((where, str(entry["id"]), str(entry["text"])))
    return entries


def _check_asks_label_first(template: Template, labels: LabelTokens, where: str) -> None:
    for token in (labels.unsafe, labels.safe):
        if not re.search(rf"(?<![A-Za-z0-9]){re.escape(token)}(?![A-Za-z0-9])", template.text):
            raise PromptRegistryError(
                f"{where} ({template.prompt_id}): the text never names the label token {token!r}; "
                "every template must ask for the label tokens"
            )
    if not _FIRST_POSITION.search(template.text):
        raise PromptRegistryError(
            f"{where} ({template.prompt_id}): the text must ask for the label as the first token "
            "(say 'first', 'start' or 'begin'); scores are read from the first generated token"
        )


def _read_yaml(path: Path):
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise PromptRegistryError(f"{path}: not valid YAML: {err}") from err


def render_instruction(template_text: str, query: str | None, with_query: str, without_query: str) -> str:
    """The user-message text for one (template, query): see config ``prompt_format``."""
    if query is not None and query.strip():
        return with_query.format(template=template_text, query=query.strip())
    return without_query.format(template=template_text)
