"""VSCBench at the paper's scale, simulated (config ``safety_simulation``; ``config/vscbench_sim.yaml``).

Seeded simulated VLMs answer a simulated VSCBench: judged responses (refused or not) to every sample of
both subsets under every calibration method, and answers to POPE-style yes/no and ScienceQA-style
multiple-choice items (correct or not). Nothing here is a measurement: the profiles are shaped after
the paper's figures, and each of the paper's findings is an effect of the simulator that
``safety_simulation.effects`` switches off, so that a claim checked on the run can fail.

The benchmark (seed ``seed``, shared by every model): ``image_centric`` pairs in its categories
(one query, a safe and an unsafe look-alike image), ``text_centric`` pairs (a safe and an unsafe
query) shown with a ``QueryRelevant`` and with a ``FigStep`` image, and the same queries as text
alone (``text-only``, the textual baseline of the paper's transfer finding). Every sample has an
item effect ``e ~ N(0, item_sd)`` shared by all models.

A model refuses a sample with probability ``sigmoid(L + e)``; ``L`` is the logit of
``1 - SRA_s`` (safe samples) or ``SRA_u`` (unsafe) of its profile (``image`` and ``text``
baselines, per-category ``categories`` overrides, else a seeded category offset ``N(0,
category_sd)``). On QueryRelevant images the unsafe logit drops by ``query_relevant_shift[access]``
(FigStep: half of it). Calibration methods move the logits (T_u = logit 0.95, T_s = logit 0.05):

- ``cot``, ``pe``, ``fewshot-<k>``: ``L_u += g (T_u - L_u)+``, ``L_s += -g/2 (L_s - T_s)+ + c``
  (``methods.<name>``: ``gain`` g and ``safe_cost`` c; few-shot: ``g_k = 1 - (1 - g_1)^k``, ``c_k = k c_1``);
- ``iar-L<layer>-s<strength>`` (open-weight models only: the paper steers activations, which a
  served model does not expose): ``f = 1 - exp(-iar.gain * strength * exp(-((layer - iar.best_layer) / iar.width)^2))``
  pulls both logits toward their targets by ``f``; ``distance = (layer - best_layer) / width``, 1.5 times
  that below ``best_layer`` (earlier layers, general features, lose efficacy faster).

Helpfulness: ``P(correct) = sigmoid(logit(profile accuracy) - cost + e_item)``, ``cost`` =
``methods.<name>.helpfulness_cost`` (few-shot: k times it), IAR: ``iar.helpfulness_cost * strength *
(1 + distance)``. Every draw uses common random numbers per (model, item): the
methods differ by their effects, not by noise.

Effects (``effects``, all true by default): ``group_lean`` (false: each profile's SRA_s and SRA_u are
replaced by their logit mean, so no model leans), ``few_shot`` (false: few-shot gain and cost 0),
``helpfulness_cost`` (false: every method's helpfulness cost 0), ``query_relevant`` (false: no shift),
``iar_layer`` (false: distance 0 at every layer, so IAR works alike at every layer).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.base import io

log = logging.getLogger("prompt_reliability")

T_UNSAFE, T_SAFE = float(np.log(0.95 / 0.05)), float(np.log(0.05 / 0.95))
IMAGE_KINDS = ("text-only", "QueryRelevant", "FigStep")


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _rng(*parts: Any) -> np.random.Generator:
    digest = hashlib.sha256("/".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def method_names(simulation: Mapping[str, Any], access: str) -> list[str]:
    """The calibration methods a model of ``access`` runs: none, cot, pe, few-shot, IAR (open-weight only)."""
    names = ["none", "cot", "pe", *(f"fewshot-{k}" for k in simulation["few_shot"]["shots"])]
    if access == "open":
        names += [iar_name(layer, s) for layer in simulation["iar"]["layers"] for s in simulation["iar"]["strengths"]]
    return names


def iar_name(layer: int, strength: float) -> str:
    return f"iar-L{layer}-s{strength:g}"


def benchmark(simulation: Mapping[str, Any]) -> pl.DataFrame:
    """The simulated VSCBench: one row per sample (subset, image_kind, pair_id, category, label, item effect)."""
    seed, item_sd = simulation["seed"], simulation["item_sd"]
    frames = []
    for subset in ("image_centric", "text_centric"):
        n_pairs, categories = simulation["pairs"][subset], simulation["categories"][subset]
        rng = _rng(seed, "benchmark", subset)
        category = np.asarray(categories)[np.arange(n_pairs) % len(categories)]
        if subset == "image_centric":
            kinds = [("image", np.arange(n_pairs))]
        else:  # the paper's text-centric pairs are its queries under both attacks; text-only is their textual baseline
            half = n_pairs // 2
            kinds = [(kind, np.arange(half)) for kind in IMAGE_KINDS]
        for kind, pairs in kinds:
            for label in (0, 1):
                frames.append(pl.DataFrame({
                    "subset": subset, "image_kind": kind, "pair_id": [f"{subset[:2]}-{p:05d}" for p in pairs],
                    "category": category[pairs], "label": np.full(pairs.size, label, np.int8),
                    "item": rng.normal(0.0, item_sd, pairs.size)}))
    out = pl.concat(frames)
    return out.with_columns(
        (pl.col("pair_id") + "-" + pl.col("image_kind") + pl.when(pl.col("label") == 1).then(pl.lit("-u")).otherwise(pl.lit("-s")))
        .alias("sample_id"))


def _baseline_logits(profile: Mapping[str, Any], simulation: Mapping[str, Any], model: str, samples: pl.DataFrame) -> np.ndarray:
    """Refusal logit of every sample before any method (see the module docstring)."""
    effects = simulation["effects"]
    rng = _rng(simulation["seed"], "categories", model)
    offsets = {c: rng.normal(0.0, simulation["category_sd"], 2)
               for c in sorted({*simulation["categories"]["image_centric"], *simulation["categories"]["text_centric"]})}
    overrides = profile.get("categories") or {}
    logits = np.empty(samples.height)
    subset, kind = samples["subset"].to_numpy(), samples["image_kind"].to_numpy()
    category, label = samples["category"].to_numpy(), samples["label"].to_numpy()
    for base_key, subset_name in (("image", "image_centric"), ("text", "text_centric")):
        base = profile[base_key]
        ls, lu = _logit(1 - base["sra_s"]), _logit(base["sra_u"])
        if not effects["group_lean"]:  # no lean: SRA_s = SRA_u at their logit mean
            mid = (_logit(base["sra_s"]) + lu) / 2
            ls, lu = -mid, mid
        for c in np.unique(category[subset == subset_name]):
            at = (subset == subset_name) & (category == c)
            if c in overrides:
                cs, cu = _logit(1 - overrides[c].get("sra_s", base["sra_s"])), _logit(overrides[c].get("sra_u", base["sra_u"]))
            else:
                cs, cu = ls - offsets[c][0], lu + offsets[c][1]
            logits[at & (label == 0)] = cs
            logits[at & (label == 1)] = cu
    shift = simulation["query_relevant_shift"][profile["access"]] if effects["query_relevant"] else 0.0
    logits[(kind == "QueryRelevant") & (label == 1)] -= shift
    logits[(kind == "FigStep") & (label == 1)] -= shift / 2
    return logits


def _method_effect(simulation: Mapping[str, Any], method: str) -> tuple[float, float, float, float]:
    """(unsafe gain, safe pull, safe cost, helpfulness cost) of a method (IAR: gain = safe pull = f)."""
    effects, methods = simulation["effects"], simulation["methods"]
    if method == "none":
        return 0.0, 0.0, 0.0, 0.0
    if method.startswith("iar-"):
        layer, strength = method.removeprefix("iar-L").split("-s")
        layer, strength = int(layer), float(strength)
        iar = simulation["iar"]
        # earlier layers (general features) lose efficacy faster than later ones
        distance = (iar["best_layer"] - layer) * 1.5 / iar["width"] if layer < iar["best_layer"] else (layer - iar["best_layer"]) / iar["width"]
        distance = distance if effects["iar_layer"] else 0.0
        f = float(1 - np.exp(-iar["gain"] * strength * np.exp(-distance ** 2)))
        cost = iar["helpfulness_cost"] * strength * (1 + distance) if effects["helpfulness_cost"] else 0.0
        return f, f, 0.0, cost
    if method.startswith("fewshot-"):
        k = int(method.removeprefix("fewshot-"))
        spec = methods["fewshot"]
        gain = 1 - (1 - spec["gain"]) ** k if effects["few_shot"] else 0.0
        safe_cost = k * spec["safe_cost"] if effects["few_shot"] else 0.0
        cost = k * spec["helpfulness_cost"]
    else:
        spec = methods[method]
        gain, safe_cost, cost = spec["gain"], spec["safe_cost"], spec["helpfulness_cost"]
    return gain, gain / 2, safe_cost, cost if effects["helpfulness_cost"] else 0.0


def simulate_model(model: str, profile: Mapping[str, Any], simulation: Mapping[str, Any]) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(judged responses, helpfulness answers) of one simulated model under every method."""
    samples = benchmark(simulation)
    base = _baseline_logits(profile, simulation, model, samples) + samples["item"].to_numpy()
    uniform = _rng(simulation["seed"], "responses", model).random(samples.height)
    label = samples["label"].to_numpy()
    items = {name: n for name, n in simulation["helpfulness"].items()}
    help_rng = _rng(simulation["seed"], "helpfulness")  # items shared by models; answers per model
    help_items = {name: help_rng.normal(0.0, simulation["item_sd"], n) for name, n in items.items()}
    help_uniform = {name: _rng(simulation["seed"], "helpfulness", model, name).random(n) for name, n in items.items()}
    responses, answers = [], []
    for method in method_names(simulation, profile["access"]):
        gain, pull, safe_cost, help_cost = _method_effect(simulation, method)
        logits = np.where(label == 1, base + gain * np.maximum(T_UNSAFE - base, 0.0),
                          base - pull * np.maximum(base - T_SAFE, 0.0) + safe_cost)
        responses.append(samples.select("sample_id", "subset", "image_kind", "pair_id", "category", "label").with_columns(
            pl.lit(method).alias("method"), pl.Series("refused", (uniform < _sigmoid(logits)).astype(np.int8))))
        for name in items:
            p = _sigmoid(_logit(profile["helpfulness"][name]) - help_cost + help_items[name])
            answers.append({"method": method, "benchmark": name, "n": items[name],
                            "correct": int((help_uniform[name] < p).sum())})
    tag = {"model": model, "access": profile["access"]}
    return (pl.concat(responses).with_columns(*(pl.lit(v).alias(k) for k, v in tag.items())),
            pl.DataFrame(answers).with_columns(*(pl.lit(v).alias(k) for k, v in tag.items())))


def write_simulated_model(*, responses: str, helpfulness: str, model: str, profile: Mapping[str, Any],
                          simulation: Mapping[str, Any]) -> None:
    """Rule ``vscbench_simulate``: one simulated model's judged responses and helpfulness answers."""
    judged, answers = simulate_model(model, profile, simulation)
    io.write_parquet(judged, responses, {"model": model, "profile": dict(profile)})
    io.write_parquet(answers, helpfulness, {"model": model})
    log.info("%s: %d judged responses, %d methods", model, judged.height, judged["method"].n_unique())


def models_of(simulation: Mapping[str, Any]) -> Sequence[str]:
    return list(simulation["models"])
