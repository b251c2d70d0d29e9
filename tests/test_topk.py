"""Top-k sweep (Figure 4): mean ensembles of the first k prompts of the lock's prompt order."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import REPO, run_snakemake, write_config
from matplotlib.image import imread
from scipy.special import expit

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis.topk import (
    topk_scores,
    topk_summary,
    topk_sweep,
    write_topk,
    write_topk_summary,
)
from prompt_reliability.base import io
from prompt_reliability.report.figures.topk import (
    write_topk_pair_figure,
    write_topk_pairs_figure,
)

PROMPT_IDS = [f"{f}{i}" for f in "ABC" for i in range(1, 6)]


def test_topk_scores_are_means_of_the_first_k_columns():
    p = np.array([[0.1, 0.5, 0.9], [1.0, 0.0, 0.2]])
    np.testing.assert_allclose(topk_scores(p), [[0.1, 0.3, 0.5], [1.0, 0.5, 0.4]], rtol=0, atol=1e-15)
    rng = np.random.default_rng(0)
    p = rng.uniform(size=(50, 15))
    brute = np.column_stack([p[:, :k].mean(axis=1) for k in range(1, 16)])
    np.testing.assert_allclose(topk_scores(p), brute, rtol=1e-13)


def _matrix(rng: np.random.Generator, n: int = 40) -> tuple[pl.DataFrame, np.ndarray]:
    y = (np.arange(2 * n) % 3 == 0).astype(np.int8)
    p = expit((2 * y[:, None] - 1) * rng.uniform(0.2, 3.0, size=15) + rng.normal(0, 1, size=(2 * n, 15)))
    matrix = pl.DataFrame({"sample_id": [f"s{i}" for i in range(2 * n)], "split": ["train"] * n + ["test"] * n, "label": y,
                           **{pid: p[:, k] for k, pid in enumerate(PROMPT_IDS)}})
    return matrix, p


def test_sweep_follows_the_lock_prompt_order(tmp_path):
    rng = np.random.default_rng(1)
    matrix, p = _matrix(rng)
    io.write_parquet(matrix, tmp_path / "m.parquet")
    order = [PROMPT_IDS[k] for k in rng.permutation(15)]
    lock = {"model": "m", "lock": {"dataset": "d", "split": "train"}, "prompt_order": order, "prompt_ids": PROMPT_IDS,
            "selected_prompt": order[0], "random_prompt": order[-1], "per_prompt": {}, "calibrators": {}}
    io.write_json(lock, tmp_path / "lock.json")
    table = write_topk(matrix=str(tmp_path / "m.parquet"), lock=str(tmp_path / "lock.json"), table=str(tmp_path / "out.parquet"), model="m", dataset="d", split="test",
                       analysis={"ece_bins": 15, "eps": 1e-12})
    assert table.columns == ["model", "dataset", "split", "k", "prompt_id", "nll", "ece"]
    assert table["k"].to_list() == list(range(1, 16))
    assert table["prompt_id"].to_list() == order
    y, test = matrix["label"].to_numpy()[40:], p[40:]
    columns = [PROMPT_IDS.index(pid) for pid in order]
    for k in (1, 2, 7, 15):
        score = test[:, columns[:k]].mean(axis=1)
        row = table.row(k - 1, named=True)
        assert row["nll"] == pytest.approx(metrics.nll(y, score), rel=1e-12)
        assert row["ece"] == pytest.approx(metrics.ece(y, score, 15), rel=1e-9, abs=1e-12)
    # k = K is the full mean ensemble, whatever the order
    assert table["nll"][-1] == pytest.approx(metrics.nll(y, test.mean(axis=1)), rel=1e-12)
    assert pl.read_parquet(tmp_path / "out.parquet").equals(table)


def test_sweep_on_a_tiny_hand_example():
    y = np.array([0, 1])
    table = topk_sweep(y, np.array([[0.2, 0.6], [0.7, 0.9]]), ["x", "y"], n_bins=2)
    assert table["prompt_id"].to_list() == ["x", "y"]
    # k = 1: p = (0.2, 0.7); k = 2: p = (0.4, 0.8)
    assert table["nll"].to_list() == pytest.approx([-(np.log(0.8) + np.log(0.7)) / 2, -(np.log(0.6) + np.log(0.8)) / 2])
    # ECE with 2 bins, one sample each: k = 1 -> (|0 - 0.2| + |1 - 0.7|) / 2; k = 2 -> (|0 - 0.4| + |1 - 0.8|) / 2
    assert table["ece"].to_list() == pytest.approx([0.25, 0.3])


def _table(nll: dict[str, list[float]]) -> pl.DataFrame:
    return pl.DataFrame([{"model": "m", "dataset": d, "split": "test", "k": k + 1, "prompt_id": f"P{k}", "nll": v, "ece": v / 10}
                         for d, values in nll.items() for k, v in enumerate(values)])


def test_summary_averages_across_pairs_and_counts_best_k(tmp_path):
    table = _table({"d1": [1.0, 0.5, 0.5], "d2": [0.9, 0.7, 0.4]})
    summary = topk_summary(table)
    assert summary["k"].to_list() == [1, 2, 3]
    assert summary["n_pairs"].to_list() == [2, 2, 2]
    np.testing.assert_allclose(summary["mean_nll"], [0.95, 0.6, 0.45])
    np.testing.assert_allclose(summary["mean_ece"], [0.095, 0.06, 0.045])
    assert summary["best_nll_pairs"].to_list() == [0, 1, 2]  # d1 ties at k = 2 and 3: both count
    io.write_parquet(table, tmp_path / "topk.parquet")
    assert write_topk_summary(table=str(tmp_path / "topk.parquet"), summary=str(tmp_path / "s.parquet"), csv=str(tmp_path / "s.csv"),
                              md=str(tmp_path / "s.md")).equals(summary)
    assert (tmp_path / "s.md").read_text().startswith("# topk_summary")


def test_figures_are_written(tmp_path):
    table = _table({"d1": list(np.linspace(1, 0.5, 15)), "d2": list(np.linspace(0.9, 0.6, 15))})
    io.write_parquet(table.filter(pl.col("dataset") == "d1"), tmp_path / "pair.parquet")
    io.write_parquet(table, tmp_path / "topk.parquet")
    write_topk_pair_figure(table=str(tmp_path / "pair.parquet"), figure=str(tmp_path / "fig" / "pair.png"))
    write_topk_pairs_figure(table=str(tmp_path / "topk.parquet"), figure=str(tmp_path / "fig" / "all.png"))
    for name in ("pair.png", "all.png"):
        image = imread(tmp_path / "fig" / name)
        assert image.shape[0] > 100 and image.shape[1] > 300
    assert sorted(p.name for p in (tmp_path / "fig").iterdir()) == ["all.png", "pair.png"]  # no temp files left


@pytest.mark.workflow
def test_embedded_default_writes_tables_and_figure_4_for_every_pair(tmp_path):
    # the embedded default's models (simulated and two tiny hf VLMs), prompts and pairs, with 60
    # instead of 200 samples per split: hf scoring on the CPU is most of this test's time
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for split in config["datasets"]["synth"]["splits"].values():
        split["n"] = 60
    pairs = [(m, e["dataset"], e.get("split", "test")) for m in config["models"] for e in config["evaluate"]]
    targets = ["results/tables/aggregation_summary.csv", "results/tables/calibration_summary.csv",
               "results/tables/topk_summary.csv", "results/figures/topk/all_pairs.png",
               *(f"results/figures/topk/{m}/{d}/{s}.png" for m, d, s in pairs)]
    run_snakemake(tmp_path, *targets, "--configfile", str(write_config(tmp_path, config)), "--cores", "2")
    tables = {name: pl.read_csv(tmp_path / f"results/tables/{name}.csv") for name in ("aggregation", "calibration", "topk")}
    for name in ("aggregation", "aggregation_summary", "calibration", "calibration_summary", "topk", "topk_summary"):
        assert (tmp_path / f"results/tables/{name}.md").read_text().startswith(f"# {name}\n")
    for m, d, s in pairs:
        rows = {name: t.filter((pl.col("model") == m) & (pl.col("dataset") == d) & (pl.col("split") == s)) for name, t in tables.items()}
        assert rows["aggregation"].height == 15 and rows["calibration"].height == 8 and rows["topk"]["k"].to_list() == list(range(1, 16))
        assert imread(tmp_path / f"results/figures/topk/{m}/{d}/{s}.png").shape[0] > 100
        # one mean ensemble across the three analyses
        mean_nll = rows["aggregation"].filter(pl.col("rule") == "mean")["nll"].item()
        assert rows["calibration"].filter(pl.col("method") == "mean")["nll"].item() == mean_nll
        assert rows["topk"]["nll"][-1] == pytest.approx(mean_nll, rel=1e-12)
        twins = rows["aggregation"].filter(pl.col("rule").is_in(["mean_logit", "mean_logit_uniform"])).drop("rule")
        assert twins.n_unique() == 1
    assert imread(tmp_path / "results/figures/topk/all_pairs.png").shape[0] > 100
    summary = pl.read_csv(tmp_path / "results/tables/aggregation_summary.csv")
    assert summary.height == 15 and summary["nll_wins"].sum() >= 1 and (summary["n_pairs"] == len(pairs)).all()
