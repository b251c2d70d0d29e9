"""Activation steering (the VSCBench paper's Internal Activation Revision, IAR).

Layer ``L`` (1-based) is the residual stream after the L-th decoder block of the language model,
i.e. the output of ``layers[L - 1]`` (``hidden_states[L]`` of ``output_hidden_states``).

- Vector (config ``safety_calibration.steering.vector``), from lock-split rows only (the evaluation
  split cannot leak into it), each prompt rendered with the calibration family's first template
  (the model's chat template, image first, generation prompt included):

  - ``responses`` (the paper's IAR, mass-mean shift over behaviour): for every unsafe lock-split
    instruction, a refusal and a compliant reply (the templated replies of
    ``prompts/calibration/replies.yaml``) are teacher-forced after the prompt; ``h_L`` is averaged
    over the reply's tokens; ``v_L = mean(h_L | refusal) - mean(h_L | compliance)``, the direction
    from unsafe to safe behaviour. Strength normalisation: none; ``alpha`` multiplies this raw mean
    difference, as in mass-mean shift, so alpha = 1 moves a compliant reply's mean activation onto a
    refusal's (the paper's strengths 1.0-2.5 mean the same here).
  - ``inputs`` (a named alternative): ``v_L = mean(h_L at the last prompt token | unsafe samples)
    - mean(h_L at the last prompt token | safe samples)``, a contrast of inputs, not of behaviour.

  Saved as safetensors (``layer_<L>`` tensors, float32) with provenance in the file's metadata.
- Scoring: a forward hook on ``layers[L - 1]`` adds ``alpha * v_L`` to its output at every
  position (prefix and suffix passes alike, so both engines see the same model). ``alpha = 0``
  adds exact zeros and reproduces unsteered scores bit for bit.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.base import io

log = logging.getLogger(__name__)

_DECODER_LISTS = ("language_model.layers", "text_model.layers", "model.layers")


class SteeringError(ValueError):
    """A steering request does not fit the model or the data; the message names the key and the fix."""


def decoder_layers(model) -> Any:
    """The language model's decoder blocks (a ``ModuleList``)."""
    import torch

    found = {name: module for name, module in model.named_modules() if isinstance(module, torch.nn.ModuleList)}
    for suffix in _DECODER_LISTS:
        for name, module in found.items():
            if name == suffix or name.endswith("." + suffix):
                return module
    raise SteeringError(f"cannot find the language model's decoder layers in {type(model).__name__} "
                        f"(looked for module lists named *{' / *'.join(_DECODER_LISTS)})")


def _check_layer(model, layer: int) -> Any:
    layers = decoder_layers(model)
    if not 1 <= int(layer) <= len(layers):
        raise SteeringError(f"steering layer {layer} is outside 1..{len(layers)} (the model has {len(layers)} decoder "
                            "layers); fix config key 'safety_calibration.steering.layers'")
    return layers[int(layer) - 1]


def _hidden(output):
    return output[0] if isinstance(output, tuple) else output


@contextlib.contextmanager
def steering(model, layer: int, vector, alpha: float) -> Iterator[None]:
    """Add ``alpha * vector`` to the output of decoder layer ``layer`` (1-based) while inside."""
    import torch

    block = _check_layer(model, layer)
    shift = torch.as_tensor(np.asarray(vector), dtype=torch.float32) * float(alpha)

    def hook(module, args, output):
        hidden = _hidden(output)
        steered = hidden + shift.to(device=hidden.device, dtype=hidden.dtype)
        return (steered, *output[1:]) if isinstance(output, tuple) else steered

    handle = block.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


@contextlib.contextmanager
def _capture(model, layers: Sequence[int], reduce) -> Iterator[dict[int, list]]:
    """Record, per forward, each layer's output reduced over positions by ``reduce`` (tensor (batch, positions,
    hidden) -> (batch, hidden)): ``{layer: [tensor (batch, hidden), ...]}``, detached, float32, on the CPU."""
    captured: dict[int, list] = {int(layer): [] for layer in layers}
    handles = []
    for layer, rows in captured.items():
        def hook(module, args, output, rows=rows):
            rows.append(reduce(_hidden(output)).detach().float().cpu())
        handles.append(_check_layer(model, layer).register_forward_hook(hook))
    try:
        yield captured
    finally:
        for handle in handles:
            handle.remove()


def capture_last_token(model, layers: Sequence[int]) -> contextlib.AbstractContextManager[dict[int, list]]:
    """Record, per forward, each layer's output at the last position: ``{layer: [tensor (batch, hidden), ...]}``."""
    return _capture(model, layers, lambda hidden: hidden[:, -1])


def capture_span_mean(model, layers: Sequence[int], start: int) -> contextlib.AbstractContextManager[dict[int, list]]:
    """Record, per forward, each layer's output averaged over positions ``start:`` (a reply's tokens)."""
    return _capture(model, layers, lambda hidden: hidden[:, start:].float().mean(dim=1))


def response_vectors(vlm, images: Sequence, prompts: Sequence[str], replies: Mapping[str, str],
                     layers: Sequence[int]) -> dict[int, np.ndarray]:
    """``v_L`` per layer from teacher-forced replies: mean over instructions of the reply-token mean of
    ``h_L`` after the refusal, minus that after the compliant reply (``replies``: refusal, compliance)."""
    import torch

    means: dict[str, dict[int, list]] = {}
    for kind in ("refusal", "compliance"):
        means[kind] = {int(layer): [] for layer in layers}
        for image, prompt in zip(images, prompts):
            start = vlm.process([prompt], [image])["input_ids"].shape[1]
            with capture_span_mean(vlm.model, layers, start) as captured, torch.inference_mode():
                vlm.model(**vlm.process([prompt + replies[kind]], [image]), use_cache=False, logits_to_keep=1)
            for layer, rows in captured.items():
                means[kind][layer].extend(rows)
    return {layer: (torch.cat(means["refusal"][layer]).numpy().astype(np.float64).mean(axis=0)
                    - torch.cat(means["compliance"][layer]).numpy().astype(np.float64).mean(axis=0)).astype(np.float32)
            for layer in means["refusal"]}


def lock_rows(manifest: pl.DataFrame, split: str, source: str = "") -> pl.DataFrame:
    """The lock-split rows, with both labels present (a vector needs both means)."""
    rows = manifest.filter(pl.col("split") == split)
    counts = rows["label"].value_counts()
    if rows.filter(pl.col("label") == 1).height == 0 or rows.filter(pl.col("label") == 0).height == 0:
        raise SteeringError(f"{source}: the lock split {split!r} needs safe and unsafe samples for a steering vector "
                            f"(has {counts.to_dicts()}); fix config key 'lock.split'")
    return rows


def steering_vectors(vlm, images: Sequence, texts: Sequence[str], labels: Sequence[int], layers: Sequence[int]) -> dict[int, np.ndarray]:
    """``v_L`` per layer from rendered prompts (one forward each): mean over unsafe minus mean over safe."""
    import torch

    labels = np.asarray(labels)
    with capture_last_token(vlm.model, layers) as captured, torch.inference_mode():
        for image, text in zip(images, texts):
            vlm.model(**vlm.process([text], [image]), use_cache=False, logits_to_keep=1)
    vectors = {}
    for layer, rows in captured.items():
        h = torch.cat(rows).numpy().astype(np.float64)
        vectors[layer] = (h[labels == 1].mean(axis=0) - h[labels == 0].mean(axis=0)).astype(np.float32)
    return vectors


def save_vectors(vectors: Mapping[int, np.ndarray], path: str | Path, provenance: Mapping[str, Any]) -> None:
    from safetensors.numpy import save_file

    tensors = {f"layer_{layer}": np.ascontiguousarray(v, dtype=np.float32) for layer, v in vectors.items()}
    metadata = {"prompt_reliability": json.dumps(provenance, sort_keys=True, default=str)}
    with io.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)


def load_vector(path: str | Path, layer: int) -> np.ndarray:
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    key = f"layer_{int(layer)}"
    if key not in tensors:
        raise SteeringError(f"{path} holds no vector for layer {layer} (has {sorted(tensors)}); rebuild it with that layer "
                            "in config key 'safety_calibration.steering.layers'")
    return tensors[key]


def read_provenance(path: str | Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return json.loads((handle.metadata() or {}).get("prompt_reliability", "{}"))


def file_hash(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]
