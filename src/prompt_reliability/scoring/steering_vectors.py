"""Rule entry point of the steering vectors: load the model, run the lock split, save the vectors.

Separate from :mod:`steering` (the vectors and the hook) because it loads models through the hf
backend, which itself uses :mod:`steering` to apply a variant's hook.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.scoring.steering import (
    lock_rows,
    response_vectors,
    save_vectors,
    steering_vectors,
)

log = logging.getLogger("prompt_reliability")


def write_steering_vectors(*, manifest: str, vectors: str, model: str, model_config: Mapping[str, Any], prompt_dir: str,
                           families: list[str], family: str, prompt_format: Mapping[str, str], split: str,
                           layers: Sequence[int], vector: str, dataset: str = "", replies: str | None = None,
                           **_inputs: Any) -> dict[int, np.ndarray]:
    """Rule entry point: steering vectors of ``model`` for ``layers`` from the lock split of ``manifest``;
    ``vector``: ``responses`` (teacher-forced refusal vs compliant ``replies``, the paper's IAR) or
    ``inputs`` (last prompt token, unsafe vs safe samples); see :mod:`steering`."""
    import time

    from prompt_reliability.data.prompts import load_registry, render_instruction
    from prompt_reliability.scoring.backends import hf
    from prompt_reliability.scoring.cache import ScoringJob, manifest_hash
    from prompt_reliability.scoring.hf_engines import render_chat

    started = time.perf_counter()
    full = pl.read_parquet(manifest)
    rows = lock_rows(full, split, manifest)
    registry = load_registry(prompt_dir, families)
    template = registry.family(family)[0]
    settings = hf.hf_settings(model, model_config)
    job = ScoringJob(model, model_config, dataset, family, rows, manifest_hash(rows), registry, prompt_format, Path("."))
    vlm, provenance = hf.open_vlm(job, settings)
    texts = [render_chat(vlm.processor, render_instruction(template.text, q, prompt_format["with_query"],
                                                          prompt_format["without_query"])) for q in rows["query"]]
    images = [hf._open_image(p, s, dataset) for p, s in zip(rows["image_path"], rows["sample_id"])]
    if vector == "responses":
        from prompt_reliability.data.calibration_prompts import load_replies

        if not replies:
            raise ValueError("steering vector 'responses' needs the replies file (rule input 'replies')")
        reply_texts = load_replies(Path(replies).parent)
        unsafe = [i for i, label in enumerate(rows["label"].to_list()) if label == 1]
        result = response_vectors(vlm, [images[i] for i in unsafe], [texts[i] for i in unsafe], reply_texts, layers)
        position, definition = "reply tokens (teacher-forced)", "mean(refusal) - mean(compliance) over unsafe lock instructions"
    elif vector == "inputs":
        result = steering_vectors(vlm, images, texts, rows["label"].to_list(), layers)
        position, definition = "last prompt token", "mean(unsafe) - mean(safe) of decoder layer output"
    else:
        raise ValueError(f"unknown steering vector {vector!r}; use 'responses' or 'inputs'")
    save_vectors(result, vectors, {
        "model": model, "model_fingerprint": provenance["model_fingerprint"], "model_type": provenance["model_type"],
        "dataset": dataset, "split": split, "manifest_hash": manifest_hash(full),
        "lock_sample_ids_hash": hashlib.sha256("\x1f".join(rows["sample_id"]).encode()).hexdigest()[:16],
        "n_unsafe": int((rows["label"] == 1).sum()), "n_safe": int((rows["label"] == 0).sum()),
        "prompt_id": template.prompt_id, "prompt_text_hash": registry.text_hash(family), "layers": [int(x) for x in layers],
        "vector": vector, "position": position, "definition": definition,
        "norms": {str(k): float(np.linalg.norm(v)) for k, v in result.items()},
    })
    log.info("steering vectors of %s for layers %s from %d lock-split samples (%s/%s) in %.1f s; norms %s", model,
             list(layers), rows.height, dataset, split, time.perf_counter() - started,
             {k: round(float(np.linalg.norm(v)), 3) for k, v in result.items()})
    return result
