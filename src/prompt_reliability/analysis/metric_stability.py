"""Which metrics rank the models of a run stably (UnSAF section 4.1): across datasets and sample sizes.

Metrics: UnF1 (per setting, ``unf1_<setting>``; a non-default answering variant adds ``_<variant>``)
and every classifier metric ``ece, mce, nll, brier, macro_ce, auroc`` of the train-locked single
prompt and of the mean ensemble (``<metric>_selected``, ``<metric>_mean``). A "dataset" is an
evaluation pair's ``dataset/split`` for classifier metrics and the self-assessment dataset for UnF1.

Ranking stability: per metric and dataset the models are ranked, 1 = best (lower is better except
AUROC and UnF1), ties get their average rank, undefined (NaN) values are left out. For every pair of
datasets, Spearman's footrule ``F = sum_models |rank_a - rank_b|`` over the models ranked in both
(each ranking re-ranked on those common models first); ``max_footrule = floor(n^2 / 2)``, the
largest F for n models (a full reversal).

Sample-size robustness: per metric, model and dataset, for each n in ``sample_sizes`` (``all`` =
every sample; sizes above the available count are skipped) ``draws`` subsets of n samples are drawn
without replacement (seeded from ``seed`` and the metric, model and dataset names) and the metric
recomputed; ``cv = sd / mean`` with the sample standard deviation (ddof 1), NaN when the mean is 0.
UnF1 subsamples images when its answers name them (``sample_id``; the simulated self-assessor's do): a
dataset of n instances, each with its questions (and seeds), as the paper's dataset size n; otherwise
the classified answers (questions) of its variant. ECE of task answers (``ece_task``) subsamples items.
"""

from __future__ import annotations

import itertools
import logging
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.analysis.lockfile import locked_scores
from prompt_reliability.base import io
from prompt_reliability.data.matrix import split_rows

log = logging.getLogger(__name__)

CLASSIFIER_METRICS = ("ece", "mce", "nll", "brier", "macro_ce", "auroc")
METHODS = ("selected", "mean")
HIGHER_IS_BETTER = ("auroc", "unf1")
VALUE_SCHEMA = {"metric": pl.String, "dataset": pl.String, "model": pl.String, "value": pl.Float64}


def higher_is_better(metric: str) -> bool:
    return metric.split("_")[0] in HIGHER_IS_BETTER


def unf1_metric(setting: str, variant: str) -> str:
    return f"unf1_{setting}" if variant == "default" else f"unf1_{setting}_{variant}"


# --- values --------------------------------------------------------------------------------------


def classifier_values(reliability: pl.DataFrame) -> pl.DataFrame:
    """``metric, dataset, model, value`` from reliability rows (``model, dataset, split, method, <metrics>``)."""
    rows = []
    for r in reliability.filter(pl.col("method").is_in(METHODS)).iter_rows(named=True):
        for m in CLASSIFIER_METRICS:
            rows.append({"metric": f"{m}_{r['method']}", "dataset": f"{r['dataset']}/{r['split']}", "model": r["model"],
                         "value": float(r[m])})
    return pl.DataFrame(rows, schema=VALUE_SCHEMA)


def unf1_values(table: pl.DataFrame) -> pl.DataFrame:
    """``metric, dataset, model, value`` from ``self_assessment`` rows: UnF1 and, where the model gave task
    answers with a confidence, the conventional metrics ``<metric>_task`` (one value per model x dataset)."""
    rows = [{"metric": unf1_metric(r["setting"], r["variant"]), "dataset": r["dataset"], "model": r["model"],
             "value": float(r["unf1"])} for r in table.iter_rows(named=True)]
    if "n_task_items" in table.columns:
        tasks = table.filter(pl.col("n_task_items") > 0).unique(["model", "dataset"], keep="first", maintain_order=True)
        rows += [{"metric": f"{m}_task", "dataset": r["dataset"], "model": r["model"], "value": float(r[m])}
                 for r in tasks.iter_rows(named=True) for m in sa.CONVENTIONAL if m != "accuracy"]
    return pl.DataFrame(rows, schema=VALUE_SCHEMA)


# --- ranking stability ---------------------------------------------------------------------------


def rank(values: Mapping[str, float], higher_better: bool) -> dict[str, float]:
    """Rank of each model (1 = best, ties averaged); NaN values are left out."""
    names = [m for m, v in values.items() if not math.isnan(v)]
    if not names:
        return {}
    scores = np.array([values[m] for m in names], dtype=np.float64)
    ranks = metrics.average_ranks(-scores if higher_better else scores)
    return dict(zip(names, ranks.tolist()))


def footrule(ranks_a: Mapping[str, float], ranks_b: Mapping[str, float]) -> float:
    """Spearman's footrule ``sum |rank_a - rank_b|`` over the models in both rankings (paper Appendix C)."""
    return float(sum(abs(ranks_a[m] - ranks_b[m]) for m in ranks_a if m in ranks_b))


def ranking_stability(values: pl.DataFrame) -> pl.DataFrame:
    """``metric, dataset_a, dataset_b, n_models, footrule, max_footrule`` for every metric and dataset pair."""
    rows = []
    for (metric,), group in values.group_by("metric", maintain_order=True):
        by_dataset = {d: dict(zip(g["model"], g["value"])) for (d,), g in group.group_by("dataset", maintain_order=True)}
        for a, b in itertools.combinations(sorted(by_dataset), 2):
            common = sorted(m for m in by_dataset[a] if m in by_dataset[b]
                            and not math.isnan(by_dataset[a][m]) and not math.isnan(by_dataset[b][m]))
            hb = higher_is_better(metric)
            ra = rank({m: by_dataset[a][m] for m in common}, hb)
            rb = rank({m: by_dataset[b][m] for m in common}, hb)
            rows.append({"metric": metric, "dataset_a": a, "dataset_b": b, "n_models": len(common),
                         "footrule": footrule(ra, rb), "max_footrule": float(len(common) ** 2 // 2)})
    return pl.DataFrame(rows, schema={"metric": pl.String, "dataset_a": pl.String, "dataset_b": pl.String,
                                      "n_models": pl.Int64, "footrule": pl.Float64, "max_footrule": pl.Float64})


# --- sample-size robustness ----------------------------------------------------------------------


def coefficient_of_variation(values: Sequence[float]) -> float:
    """``sd / mean`` (sample sd, ddof 1); NaN with fewer than 2 values or a zero mean."""
    x = np.asarray(values, dtype=np.float64)
    if len(x) < 2 or np.isnan(x).any():
        return float("nan")
    mean = float(np.mean(x))
    return float(np.std(x, ddof=1) / abs(mean)) if mean != 0 else float("nan")


def sizes_for(sample_sizes: Sequence[int | str], n_total: int) -> list[int]:
    """The sizes that fit ``n_total``, ``all`` as ``n_total``, duplicates dropped, in order."""
    out: list[int] = []
    for size in sample_sizes:
        n = n_total if size == "all" else int(size)
        if 1 <= n <= n_total and n not in out:
            out.append(n)
    return out


def subsample_cv(statistic: Callable[[np.ndarray], float], n_total: int, sample_sizes: Sequence[int | str], draws: int,
                 seed: int, key: str) -> list[dict[str, Any]]:
    """Per size: ``n, mean, sd, cv`` of ``statistic(indices)`` over ``draws`` seeded subsets without replacement."""
    rows = []
    for n in sizes_for(sample_sizes, n_total):
        rng = np.random.default_rng([seed, zlib.crc32(key.encode()), n])
        values = [statistic(np.sort(rng.choice(n_total, size=n, replace=False))) for _ in range(draws)]
        finite = [v for v in values if not math.isnan(v)]
        rows.append({"n": n, "draws": draws, "mean": float(np.mean(finite)) if finite else float("nan"),
                     "sd": float(np.std(finite, ddof=1)) if len(finite) > 1 else float("nan"),
                     "cv": coefficient_of_variation(values)})
    return rows


def classifier_sample_size(matrix: pl.DataFrame, lock: Mapping[str, Any], split: str, *, model: str, dataset: str,
                           sample_sizes: Sequence[int | str], draws: int, seed: int, n_bins: int = 15,
                           eps: float = metrics.EPS) -> list[dict[str, Any]]:
    rows_in = split_rows(matrix, split)
    y = rows_in["label"].to_numpy()
    scores = locked_scores(rows_in, lock)
    fns = {"ece": lambda yy, pp: metrics.ece(yy, pp, n_bins), "mce": lambda yy, pp: metrics.mce(yy, pp, n_bins),
           "nll": lambda yy, pp: metrics.nll(yy, pp, eps), "brier": metrics.brier, "macro_ce": metrics.macro_ce,
           "auroc": metrics.auroc}
    out = []
    label = f"{dataset}/{split}"
    for method in METHODS:
        p = scores[method]
        for name in CLASSIFIER_METRICS:
            metric = f"{name}_{method}"
            for row in subsample_cv(lambda idx, fn=fns[name], p=p: fn(y[idx], p[idx]), len(y), sample_sizes, draws, seed,
                                    f"{metric}/{model}/{label}"):
                out.append({"metric": metric, "model": model, "dataset": label, **row})
    return out


def task_sample_size(task: pl.DataFrame, *, model: str, dataset: str, sample_sizes: Sequence[int | str], draws: int,
                     seed: int, n_bins: int = 15) -> list[dict[str, Any]]:
    """CV of ECE (metric ``ece_task``) of the task answers' top-label confidence over seeded subsamples."""
    known = task.filter(pl.col("correct").is_not_null() & pl.col("confidence").is_not_null())
    y = known["correct"].cast(pl.Float64).to_numpy()
    p = known["confidence"].to_numpy()
    return [{"metric": "ece_task", "model": model, "dataset": dataset, **row}
            for row in subsample_cv(lambda idx: metrics.ece(y[idx], p[idx], n_bins), len(y), sample_sizes, draws, seed,
                                    f"ece_task/{model}/{dataset}")]


def unf1_sample_size(answers: pl.DataFrame, *, model: str, dataset: str, setting: str, sample_sizes: Sequence[int | str],
                     draws: int, seed: int) -> list[dict[str, Any]]:
    """CV of UnF1 over subsamples: of images when the answers name theirs (``sample_id``: a dataset of n instances,
    each with its questions and seeds, as the paper's dataset size n), else of classified answers."""
    out = []
    for (variant,), group in answers.group_by("variant", maintain_order=True):
        types = np.array(sa.classify_all(group["kind"], group["reply"]), dtype=object)
        keep = types != None  # noqa: E711 (elementwise: empty replies are not classified)
        types = types[keep]
        codes = np.array([sa.TYPES.index(t) for t in types], dtype=np.int64)
        if "sample_id" in group.columns:
            units, unit_of = np.unique(group["sample_id"].to_numpy()[keep].astype(str), return_inverse=True)
            per_unit = np.zeros((len(units), len(sa.TYPES)), dtype=np.int64)
            np.add.at(per_unit, (unit_of, codes), 1)
        else:
            per_unit = np.eye(len(sa.TYPES), dtype=np.int64)[codes]

        def unf1(idx: np.ndarray, per_unit: np.ndarray = per_unit) -> float:
            return sa.unf1_scores(*(int(c) for c in per_unit[idx].sum(axis=0)))["unf1"]

        metric = unf1_metric(setting, variant)
        for row in subsample_cv(unf1, len(per_unit), sample_sizes, draws, seed, f"{metric}/{model}/{dataset}"):
            out.append({"metric": metric, "model": model, "dataset": dataset, **row})
    return out


SIZE_SCHEMA = {"metric": pl.String, "model": pl.String, "dataset": pl.String, "n": pl.Int64, "draws": pl.Int64,
               "mean": pl.Float64, "sd": pl.Float64, "cv": pl.Float64}


# --- rule entry points ---------------------------------------------------------------------------


def ranking_stability_from_files(reliability: Sequence[str], self_assessment: str,
                                 models: Sequence[str] | None = None) -> pl.DataFrame:
    """:func:`ranking_stability` of the reliability pieces' classifier metrics and the self-assessment table's UnF1
    and task metrics; ``models`` (not None) keeps only those self-assessed models (the paper ranks five)."""
    classifier = (classifier_values(pl.concat([pl.read_parquet(p) for p in reliability], how="diagonal_relaxed"))
                  if reliability else pl.DataFrame(schema=VALUE_SCHEMA))
    assessed = unf1_values(pl.read_parquet(self_assessment))
    if models is not None:
        assessed = assessed.filter(pl.col("model").is_in(list(models)))
    result = ranking_stability(pl.concat([classifier, assessed]))
    if result.height == 0:
        log.warning("metric stability: no metric has two datasets to compare; the table is empty")
    return result


def sample_size_from_files(matrices: Sequence[str], locks: Sequence[str], answers: Sequence[str], *,
                           pairs: Sequence[Mapping[str, str]], runs: Sequence[Mapping[str, str]],
                           stability: Mapping[str, Any], analysis: Mapping[str, Any], tasks: Sequence[str] = (),
                           task_runs: Sequence[Mapping[str, str]] = (), imported: Sequence[str] = ()) -> pl.DataFrame:
    """CV over seeded subsamples for every evaluation pair (``pairs``, in input order), self-assessment run
    (``runs``), imported answers file (``imported``, every run in it) and task-answer file (``task_runs``);
    ``stability.models`` (not None) keeps only those models' self-assessment runs."""
    rows: list[dict[str, Any]] = []
    common = {"sample_sizes": stability["sample_sizes"], "draws": stability["draws"], "seed": stability["seed"]}
    keep = stability.get("models")
    for matrix, lock, pair in zip(matrices, locks, pairs, strict=True):
        rows += classifier_sample_size(pl.read_parquet(matrix), io.read_json(lock), pair["split"], model=pair["model"],
                                       dataset=pair["dataset"], n_bins=analysis["ece_bins"], eps=analysis["eps"], **common)
    for path, run in zip(answers, runs, strict=True):
        if keep is None or run["model"] in keep:
            rows += unf1_sample_size(pl.read_parquet(path), model=run["model"], dataset=run["dataset"],
                                     setting=run["setting"], **common)
    for path in imported:  # imported answers name their model, dataset and setting on every row
        for (model, dataset, setting), run_rows in pl.read_parquet(path).group_by("model", "dataset", "setting",
                                                                                  maintain_order=True):
            if keep is None or model in keep:
                rows += unf1_sample_size(run_rows, model=model, dataset=dataset, setting=setting, **common)
    for path, run in zip(tasks, task_runs, strict=True):
        if keep is None or run["model"] in keep:
            rows += task_sample_size(pl.read_parquet(path), model=run["model"], dataset=run["dataset"],
                                     n_bins=analysis["ece_bins"], **common)
    return pl.DataFrame(rows, schema=SIZE_SCHEMA)
