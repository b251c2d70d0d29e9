"""Raw first-token logits of a Hugging Face VLM for (image, K prompt texts), two ways.

Both engines return, per (sample, prompt), the logits of the two label tokens, the full-vocabulary
softmax mass on them and the arg-max token, read from a plain forward pass (``logits_to_keep``);
never from ``generate`` scores, which a checkpoint's generation config may have processed.

- ``reference``: one row per (sample, prompt), the processor's own batching (left padding).
  Obviously correct; the yardstick for the other engine.
- ``shared_prefix`` (default): the K texts of a sample share a token prefix (chat header, image,
  ...). That prefix runs once per sample (several samples of equal prefix length per forward); its
  KV cache is repeated for the suffixes, which run as right-padded batches (prompts of similar
  length together, :func:`length_buckets`); each row's logits are read at its last real token.
  Right padding needs no attention mask: real tokens never attend to later positions. Exact up to
  float rounding (tests: <= 1e-5 in float32 on every tiny architecture).

How the suffix tokens are found without processing the image K times: the K texts are tokenized
as plain text (image placeholders unexpanded) and only the first one goes through the processor.
If the texts diverge after a special token that follows every image placeholder, and the
processor's expanded first row ends with the same tail right after a special token, then every
row's expanded ids are ``expanded_first[:P] + plain_row[s:]``: special tokens split the text
before tokenization, so what follows one tokenizes the same whatever precedes it. Otherwise (e.g.
Gemma 3, whose image block ends in plain newlines) all K texts go through the processor.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ENGINES = ("shared_prefix", "reference")
# Processor outputs with one entry per token. Everything else is image input, passed to the prefix only.
_TOKEN_KEYS = ("input_ids", "attention_mask", "token_type_ids", "mm_token_type_ids", "cross_attention_mask")
# Per-token inputs the model needs over prefix + suffix (Mllama slices its cross-attention mask by
# cache position); each suffix token repeats the last prefix token's row, as generate() does.
_FULL_LENGTH_KEYS = ("cross_attention_mask",)
# Architectures whose processor packs the pixels of all images of a batch into one row (NaViT-style,
# the model reads ``pixel_values[:1]``): their per-sample prefix inputs do not stack along the batch,
# so each sample's prefix runs alone.
PACKED_PIXEL_MODELS = frozenset({"minicpmv4_6", "minicpmv4_7"})
# Architectures whose position ids of a token depend on the token after it: MiniCPM-V 4.7's canvas
# M-RoPE gives a newline right after an image block a position on the image canvas, which it cannot
# do if the newline starts the suffix. For these the prefix is the full token-level common prefix of
# the K processed texts (all K go through the processor), never cut right after the image block.
NO_SPLICE_MODELS = frozenset({"minicpmv4_7"})


class EngineError(RuntimeError):
    """The model's inputs do not fit an engine; the message says which model and what to change."""


@dataclass
class VLM:
    """A loaded model with what scoring needs to know about it."""

    name: str
    model: Any
    processor: Any
    unsafe_id: int
    safe_id: int
    add_special_tokens: bool

    @property
    def tokenizer(self):
        return self.processor.tokenizer

    @property
    def input_device(self):
        return self.model.get_input_embeddings().weight.device

    @property
    def output_device(self):
        """Where the last hidden states are (another GPU than the inputs under a split device map)."""
        head = self.model.get_output_embeddings()
        return head.weight.device if head is not None else self.input_device

    def process(self, texts: list[str], images: list, **kwargs):
        """Processor outputs as tensors on the model's input device (floats in the model's dtype)."""
        # one image per text, or a list of images per text (few-shot demonstrations before the scored image)
        nested = [list(image) if isinstance(image, (list, tuple)) else [image] for image in images]
        batch = self.processor(text=texts, images=nested, return_tensors="pt",
                               add_special_tokens=self.add_special_tokens, **kwargs)
        return batch.to(self.input_device, dtype=self.model.dtype)


@dataclass
class FirstTokenScores:
    """Per (sample, prompt): the two label logits, label mass and arg-max token id; arrays (n, K)."""

    logit_u: np.ndarray
    logit_s: np.ndarray
    label_mass: np.ndarray
    top_id: np.ndarray

    @classmethod
    def empty(cls, n: int, k: int) -> FirstTokenScores:
        return cls(np.full((n, k), np.nan), np.full((n, k), np.nan), np.full((n, k), np.nan), np.full((n, k), -1))

    def put(self, rows: Sequence[tuple[int, int]], readout: tuple[np.ndarray, ...]) -> None:
        index = tuple(np.array(rows).T)
        for target, values in zip((self.logit_u, self.logit_s, self.label_mass, self.top_id), readout):
            target[index] = values


def render_chat(processor, instruction: str, demonstrations: Sequence[tuple[str, str]] = ()) -> str:
    """The model's own chat template for one user turn: the image first, then the instruction.

    ``demonstrations``: (instruction, answer) pairs rendered first as earlier turns (user: image +
    instruction, assistant: answer); their images come before the scored one, in the same order.
    """
    if not getattr(processor, "chat_template", None):
        raise EngineError("the processor has no chat template; score a chat (instruct) checkpoint, or add a "
                          "chat_template.jinja to the model folder")
    messages = []
    for demo_instruction, answer in demonstrations:
        messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": demo_instruction}]})
        messages.append({"role": "assistant", "content": [{"type": "text", "text": answer}]})
    messages.append({"role": "user", "content": [{"type": "image"}, {"type": "text", "text": instruction}]})
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def adds_special_tokens(processor, rendered: str) -> bool:
    """Whether tokenizing ``rendered`` should add special tokens: not when the template wrote BOS already
    (the rule of ``ProcessorMixin.apply_chat_template``)."""
    bos = processor.tokenizer.bos_token
    return not (bos is not None and rendered.startswith(bos))


def readout(logits, unsafe_id: int, safe_id: int) -> tuple[np.ndarray, ...]:
    """(logit_u, logit_s, label_mass, top_id) from rows of full-vocabulary logits, in float32."""
    import torch

    logits = logits.float()
    log_z = torch.logsumexp(logits, dim=-1)
    pair = logits[:, [unsafe_id, safe_id]]
    mass = torch.exp(pair - log_z[:, None]).sum(dim=-1)
    return tuple(t.cpu().numpy() for t in (pair[:, 0], pair[:, 1], mass, logits.argmax(dim=-1)))


# --- reference engine ----------------------------------------------------------------------------


def score_reference(vlm: VLM, images: Sequence, texts: Sequence[Sequence[str]], batch_size: int,
                    on_samples: Callable[[int], None] = lambda n: None) -> FirstTokenScores:
    """One forward row per (sample, prompt), ``batch_size`` rows per forward, left-padded."""
    import torch

    n, k = len(texts), len(texts[0])
    scores = FirstTokenScores.empty(n, k)
    pairs = [(i, j) for i in range(n) for j in range(k)]
    done = 0
    for start in range(0, len(pairs), batch_size):
        rows = pairs[start:start + batch_size]
        batch = vlm.process([texts[i][j] for i, j in rows], [images[i] for i, _ in rows], padding=True,
                            padding_side="left")
        with torch.inference_mode():
            logits = vlm.model(**batch, use_cache=False, logits_to_keep=1).logits[:, -1]
        scores.put(rows, readout(logits, vlm.unsafe_id, vlm.safe_id))
        finished = rows[-1][0] + (1 if rows[-1][1] == k - 1 else 0)
        on_samples(finished - done)
        done = finished
    return scores


# --- shared-prefix engine ------------------------------------------------------------------------


def common_prefix_length(rows: Sequence[Sequence[int]]) -> int:
    first = rows[0]
    length = min(len(r) for r in rows)
    for row in rows[1:]:
        i = 0
        while i < length and row[i] == first[i]:
            i += 1
        length = i
    return length


def splice_plan(plain: Sequence[Sequence[int]], expanded_first: Sequence[int], boundary_ids: frozenset[int],
                image_ids: frozenset[int]) -> tuple[int, int] | None:
    """``(P, s)`` such that row k's expanded ids are ``expanded_first[:P] + plain[k][s:]``, or None.

    ``plain``: the K texts tokenized without image expansion; ``boundary_ids``: special (added)
    tokens, which the tokenizer splits on before anything else; ``image_ids``: image placeholder and
    image-token ids, none of which may fall in a suffix.
    """
    s = min(common_prefix_length(plain), min(len(r) for r in plain) - 1)
    while s > 0 and plain[0][s - 1] not in boundary_ids:
        s -= 1
    if s == 0 or any(t in image_ids for row in plain for t in row[s:]):
        return None
    tail = list(plain[0][s:])
    p = len(expanded_first) - len(tail)
    if p <= 0 or list(expanded_first[p:]) != tail or expanded_first[p - 1] not in boundary_ids:
        return None
    return p, s


@dataclass
class _Prefixed:
    """One sample ready for the shared-prefix engine."""

    index: int
    prefix_inputs: dict  # processor outputs of the first text, per-token entries cut to the prefix
    suffixes: list[list[int]]
    signature: tuple = field(default=())


def _image_ids(processor) -> frozenset[int]:
    ids = set(getattr(processor, "image_token_ids", None) or [])
    for attr in ("image_token_id", "image_token_index"):
        value = getattr(processor, attr, None)
        if isinstance(value, int):
            ids.add(value)
    return frozenset(i for i in ids if i is not None)


def _prepare(vlm: VLM, index: int, image, texts: Sequence[str], boundary_ids, image_ids) -> _Prefixed:
    import torch

    first = vlm.process([texts[0]], [image])
    unknown = [key for key, value in first.items() if key not in _TOKEN_KEYS and hasattr(value, "shape")
               and value.ndim >= 2 and tuple(value.shape[:2]) == tuple(first["input_ids"].shape)]
    if unknown:
        raise EngineError(f"model {vlm.name!r}: processor output {unknown} looks per-token but the shared-prefix "
                          "engine does not know how to split it; set 'engine: reference' for this model")
    expanded_first = first["input_ids"][0].tolist()
    plain = vlm.tokenizer(list(texts), add_special_tokens=vlm.add_special_tokens)["input_ids"]
    model_type = getattr(vlm.model.config, "model_type", None)
    plan = None if model_type in NO_SPLICE_MODELS else splice_plan(plain, expanded_first, boundary_ids, image_ids)
    if plan is not None:
        p, s = plan
        suffixes = [list(row[s:]) for row in plain]
    else:  # every text through the processor (image processed K times), split at the token level
        expanded = vlm.process(list(texts), [image] * len(texts), padding=True, padding_side="right")
        rows = [ids[mask.bool()].tolist() for ids, mask in zip(expanded["input_ids"], expanded["attention_mask"])]
        if rows[0] != expanded_first:
            raise EngineError(f"model {vlm.name!r}: the processor tokenizes the same text differently alone and "
                              "in a batch; set 'engine: reference' for this model")
        p = min(common_prefix_length(rows), min(len(r) for r in rows) - 1)
        if any(t in image_ids for row in rows for t in row[p:]):
            raise EngineError(f"model {vlm.name!r}: image tokens follow the first prompt-specific token, so the "
                              "prompts share no prefix holding the image; set 'engine: reference'")
        suffixes = [row[p:] for row in rows]
    prefix_inputs = {key: (value[:, :p] if key in _TOKEN_KEYS else value) for key, value in first.items()}
    packed = model_type in PACKED_PIXEL_MODELS
    if not packed and all(isinstance(v, torch.Tensor) for v in prefix_inputs.values()):
        signature = (p, tuple((key, tuple(v.shape), str(v.dtype)) for key, v in prefix_inputs.items()))
    else:  # inputs that are not tensors (lists, ...) or packed pixels are not stacked: this sample runs alone
        signature = ("alone", index)
    return _Prefixed(index, prefix_inputs, suffixes, signature)


def _groups(prepared: list[_Prefixed], batch_size: int) -> Iterator[list[_Prefixed]]:
    """Samples whose prefix inputs stack (same prefix length and image input shapes), in order."""
    by_signature: dict[tuple, list[_Prefixed]] = {}
    for item in prepared:
        by_signature.setdefault(item.signature, []).append(item)
    for items in by_signature.values():
        for start in range(0, len(items), batch_size):
            yield items[start:start + batch_size]


def length_buckets(lengths: Sequence[int]) -> list[list[int]]:
    """Split prompt indices into runs of similar suffix length, to pad less.

    Each bucket is one forward pass over copies of the prefix cache, padded to its longest suffix.
    Minimises padded tokens plus one average-length row per extra forward (its fixed cost), by
    dynamic programming over the prompts sorted by length.
    """
    order = sorted(range(len(lengths)), key=lambda j: (lengths[j], j))
    sorted_lengths = [lengths[j] for j in order]
    overhead = sum(lengths) / len(lengths)
    best = [0.0] + [float("inf")] * len(order)  # best[i]: cost of the first i prompts
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * sorted_lengths[end - 1] + (overhead if start else 0.0)
            if cost < best[end]:
                best[end], cut[end] = cost, start
    buckets, end = [], len(order)
    while end:
        buckets.append(order[cut[end]:end])
        end = cut[end]
    return buckets[::-1]


def _score_group(vlm: VLM, group: list[_Prefixed], k: int, scores: FirstTokenScores) -> None:
    import torch

    prefix = group[0].prefix_inputs if len(group) == 1 else {
        key: torch.cat([item.prefix_inputs[key] for item in group]) for key in group[0].prefix_inputs}
    device = vlm.input_device
    pad = vlm.tokenizer.pad_token_id if vlm.tokenizer.pad_token_id is not None else 0
    buckets = length_buckets([max(len(item.suffixes[j]) for item in group) for j in range(k)])
    with torch.inference_mode():
        prefix_cache = vlm.model(**prefix, use_cache=True, logits_to_keep=1).past_key_values
        for number, prompts in enumerate(buckets):
            # the forward rebinds the cache's tensors, so the last bucket may use the prefix cache itself
            cache = prefix_cache if number == len(buckets) - 1 else copy.deepcopy(prefix_cache)
            repeat_cache(cache, len(prompts))
            rows = [(item.index, j) for item in group for j in prompts]
            suffixes = [item.suffixes[j] for item in group for j in prompts]
            width = max(len(suffix) for suffix in suffixes)
            suffix_ids = torch.tensor([suffix + [pad] * (width - len(suffix)) for suffix in suffixes], device=device)
            last = torch.tensor([[len(suffix) - 1] for suffix in suffixes], device=vlm.output_device)
            extra = {}
            for key in _FULL_LENGTH_KEYS:
                if key in prefix:
                    head = prefix[key]
                    tail = head[:, -1:].expand(-1, width, *head.shape[2:])
                    extra[key] = torch.cat([head, tail], dim=1).repeat_interleave(len(prompts), dim=0)
            logits = vlm.model(input_ids=suffix_ids, past_key_values=cache, use_cache=True, logits_to_keep=last,
                               **extra).logits
            scores.put(rows, readout(at_last_token(logits, last), vlm.unsafe_id, vlm.safe_id))


def repeat_cache(cache, repeats: int) -> None:
    """Repeat every sample of ``cache`` ``repeats`` times along the batch, in place (sample-major order).

    ``DynamicCache.batch_repeat_interleave`` covers attention layers only; the state of linear-attention
    layers (Qwen3.5 inside MiniCPM-V 4.6: convolution and recurrent states) is repeated here with
    the index selection transformers uses for beam search.
    """
    import torch
    from transformers.cache_utils import DynamicLayer, LinearAttentionCacheLayerMixin

    for layer in cache.layers:
        if isinstance(layer, LinearAttentionCacheLayerMixin):
            states = [s for s in (*layer.conv_states.values(), *layer.recurrent_states.values())
                      if isinstance(s, torch.Tensor)]
            if states:
                index = torch.arange(states[0].shape[0], device=states[0].device).repeat_interleave(repeats)
                LinearAttentionCacheLayerMixin.reorder_cache(layer, index)
            if isinstance(layer, DynamicLayer):
                DynamicLayer.batch_repeat_interleave(layer, repeats)
        else:
            layer.batch_repeat_interleave(repeats)


def at_last_token(logits, last):
    """Each row's logits at its last real suffix token.

    ``logits_to_keep=last`` makes most models return exactly those positions (one per row); some
    (MiniCPM-V 4.6/4.7 in transformers 5.23) ignore it and return every position: then gather.
    """
    if logits.shape[1] == 1:
        return logits[:, 0]
    index = last.to(logits.device).view(-1, 1, 1).expand(-1, 1, logits.shape[-1])
    return logits.gather(1, index)[:, 0]



def score_shared_prefix(vlm: VLM, images: Sequence, texts: Sequence[Sequence[str]], batch_size: int,
                        on_samples: Callable[[int], None] = lambda n: None) -> FirstTokenScores:
    """The prefix once per sample (``batch_size`` samples per forward), the K suffixes as one batch."""
    n, k = len(texts), len(texts[0])
    scores = FirstTokenScores.empty(n, k)
    tokenizer = vlm.tokenizer
    boundary_ids = frozenset(tokenizer.added_tokens_decoder)
    image_ids = _image_ids(vlm.processor)
    for start in range(0, n, batch_size):
        stop = min(n, start + batch_size)
        prepared = [_prepare(vlm, i, images[i], texts[i], boundary_ids, image_ids) for i in range(start, stop)]
        for group in _groups(prepared, batch_size):
            _score_group(vlm, group, k, scores)
        on_samples(stop - start)
    return scores


SCORERS: dict[str, Callable[..., FirstTokenScores]] = {
    "shared_prefix": score_shared_prefix,
    "reference": score_reference,
}
