"""Calibration prompts (VSCBench's CoT and PE): a registry of their own, apart from the scoring prompts.

A calibration method is ``prompts/calibration/<method>.yaml`` (``method``, ``kind``, ``templates``,
``response_instruction``; ``answer_cue`` for reasoning methods). It becomes a calibration *variant*
of an hf model (variant name = method name), never a scoring family: the 15 scoring prompts, the
lock, the ensemble and the claims do not see it.

- ``kind: instruction`` (PE): the templates are scored like any family, the label read from the first
  answer token; each template must ask for the label first.
- ``kind: reasoning`` (CoT): the model first generates up to ``cot_max_new_tokens`` tokens of
  reasoning; then ``answer_cue`` is appended after the reasoning (same assistant turn) and the two
  label logits are read at the cue's last token.

Template texts and the cue name the labels through ``{unsafe}``, ``{safe}``, ``{unsafe_meaning}`` and
``{safe_meaning}``, filled with the label tokens of the set being scored (the safety labels, which a
model's ``labels`` override; the helpfulness set's own), so one method runs on both sets.
``response_instruction`` goes before the request in response mode.
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

from prompt_reliability.data.prompts import (
    LabelTokens,
    PromptRegistry,
    PromptRegistryError,
    Template,
    _check_asks_label_first,
    _read_yaml,
    template_entries,
)

KINDS = ("instruction", "reasoning")
PLACEHOLDERS = ("unsafe", "safe", "unsafe_meaning", "safe_meaning")
REPLIES_FILE = "replies.yaml"


@dataclass(frozen=True)
class CalibrationMethod:
    name: str
    kind: str
    templates: tuple[tuple[str, str], ...]  # (id, text with placeholders)
    response_instruction: str
    answer_cue: str | None = None

    @property
    def reasons(self) -> bool:
        return self.kind == "reasoning"

    def registry(self, labels: LabelTokens) -> PromptRegistry:
        """The method's templates as a prompt registry (family = method name) for ``labels``."""
        filled = tuple(Template(prompt_id, self.name, fill(text, labels)) for prompt_id, text in self.templates)
        if not self.reasons:
            for template in filled:
                _check_asks_label_first(template, labels, f"calibration method {self.name!r}")
        return PromptRegistry(filled, labels)

    def cue(self, labels: LabelTokens) -> str:
        if self.answer_cue is None:
            raise PromptRegistryError(f"calibration method {self.name!r} has no answer cue (kind {self.kind!r})")
        return fill(self.answer_cue, labels, strip=False)


def fill(text: str, labels: LabelTokens, strip: bool = True) -> str:
    values = {"unsafe": labels.unsafe, "safe": labels.safe, "unsafe_meaning": labels.unsafe_meaning,
              "safe_meaning": labels.safe_meaning}
    out = text.format(**values)
    return " ".join(out.split()) if strip else out


def _placeholders(text: str, where: str) -> list[str]:
    try:
        found = [field for _, field, _, _ in string.Formatter().parse(text) if field is not None]
    except ValueError as err:
        raise PromptRegistryError(f"{where}: not a valid format string ({err}); write literal braces as {{{{ and }}}}") from None
    unknown = [f for f in found if f not in PLACEHOLDERS]
    if unknown:
        raise PromptRegistryError(f"{where}: unknown placeholder {{{unknown[0]}}}; use {', '.join('{' + p + '}' for p in PLACEHOLDERS)}")
    return found


def load_method(prompt_dir: str | Path, name: str) -> CalibrationMethod:
    """Read and check ``prompt_dir/<name>.yaml``; errors name the file, the field and the fix."""
    path = Path(prompt_dir) / f"{name}.yaml"
    if not path.exists():
        raise PromptRegistryError(f"calibration method {name!r} (config 'safety_calibration.prompting') has no file {path}; "
                                  f"available: {available_methods(prompt_dir)}")
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise PromptRegistryError(f"{path}: expected a mapping with method, kind, templates, response_instruction")
    if str(data.get("method", name)) != name:
        raise PromptRegistryError(f"{path}: field 'method' is {data.get('method')!r} but the file name says {name!r}; make them match")
    kind = data.get("kind")
    if kind not in KINDS:
        raise PromptRegistryError(f"{path}: field 'kind' is {kind!r}; use one of {list(KINDS)}")
    templates = []
    for where, prompt_id, text in template_entries(path, data):
        if not {"unsafe", "safe"} <= set(_placeholders(text, where)):
            raise PromptRegistryError(f"{where}: the text must name both labels through {{unsafe}} and {{safe}}")
        templates.append((prompt_id, text))
    instruction = data.get("response_instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise PromptRegistryError(f"{path}: field 'response_instruction' (the text put before a request in response mode) "
                                  "must be a non-empty string")
    cue = data.get("answer_cue")
    if kind == "reasoning":
        if not isinstance(cue, str) or not cue.strip():
            raise PromptRegistryError(f"{path}: a reasoning method needs 'answer_cue', the text appended after the reasoning "
                                      "that the label follows")
        _placeholders(cue, f"{path}: answer_cue")
    elif cue is not None:
        raise PromptRegistryError(f"{path}: 'answer_cue' applies to kind 'reasoning' only; remove it or change the kind")
    return CalibrationMethod(name, kind, tuple(templates), " ".join(instruction.split()), cue)


def available_methods(prompt_dir: str | Path) -> list[str]:
    return sorted(p.stem for p in Path(prompt_dir).glob("*.yaml") if p.name != REPLIES_FILE)


def load_replies(prompt_dir: str | Path) -> dict[str, str]:
    """The few-shot demonstration replies of response mode: ``{refusal, compliance}``."""
    path = Path(prompt_dir) / REPLIES_FILE
    data = _read_yaml(path) if path.exists() else None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), str) and data[k].strip() for k in ("refusal", "compliance")):
        raise PromptRegistryError(f"{path}: needs non-empty strings 'refusal' and 'compliance' (the demonstration replies "
                                  "of response mode's few-shot variants)")
    return {"refusal": data["refusal"].strip(), "compliance": data["compliance"].strip()}
