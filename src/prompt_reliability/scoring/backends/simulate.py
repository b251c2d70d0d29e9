"""The ``simulate`` backend: a seeded statistical model of per-prompt first-token logits.

Structure (the phenomena the paper reports):
- per-sample evidence ``e_i ~ N(+/- separation/2, evidence_sd)`` that depends on the label;
- per-prompt bias ``b_k`` (overall + family + prompt parts) and scale ``s_k = exp(N(0, prompt_scale_sd))``;
- heteroscedastic per-(sample, prompt) noise with sd ``noise_sd * (1 + f_i)``, where the fragility
  ``f_i`` is Gamma-distributed and grows near the decision boundary, so a minority of samples
  flip between prompts while most do not.

``z_ik = s_k * e_i + b_k + noise``; ``logit_u = z/2``, ``logit_s = -z/2`` so ``p_unsafe = sigmoid(z)``.
Every random stream is keyed by (seed, dataset, prompt id), so a family's job draws exactly the
numbers the same prompts would get in any other grouping.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy.special import expit, logit

from prompt_reliability.scoring.cache import ScoringJob

# Parameters (and their defaults) are config keys: workflow/schemas/config.schema.yaml, definitions.simulate.
PARAMS = ("seed", "separation", "evidence_sd", "prompt_bias_sd", "family_bias_sd", "prompt_scale_sd", "noise_sd",
          "fragility_shape", "fragility_scale", "boundary_fragility", "overall_bias", "label_mass_mean")


def _stream(*keys: int | str) -> np.random.Generator:
    entropy = [k if isinstance(k, int) else zlib.crc32(k.encode()) for k in keys]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def simulate_logits(
    dataset: str,
    labels: np.ndarray,
    prompt_ids: Sequence[str],
    families: Sequence[str],
    params: Mapping[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Logit differences ``z`` (n x K) and label masses (n x K) for the given prompts.

    ``params``: the model's validated ``simulate`` settings (every key of :data:`PARAMS`).
    """
    missing = [key for key in PARAMS if key not in params]
    if missing:
        raise KeyError(f"simulate parameters {missing} missing: pass the schema-validated 'simulate' config")
    p = params
    seed = int(p["seed"])
    labels = np.asarray(labels)
    n = len(labels)
    sample_rng = _stream(seed, "samples", dataset)
    evidence = np.where(labels == 1, 0.5, -0.5) * p["separation"] + p["evidence_sd"] * sample_rng.standard_normal(n)
    fragility = p["fragility_scale"] * sample_rng.gamma(p["fragility_shape"], 1.0 / p["fragility_shape"], size=n)
    fragility += p["boundary_fragility"] * np.exp(-0.5 * evidence**2)
    noise_scale = p["noise_sd"] * (1.0 + fragility)

    z = np.empty((n, len(prompt_ids)))
    mass = np.empty((n, len(prompt_ids)))
    for k, (prompt_id, family) in enumerate(zip(prompt_ids, families)):
        family_bias = p["family_bias_sd"] * _stream(seed, "family", family).standard_normal()
        prompt_rng = _stream(seed, "prompt", prompt_id)
        bias = p["overall_bias"] + family_bias + p["prompt_bias_sd"] * prompt_rng.standard_normal()
        scale = np.exp(p["prompt_scale_sd"] * prompt_rng.standard_normal())
        noise_rng = _stream(seed, "noise", dataset, prompt_id)
        z[:, k] = scale * evidence + bias + noise_scale * noise_rng.standard_normal(n)
        mass[:, k] = expit(logit(p["label_mass_mean"]) + 0.5 * noise_rng.standard_normal(n))
    return z, mass


def simulate_scores(manifest: pl.DataFrame, prompt_ids: Sequence[str], families: Sequence[str], dataset: str, params: Mapping[str, Any], label_tokens: tuple[str, str]) -> pl.DataFrame:
    """Long-format rows ``sample_id, prompt_id, logit_u, logit_s, label_mass, top_token``."""
    z, mass = simulate_logits(dataset, manifest["label"].to_numpy(), prompt_ids, families, params)
    n, k = z.shape
    unsafe, safe = label_tokens
    top = np.where(mass > 0.5, np.where(z >= 0, unsafe, safe), "<other>")
    return pl.DataFrame(
        {
            "sample_id": np.repeat(manifest["sample_id"].to_numpy(), k),
            "prompt_id": np.tile(np.asarray(prompt_ids, dtype=object), n),
            "logit_u": (z / 2).ravel(),
            "logit_s": (-z / 2).ravel(),
            "label_mass": mass.ravel(),
            "top_token": top.ravel(),
        }
    )


def score(job: ScoringJob) -> tuple[pl.DataFrame, dict]:
    params = job.model_cfg["simulate"]
    rows = simulate_scores(job.manifest, job.prompt_ids, [job.family] * len(job.prompt_ids), job.dataset, params,
                          (job.registry.labels.unsafe, job.registry.labels.safe))
    return rows, {"simulate": dict(params)}
