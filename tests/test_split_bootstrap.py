"""One bootstrap stream for every model of an evaluation split: each model's numbers are those of a
bootstrap of that model alone (the resamples were always shared through the one seed)."""

from __future__ import annotations

import numpy as np
from conftest import analysis_defaults

from prompt_reliability.analysis import bootstrap as bs
from prompt_reliability.analysis import metrics, trust
from prompt_reliability.analysis.resampling import cluster_index

PREVALENCES = ["native", 0.1]


def _models(rng, n, k):
    y = rng.integers(0, 2, n)
    return y, [np.clip(0.5 + (0.1 + 0.1 * j) * (y - 0.5) + 0.25 * rng.standard_normal((2, n)), 0.01, 0.99)
               for j in range(k)]


def _alone(y, scores, **kwargs):
    return bs.bootstrap_metrics(y, scores, PREVALENCES, **kwargs)


def test_shared_stream_equals_each_model_alone_bit_for_bit():
    rng = np.random.default_rng(11)
    y, sets = _models(rng, 300, 3)
    settings = dict(n_resamples=90, seed=5, chunk_size=32, smece_resamples=40)
    shared = bs.bootstrap_score_sets(y, sets, PREVALENCES, **settings,
                                     extra=[[(metrics.CountedAUROC(y, s[1]), 50)] for s in sets])
    for scores, drawn in zip(sets, shared):
        alone = _alone(y, scores, **settings, extra=[(metrics.CountedAUROC(y, scores[1]), 50)])
        for field in ("point", "resampled", "smooth_point", "smooth_resampled"):
            assert np.array_equal(getattr(drawn, field), getattr(alone, field)), field
        assert np.array_equal(drawn.extra[0], alone.extra[0])


def test_shared_stream_with_clusters_equals_each_model_alone():
    rng = np.random.default_rng(12)
    y, sets = _models(rng, 200, 2)
    clusters = cluster_index([f"img{i // 3}" for i in range(200)])[0]
    settings = dict(n_resamples=60, seed=2, chunk_size=16, clusters=clusters)
    shared = bs.bootstrap_score_sets(y, sets, PREVALENCES, **settings)
    for scores, drawn in zip(sets, shared):
        assert np.array_equal(drawn.resampled, _alone(y, scores, **settings).resampled)


def test_the_trust_auroc_on_the_bootstrap_resamples_equals_the_standalone_ci():
    """With independent resampling, the first resamples of the bootstrap are the trust table's own."""
    rng = np.random.default_rng(13)
    y, (scores,) = _models(rng, 400, 1)
    drawn = bs.bootstrap_metrics(y, scores, ["native"], n_resamples=300, seed=8, chunk_size=64,
                                 extra=[(metrics.CountedAUROC(y, scores[1]), 200)])
    interval = trust.auroc_interval(metrics.auroc(y, scores[1]), drawn.extra[0])
    assert interval == trust.auroc_with_ci(y, scores[1], n_resamples=200, seed=8, chunk_size=64)


def _alone_pieces(matrix_path, lock_path, analysis, rows_filter=None):
    """One model's bootstrap rows and trust AUROC by the single-model functions (the reference)."""
    import polars as pl

    from prompt_reliability.analysis.lockfile import locked_scores, read_lock
    from prompt_reliability.data.matrix import split_rows

    full = pl.read_parquet(matrix_path)
    rows = split_rows(full, "test")
    if rows_filter is not None:
        rows = rows.filter(rows_filter)
    scores = locked_scores(rows, read_lock(lock_path, full))
    settings = analysis["bootstrap"]
    y = rows["label"].to_numpy()
    deltas = bs.bootstrap_deltas(y, scores["selected"], scores["mean"], settings["prevalences"],
                                 n_resamples=settings["resamples"], seed=settings["seed"],
                                 chunk_size=settings["chunk_size"], confidence=settings["confidence"],
                                 n_bins=analysis["ece_bins"], eps=analysis["eps"],
                                 smece_resamples=settings["smece_resamples"])
    auroc = trust.auroc_with_ci(y, scores["mean"], n_resamples=analysis["trust"]["resamples"], seed=settings["seed"],
                                chunk_size=settings["chunk_size"], confidence=settings["confidence"])
    return deltas, auroc


def test_the_split_job_writes_what_each_model_alone_gives_also_when_a_model_saw_other_samples(import_run, tmp_path):
    """Rule bootstrap on a real run's matrices and locks: m1 whole, m2 on a subset of the split's samples
    (a stream of its own); each model's pieces equal the single-model bootstrap and AUROC interval."""
    import polars as pl

    from prompt_reliability.analysis import split_bootstrap
    analysis = analysis_defaults()
    analysis["bootstrap"]["resamples"] = 400
    analysis["bootstrap"]["smece_resamples"] = 100
    analysis["trust"]["resamples"] = 200
    m2_matrix = tmp_path / "m2.parquet"  # m2 lost its last ten test samples
    full = pl.read_parquet(import_run / "results/matrix/m2/ds_a.parquet")
    dropped = full.filter(pl.col("split") == "test")["sample_id"].tail(10).to_list()
    full.filter(~pl.col("sample_id").is_in(dropped)).write_parquet(m2_matrix)
    matrices = [str(import_run / "results/matrix/m1/ds_a.parquet"), str(m2_matrix)]
    locks = [str(import_run / f"results/lock/{m}.json") for m in ("m1", "m2")]
    caches = [str(import_run / f"results/scores/{m}/ds_a/{f}.parquet") for m in ("m1", "m2") for f in "ABC"]
    out = {kind: [str(tmp_path / f"{m}_{kind}.parquet") for m in ("m1", "m2")] for kind in ("boot", "trust")}
    split_bootstrap.write_split_bootstrap(matrices=matrices, locks=locks, manifest=str(import_run / "results/data/ds_a.parquet"),
                                          caches=caches, tables_out=out["boot"], trusts=out["trust"], models=["m1", "m2"],
                                          dataset="ds_a", split="test", analysis=analysis)
    for k, (model, keep) in enumerate([("m1", None), ("m2", ~pl.col("sample_id").is_in(dropped))]):
        deltas, (auroc, low, high, used) = _alone_pieces(matrices[0] if k == 0 else import_run / "results/matrix/m2/ds_a.parquet",
                                                         locks[k], analysis, keep)
        written = pl.read_parquet(out["boot"][k])
        assert written["model"].unique().to_list() == [model]
        assert written.drop("model", "dataset", "split").equals(deltas)
        row = pl.read_parquet(out["trust"][k]).row(0, named=True)
        assert (row["auroc"], row["auroc_ci_low"], row["auroc_ci_high"], row["n_resamples"]) == (auroc, low, high, used)
        assert row["n"] == (60 if k == 0 else 50)
