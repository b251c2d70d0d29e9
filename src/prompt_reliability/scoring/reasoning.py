"""Chain-of-thought scoring (the calibration method ``cot``): reason first, read the label after the cue.

Per (sample, prompt), one row at a time (no padding, so any architecture's position ids stay exact):

1. the rendered prompt (image + instruction, generation prompt) goes through the processor;
2. the model generates greedily up to ``max_new_tokens`` tokens of reasoning (cut at its first
   end-of-turn token, which is dropped);
3. the answer cue's tokens are appended after the reasoning, in the same assistant turn: the
   sequence is ``prompt ids + reasoning ids + cue ids``;
4. one forward over that sequence; the two label logits are read at its last position, so the label
   is the token that would follow the cue. ``label_position`` (0-based index of that last token)
   = ``prompt_tokens + reasoning_tokens + cue_tokens - 1``.

The cue's tokens are the ones it becomes right after the generation prompt (the same text the
label ids are resolved on); a tokenizer that merges the cue into the prompt's end falls back to the
cue tokenized alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from prompt_reliability.scoring.hf_engines import VLM, FirstTokenScores, readout

# per-token processor outputs and how a reasoning/cue token extends them
_TEXT_TOKEN_KEYS = ("token_type_ids", "mm_token_type_ids")


@dataclass(frozen=True)
class Reasoned:
    """What one (sample, prompt) row produced besides its label logits."""

    reasoning: str
    reasoning_tokens: int
    prompt_tokens: int
    label_position: int


def cue_ids(tokenizer, rendered: str, cue: str, add_special_tokens: bool) -> list[int]:
    """The tokens ``cue`` adds after ``rendered`` (tokenized in context when that is a clean extension)."""
    before = tokenizer(rendered, add_special_tokens=add_special_tokens)["input_ids"]
    after = tokenizer(rendered + cue, add_special_tokens=add_special_tokens)["input_ids"]
    if after[: len(before)] == before and len(after) > len(before):
        return list(after[len(before):])
    return list(tokenizer(cue, add_special_tokens=False)["input_ids"])


def stop_ids(vlm: VLM) -> set[int]:
    """Token ids that end the model's turn (generation config and tokenizer), never part of the reasoning."""
    ids: set[int] = set()
    for value in (getattr(vlm.model.generation_config, "eos_token_id", None), vlm.tokenizer.eos_token_id,
                  vlm.tokenizer.pad_token_id):
        if isinstance(value, int):
            ids.add(value)
        elif isinstance(value, (list, tuple)):
            ids.update(int(v) for v in value)
    return ids


def media_token_ids(processor) -> set[int]:
    """Image and video placeholder ids of a processor (what a generated reasoning must not contain)."""
    ids = set(getattr(processor, "image_token_ids", None) or [])
    for attr in ("image_token_id", "image_token_index", "video_token_id", "video_token_index"):
        value = getattr(processor, attr, None)
        if isinstance(value, int):
            ids.add(value)
    tokenizer = processor.tokenizer
    for attr in ("image_token", "video_token", "boi_token", "eoi_token"):
        token = getattr(processor, attr, None) or getattr(tokenizer, attr, None)
        if isinstance(token, str):
            token_id = tokenizer.convert_tokens_to_ids(token)
            if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
                ids.add(token_id)
    return ids


def _extend(inputs, ids: list[int]):
    """Processor outputs for the longer sequence ``ids`` (the prompt's image inputs unchanged)."""
    import torch

    prompt_length = inputs["input_ids"].shape[1]
    extra = len(ids) - prompt_length
    device = inputs["input_ids"].device
    out = {key: value for key, value in inputs.items()}
    out["input_ids"] = torch.tensor([ids], device=device, dtype=inputs["input_ids"].dtype)
    out["attention_mask"] = torch.ones_like(out["input_ids"])
    for key in _TEXT_TOKEN_KEYS:
        if key in inputs:
            out[key] = torch.cat([inputs[key], inputs[key].new_zeros((1, extra))], dim=1)
    if "cross_attention_mask" in inputs:  # Mllama: every later token sees what the last prompt token saw
        head = inputs["cross_attention_mask"]
        out["cross_attention_mask"] = torch.cat([head, head[:, -1:].expand(-1, extra, *head.shape[2:])], dim=1)
    return out


def score_after_reasoning(vlm: VLM, images: Sequence, texts: Sequence[Sequence[str]], cue: Sequence[int],
                          max_new_tokens: int,
                          on_samples: Callable[[int], None] = lambda n: None) -> tuple[FirstTokenScores, list[list[Reasoned]]]:
    """Label logits read after each row's reasoning and the cue; see the module docstring."""
    import torch

    n, k = len(texts), len(texts[0])
    scores = FirstTokenScores.empty(n, k)
    stops = stop_ids(vlm)
    pad = vlm.tokenizer.pad_token_id if vlm.tokenizer.pad_token_id is not None else next(iter(stops), 0)
    # a reasoning that contained an image placeholder (or another special token: vision start, chat
    # markers) would ask the model for an image it never got; a random-weight model does emit them,
    # real models do not, so nothing is lost. The turn's end stays allowed.
    special = {i for i, token in vlm.tokenizer.added_tokens_decoder.items() if token.special}
    placeholders = sorted((media_token_ids(vlm.processor) | special) - stops)
    out: list[list[Reasoned]] = []
    for i, (image, row) in enumerate(zip(images, texts)):
        reasoned = []
        for j, text in enumerate(row):
            inputs = vlm.process([text], [image])
            prompt = inputs["input_ids"][0].tolist()
            with torch.inference_mode():
                generated = vlm.model.generate(**inputs, do_sample=False, max_new_tokens=int(max_new_tokens), pad_token_id=pad,
                                               temperature=None, top_p=None, top_k=None,
                                               suppress_tokens=placeholders or None)
            new = generated[0, len(prompt):].tolist()
            end = next((t for t, token in enumerate(new) if token in stops), len(new))
            reasoning = new[:end]
            ids = prompt + reasoning + list(cue)
            with torch.inference_mode():
                logits = vlm.model(**_extend(inputs, ids), use_cache=False, logits_to_keep=1).logits[:, -1]
            scores.put([(i, j)], readout(logits, vlm.unsafe_id, vlm.safe_id))
            reasoned.append(Reasoned(vlm.tokenizer.decode(reasoning, skip_special_tokens=True).strip(), len(reasoning),
                                     len(prompt), len(ids) - 1))
        out.append(reasoned)
        on_samples(1)
    return scores, out


def reasoning_summary(tokens: np.ndarray, examples: Sequence[str], max_new_tokens: int, cue: str) -> dict:
    """What the score cache's metadata records about the reasoning (the texts stay in the chunk rows)."""
    tokens = np.asarray(tokens)
    return {"max_new_tokens": int(max_new_tokens), "answer_cue": cue,
            "mean_reasoning_tokens": float(tokens.mean()) if tokens.size else None,
            "rows_at_max_new_tokens": int((tokens >= max_new_tokens).sum()), "examples": list(examples)[:3]}
