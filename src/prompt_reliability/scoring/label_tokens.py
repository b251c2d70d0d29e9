"""Which vocabulary ids the two label strings (``U``/``S``) are, for one model's tokenizer.

The id is read off the rendered generation prompt itself, so it is the token the model would emit
as its first answer token: ``a = tok(prompt)``, ``b = tok(prompt + label)``; ``b`` must extend ``a``
by exactly one token. Byte-level tokenizers (Qwen, Llama-3) give a bare ``U`` after the assistant
header, Metaspace ones (Llama-2, Mistral) may give ``▁U``. Anything else (a label that is two
tokens, a label that merges with the end of the prompt, U and S becoming the same id) fails before
any scoring with a message that names the model, the label and the tokens it became.
"""

from __future__ import annotations

from dataclasses import dataclass


class LabelTokenError(ValueError):
    """A label string is not exactly one token after the model's generation prompt."""


@dataclass(frozen=True)
class LabelIds:
    unsafe: int
    safe: int
    unsafe_token: str
    safe_token: str

    def as_dict(self) -> dict:
        return {"unsafe": {"id": self.unsafe, "token": self.unsafe_token},
                "safe": {"id": self.safe, "token": self.safe_token}}


def label_id(tokenizer, prompt: str, label: str, *, model: str, add_special_tokens: bool) -> tuple[int, str]:
    """The single token id that ``label`` becomes right after ``prompt``."""
    before = tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"]
    after = tokenizer(prompt + label, add_special_tokens=add_special_tokens)["input_ids"]
    fix = "choose label strings that are single tokens for this tokenizer (models.<name>.labels, or prompts/labels.yaml)"
    if after[: len(before)] != before:
        changed = next(i for i, (x, y) in enumerate(zip(before, after)) if x != y)
        raise LabelTokenError(
            f"model {model!r}: the label {label!r} merges with the end of the generation prompt: the prompt ends in "
            f"the tokens {tokenizer.convert_ids_to_tokens(before[changed:])}, prompt + {label!r} in "
            f"{tokenizer.convert_ids_to_tokens(after[changed:])}, so the model never scores {label!r} as its first "
            f"answer token; {fix}")
    extra = after[len(before):]
    if len(extra) != 1:
        raise LabelTokenError(
            f"model {model!r}: the label {label!r} is {len(extra)} tokens after the generation prompt "
            f"({tokenizer.convert_ids_to_tokens(extra)}), not one; {fix}")
    if extra[0] == tokenizer.unk_token_id:
        raise LabelTokenError(f"model {model!r}: the label {label!r} becomes the unknown token "
                              f"{tokenizer.unk_token!r}; {fix}")
    return extra[0], tokenizer.convert_ids_to_tokens(extra[0])


def resolve_label_ids(tokenizer, prompt: str, unsafe: str, safe: str, *, model: str, add_special_tokens: bool) -> LabelIds:
    """Ids of the unsafe and safe labels after ``prompt``; they must be two different single tokens."""
    u, u_token = label_id(tokenizer, prompt, unsafe, model=model, add_special_tokens=add_special_tokens)
    s, s_token = label_id(tokenizer, prompt, safe, model=model, add_special_tokens=add_special_tokens)
    if u == s:
        raise LabelTokenError(
            f"model {model!r}: the labels {unsafe!r} and {safe!r} both become token {u} ({u_token!r}); "
            "p_unsafe would be 0.5 for every input. Choose two labels the tokenizer keeps apart"
        )
    return LabelIds(u, s, u_token, s_token)
