"""Greedy, batched text generation from a Hugging Face VLM: one (image, instruction) -> one reply.

A *generator* is any callable ``generate(images, instructions) -> list[str]`` (same length, same
order). :class:`HFGenerator` is the real one; tests pass a scripted fake with canned outputs, so the
two-stage self-assessment runs without torch.

- Each instruction is one user turn, the image first, rendered with the model's own chat template
  (:func:`hf_engines.render_chat`), so every question is asked in a fresh conversation.
- Greedy decoding (``do_sample=False``, no sampling parameters from the checkpoint's generation
  config), ``max_new_tokens`` from config, left padding, rows batched ``batch_size`` at a time.
- Only the new tokens are decoded, special tokens skipped, surrounding whitespace stripped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

log = logging.getLogger(__name__)

Generator = Callable[[Sequence[Any], Sequence[str]], list[str]]


class HFGenerator:
    """``generate(images, instructions)`` with a loaded (processor, model); see the module docstring."""

    def __init__(self, processor, model, max_new_tokens: int, batch_size: int = 8):
        from prompt_reliability.scoring.hf_engines import (
            adds_special_tokens,
            render_chat,
        )

        self.processor, self.model = processor, model
        self.max_new_tokens, self.batch_size = int(max_new_tokens), int(batch_size)
        self._render = render_chat
        self.add_special_tokens = adds_special_tokens(processor, render_chat(processor, "probe"))
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.pad_token_id = tokenizer.pad_token_id
        self.calls = 0
        self.seconds = 0.0
        self.new_tokens = 0

    @classmethod
    def load(cls, model: str, settings: Mapping[str, Any], max_new_tokens: int, batch_size: int) -> HFGenerator:
        from prompt_reliability.scoring.backends.hf import (
            _quiet_transformers,
            load_model,
        )

        with _quiet_transformers():
            processor, vlm = load_model(model, settings)
        return cls(processor, vlm, max_new_tokens, batch_size)

    def __call__(self, images: Sequence[Any], instructions: Sequence[str]) -> list[str]:
        import torch

        if len(images) != len(instructions):
            raise ValueError(f"{len(images)} images for {len(instructions)} instructions")
        texts = [self._render(self.processor, text) for text in instructions]
        device = self.model.get_input_embeddings().weight.device
        replies: list[str] = []
        started = time.perf_counter()
        for start in range(0, len(texts), self.batch_size):
            stop = start + self.batch_size
            batch = self.processor(text=texts[start:stop], images=[[image] for image in images[start:stop]],
                                   return_tensors="pt", padding=True, add_special_tokens=self.add_special_tokens)
            batch = batch.to(device, dtype=self.model.dtype)
            with torch.inference_mode():
                out = self.model.generate(**batch, do_sample=False, max_new_tokens=self.max_new_tokens,
                                          pad_token_id=self.pad_token_id, temperature=None, top_p=None, top_k=None)
            new = out[:, batch["input_ids"].shape[1]:]
            self.new_tokens += int((new != self.pad_token_id).sum())
            replies.extend(text.strip() for text in self.processor.batch_decode(new, skip_special_tokens=True))
        self.calls += len(texts)
        self.seconds += time.perf_counter() - started
        return replies

    def stats(self) -> dict[str, Any]:
        return {"generations": self.calls, "seconds": round(self.seconds, 3), "new_tokens": self.new_tokens,
                "max_new_tokens": self.max_new_tokens, "batch_size": self.batch_size}
