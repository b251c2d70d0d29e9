"""Fragility: per-sample spread/mistake/disagreement, sd deciles per family, and the workflow outputs."""

from __future__ import annotations

import statistics

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import PROMPT_IDS, dry_run_jobs, run_snakemake, write_config

from prompt_reliability.analysis import fragility, metrics

FAMILY_OF = {pid: pid[0] for pid in PROMPT_IDS}


def test_sample_fragility_pins_each_definition_on_a_hand_made_matrix():
    p = np.array([
        [0.0, 0.5, 1.0, 0.5],  # p = 0.5 counts as unsafe (p >= threshold)
        [0.5, 0.5, 0.5, 0.5],
        [0.2, 0.2, 0.9, 0.9],
        [1.0, 1.0, 1.0, 1.0],
    ])
    y = np.array([1, 0, 0, 1])
    out = fragility.sample_fragility(y, p)
    np.testing.assert_allclose(out["pbar"], [0.5, 0.5, 0.55, 1.0])
    np.testing.assert_allclose(out["sd"], [np.sqrt(0.125), 0.0, 0.35, 0.0])  # population sd (ddof 0)
    np.testing.assert_allclose(out["mistake"], [0.25, 1.0, 0.5, 0.0])
    np.testing.assert_allclose(out["disagreement"], [0.25, 0.0, 0.5, 0.0])  # min(nU, nS) / K
    # the threshold is a parameter: at 0.6 the 0.5 scores become safe
    np.testing.assert_allclose(fragility.sample_fragility(y, p, threshold=0.6)["mistake"], [0.75, 0.0, 0.5, 0.0])


def test_sample_fragility_matches_a_per_sample_loop():
    rng = np.random.default_rng(3)
    p = rng.uniform(size=(57, 7))
    p[rng.uniform(size=p.shape) < 0.1] = 0.5
    y = rng.integers(0, 2, size=57)
    out = fragility.sample_fragility(y, p, threshold=0.5)
    for i in range(len(y)):
        votes = [int(v >= 0.5) for v in p[i]]
        assert out["pbar"][i] == pytest.approx(statistics.fmean(p[i]))
        assert out["sd"][i] == pytest.approx(statistics.pstdev(p[i]))
        assert out["mistake"][i] == pytest.approx(sum(v != y[i] for v in votes) / 7)
        assert out["disagreement"][i] == pytest.approx(min(sum(votes), 7 - sum(votes)) / 7)


def test_deciles_split_23_samples_with_ties_in_manifest_order():
    sd = np.array([0.3, 0.1, 0.1, 0.5, 0.1, 0.2, 0.2, 0.0, 0.4, 0.1, 0.3, 0.0, 0.6, 0.2, 0.1, 0.7, 0.2, 0.3, 0.1, 0.8, 0.0, 0.9, 0.2])
    table = fragility.decile_table(sd, np.zeros(len(sd)), np.zeros(len(sd)), 10)
    assert table["n"].to_list() == [3, 3, 3, 2, 2, 2, 2, 2, 2, 2]  # numpy.array_split: the first n % 10 groups get one more
    groups = metrics.equal_mass_bins(sd, 10)
    ordered = sorted(range(len(sd)), key=lambda i: (sd[i], i))  # stable: ties keep manifest order
    expected = np.empty(len(sd), dtype=int)
    for g, members in enumerate(np.array_split(ordered, 10)):
        expected[members] = g
    np.testing.assert_array_equal(groups, expected)
    # the first decile is the three earliest zero-spread samples, in manifest order
    assert np.flatnonzero(groups == 0).tolist() == [7, 11, 20]


def test_decile_table_matches_a_group_loop():
    rng = np.random.default_rng(0)
    sd, mistake, disagreement = rng.uniform(size=(3, 101))
    table = fragility.decile_table(sd, mistake, disagreement, 10)
    assert table.columns == ["decile", "n", "mean_sd", "mistake_rate", "disagreement_rate"]
    assert table["decile"].to_list() == list(range(1, 11))
    groups = np.array_split(np.argsort(sd, kind="stable"), 10)
    for row, members in zip(table.iter_rows(named=True), groups):
        assert row["n"] == len(members)
        assert row["mean_sd"] == pytest.approx(sd[members].mean())
        assert row["mistake_rate"] == pytest.approx(mistake[members].mean())
        assert row["disagreement_rate"] == pytest.approx(disagreement[members].mean())
    assert table["mean_sd"].is_sorted()


def test_fewer_samples_than_deciles_leaves_empty_groups_as_nan():
    table = fragility.decile_table(np.array([0.3, 0.1, 0.2]), np.zeros(3), np.ones(3), 10)
    assert table["n"].to_list() == [1, 1, 1] + [0] * 7
    assert table["mean_sd"][:3].to_list() == pytest.approx([0.1, 0.2, 0.3])
    assert table["mistake_rate"][3:].is_nan().all()


def matrix_of(p: np.ndarray, y: np.ndarray, split: str = "test") -> pl.DataFrame:
    ids = pl.DataFrame({"sample_id": [f"s{i}" for i in range(len(y))], "split": [split] * len(y), "label": y})
    return ids.with_columns([pl.Series(pid, p[:, k]) for k, pid in enumerate(PROMPT_IDS)])


def test_fragility_table_has_every_family_alone_and_all_prompts():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, size=64)
    p = rng.uniform(size=(64, 15))
    table = fragility.fragility_table(matrix_of(p, y), "test", FAMILY_OF, 10)
    assert table.columns == ["split", "family", "decile", "n", "mean_sd", "mistake_rate", "disagreement_rate"]
    assert table["family"].unique(maintain_order=True).to_list() == ["A", "B", "C", "all"]
    for family, columns in (("A", slice(0, 5)), ("C", slice(10, 15)), ("all", slice(0, 15))):
        per_sample = fragility.sample_fragility(y, p[:, columns])
        tiebreak = metrics.stable_id_hash([f"s{i}" for i in range(len(y))])  # ties: by sample id hash
        expected = fragility.decile_table(per_sample["sd"], per_sample["mistake"], per_sample["disagreement"], 10, tiebreak)
        got = table.filter(pl.col("family") == family).drop("split", "family")
        assert got.equals(expected)
    # within a family K = 5, so each sample's disagreement is 0, 1/5 or 2/5
    assert fragility.sample_fragility(y, p[:, :5])["disagreement"].max() <= 0.4


def test_family_named_all_is_rejected():
    with pytest.raises(ValueError, match="may not be named 'all'"):
        fragility.prompt_views({"P1": "all"})


def test_summary_counts_pairs_where_d10_is_worse():
    def pair(model, d1, d10):
        return {"model": [model] * 2, "dataset": ["d"] * 2, "split": ["test"] * 2, "family": ["all"] * 2, "decile": [1, 10],
                "n": [5, 5], "mean_sd": [0.0, 0.3], "mistake_rate": [d1[0], d10[0]], "disagreement_rate": [d1[1], d10[1]]}
    table = pl.concat([pl.DataFrame(pair("m1", (0.1, 0.0), (0.5, 0.4))), pl.DataFrame(pair("m2", (0.3, 0.0), (0.3, 0.2))),
                       pl.DataFrame(pair("m3", (0.4, 0.2), (0.2, 0.1)))])
    summary = fragility.fragility_summary(table).row(0, named=True)
    assert summary == {"family": "all", "pairs": 3, "mistake_d10_worse": 1, "disagreement_d10_worse": 2, "both_d10_worse": 1,
                       "mean_mistake_gap": pytest.approx((0.4 + 0.0 - 0.2) / 3), "mean_disagreement_gap": pytest.approx((0.4 + 0.2 - 0.1) / 3)}


# --- workflow: a simulated model with strong heteroscedastic prompt noise -----------------------

FRAGILE_CONFIG = {
    "datasets": {"synth": {"adapter": "synthetic", "images": False,
                           "splits": {"train": {"n": 150}, "test": {"n": 200}, "val": {"n": 160, "unsafe_rate": 0.5}}}},
    "models": {"fragile": {"backend": "simulate", "simulate": {"seed": 11, "noise_sd": 1.0, "fragility_shape": 0.5,
                                                               "fragility_scale": 3.0, "boundary_fragility": 2.0}}},
    "lock": {"dataset": "synth", "split": "train"},
    "evaluate": [{"dataset": "synth", "split": "test"}, {"dataset": "synth", "split": "val"}],
}
PAIRS = [("fragile", "synth", "test"), ("fragile", "synth", "val")]
TABLES = ["fragility", "fragility_summary", "reliability", "ranking_distribution", "ece_variants", "ece_variants_summary", "wins"]


@pytest.fixture(scope="module")
def fragile_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fragile")
    write_config(workdir, FRAGILE_CONFIG)
    run_snakemake(workdir, "--configfile", str(workdir / "config.yaml"), "--cores", "2")
    return workdir


@pytest.mark.workflow
def test_every_table_and_figure_of_the_run_exists(fragile_run):
    tables = fragile_run / "results/tables"
    for name in TABLES:
        assert (tables / f"{name}.csv").stat().st_size > 0 and (tables / f"{name}.md").stat().st_size > 0, name
    figures = [fragile_run / "results/figures/fragility/gaps.png", fragile_run / "results/figures/reliability/deltas.png"]
    for model, dataset, split in PAIRS:
        figures += [fragile_run / f"results/figures/{kind}/{model}/{dataset}/{split}.png" for kind in ("fragility", "reliability")]
    for figure in figures:
        assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure


@pytest.mark.workflow
def test_fragility_table_has_ten_deciles_per_family_and_pair(fragile_run):
    table = pl.read_csv(fragile_run / "results/tables/fragility.csv")
    assert table.columns == ["model", "dataset", "split", "family", "decile", "n", "mean_sd", "mistake_rate", "disagreement_rate"]
    assert table.height == len(PAIRS) * 4 * 10
    assert table.group_by("split", "family").agg(pl.col("n").sum()).filter(pl.col("split") == "val")["n"].to_list() == [160] * 4


@pytest.mark.workflow
def test_heteroscedastic_model_d10_worse_than_d1_in_every_pair(fragile_run):
    summary = pl.read_csv(fragile_run / "results/tables/fragility_summary.csv")
    assert summary["family"].to_list() == ["A", "B", "C", "all"]
    assert summary["both_d10_worse"].to_list() == [len(PAIRS)] * 4, summary


@pytest.mark.workflow
def test_reliability_ranking_and_ece_variant_tables_cover_every_pair(fragile_run):
    tables = fragile_run / "results/tables"
    reliability = pl.read_csv(tables / "reliability.csv")
    assert reliability.columns == ["model", "dataset", "split", "method", "n", "ece", "nll", "auroc", "auprc", "error", "brier", "macro_ce", "mce", "smece"]
    assert reliability.filter(pl.col("split") == "test")["method"].to_list() == ["selected", "random", "mean", "mean_A", "mean_B", "mean_C"]
    ranking = pl.read_csv(tables / "ranking_distribution.csv")
    assert ranking.height == 2 * len(PAIRS) and (ranking["min15"] <= ranking["med15"]).all() and (ranking["med15"] <= ranking["max15"]).all()
    assert pl.read_csv(tables / "ece_variants.csv")["variant"].to_list() == ["width-10", "width-15", "width-20", "mass-15"] * len(PAIRS)
    assert (pl.read_csv(tables / "wins.csv")["pairs"] == len(PAIRS)).all()


@pytest.mark.workflow
def test_changing_analysis_params_reruns_no_scoring_job(fragile_run):
    config_path = fragile_run / "changed.yaml"
    scoring = {"dataset_manifest", "score_family", "score_matrix"}

    def dry_run(analysis: dict) -> dict[str, int]:
        config_path.write_text(yaml.safe_dump({**FRAGILE_CONFIG, "analysis": analysis}, sort_keys=False))
        return dry_run_jobs(fragile_run, "--configfile", str(config_path))

    assert dry_run({}) == {}, "an unchanged config must have nothing to do"
    jobs = dry_run({"deciles": 5})
    assert jobs.get("fragility") == len(PAIRS) and not scoring & set(jobs), jobs
    assert not {"reliability", "ece_variants", "lock"} & set(jobs), jobs
    jobs = dry_run({"ece_variants": [{"bins": 12, "strategy": "mass"}]})
    assert jobs.get("ece_variants") == len(PAIRS) and not scoring & set(jobs), jobs
    assert not {"fragility", "reliability", "lock"} & set(jobs), jobs
    jobs = dry_run({"ece_bins": 10})
    assert {"lock", "reliability", "reliability_diagram"} <= set(jobs) and not scoring & set(jobs), jobs


@pytest.mark.workflow
def test_paper_sim_config_plans_every_analysis_for_14_pairs(repo, tmp_path):
    jobs = dry_run_jobs(tmp_path, "--configfile", str(repo / "config/paper_sim.yaml"))
    assert jobs["score_family"] == 7 * 2 * 3 and jobs["lock"] == 7
    for rule in ("fragility", "reliability", "ranking_distribution", "ece_variants", "fragility_figure", "reliability_diagram"):
        assert jobs[rule] == 14, (rule, jobs)
