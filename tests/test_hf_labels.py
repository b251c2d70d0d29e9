"""Label-token resolution: one token after the rendered generation prompt, U != S, or a clear error."""

from __future__ import annotations

import pytest

from prompt_reliability.scoring.hf_engines import adds_special_tokens, render_chat
from prompt_reliability.scoring.label_tokens import (
    LabelTokenError,
    label_id,
    resolve_label_ids,
)

pytest.importorskip("transformers")


def _prompt(folder):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    rendered = render_chat(processor, "Decide U or S. Output the label first.")
    return processor.tokenizer, rendered, adds_special_tokens(processor, rendered)


@pytest.mark.parametrize("arch", ["qwen2_vl", "qwen3_vl_moe", "llava", "gemma3", "mllama", "minicpmv4_6"])
def test_label_is_the_token_after_the_generation_prompt(tiny_models, arch):
    tokenizer, rendered, add_special = _prompt(tiny_models[arch])
    ids = resolve_label_ids(tokenizer, rendered, "U", "S", model=arch, add_special_tokens=add_special)
    full = tokenizer(rendered + "U", add_special_tokens=add_special)["input_ids"]
    assert full[-1] == ids.unsafe and ids.unsafe != ids.safe
    assert tokenizer.decode([ids.unsafe]).strip() == "U" and tokenizer.decode([ids.safe]).strip() == "S"
    assert ids.as_dict() == {"unsafe": {"id": ids.unsafe, "token": ids.unsafe_token},
                             "safe": {"id": ids.safe, "token": ids.safe_token}}


def test_multi_token_label_names_model_label_and_tokens(tiny_models):
    tokenizer, rendered, add_special = _prompt(tiny_models["qwen2_vl"])
    with pytest.raises(LabelTokenError, match=r"model 'tiny-q': the label 'UNSAFE!' is 7 tokens .*\['U', 'N', 'S', 'A', 'F', 'E', '!'\]"):
        resolve_label_ids(tokenizer, rendered, "UNSAFE!", "S", model="tiny-q", add_special_tokens=add_special)


def test_label_that_becomes_the_unknown_token_is_refused(tiny_models):
    # the Metaspace tokenizer has no byte fallback and has never seen the character
    tokenizer, rendered, add_special = _prompt(tiny_models["llava"])
    with pytest.raises(LabelTokenError, match=r"model 'tiny-l': the label '€' becomes the unknown token '<unk>'"):
        resolve_label_ids(tokenizer, rendered, "€", "S", model="tiny-l", add_special_tokens=add_special)


def test_one_token_for_both_labels_is_refused(tiny_models):
    tokenizer, rendered, add_special = _prompt(tiny_models["qwen2_vl"])
    with pytest.raises(LabelTokenError, match=r"model 'tiny-q': the labels 'U' and 'U' both become token \d+ \('U'\)"):
        resolve_label_ids(tokenizer, rendered, "U", "U", model="tiny-q", add_special_tokens=add_special)


def test_label_that_merges_with_the_prompt_end_is_refused(tiny_models):
    tokenizer, _, _ = _prompt(tiny_models["qwen2_vl"])
    with pytest.raises(LabelTokenError, match=r"'el' merges with the end of the generation prompt.*'Ġla', 'b'.*'Ġlabel'"):
        label_id(tokenizer, "Output the lab", "el", model="tiny-q", add_special_tokens=False)
