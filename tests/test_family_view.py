"""The within-family view (paper Table 7): family-local selected prompt in the lock, within and global rows."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from prompt_reliability.analysis import metrics
from prompt_reliability.analysis.family_view import family_view_table, family_wins
from prompt_reliability.analysis.lock import build_lock
from prompt_reliability.analysis.lockfile import LockMismatchError, family_selected_prompts, validate_lock

PROMPT_IDS = [f"{f}{k}" for f in "ABC" for k in range(1, 6)]
FAMILY_OF = {pid: pid[0] for pid in PROMPT_IDS}
ANALYSIS = {"seed": 42, "ece_bins": 15, "eps": 1e-12, "threshold": 0.5, "temperature_bounds": [0.01, 100.0]}


def matrix(seed: int = 0, n_train: int = 300, n_test: int = 200) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    y = (rng.uniform(size=n) < 0.4).astype(np.int8)
    z = (2 * y - 1)[:, None] * 1.5 + rng.normal(0, 1, size=15) + rng.normal(0, 1.5, size=(n, 15))
    p = 1 / (1 + np.exp(-z))
    ids = pl.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "split": ["train"] * n_train + ["test"] * n_test,
                        "label": y})
    return ids.with_columns([pl.Series(pid, p[:, k]) for k, pid in enumerate(PROMPT_IDS)])


@pytest.fixture(scope="module")
def locked():
    m = matrix()
    return m, build_lock(m, model="m", dataset="d", split="train", prompt_ids=PROMPT_IDS, analysis=ANALYSIS,
                         family_of=FAMILY_OF)


def test_family_selected_is_the_lock_best_of_the_family(locked):
    m, lock = locked
    train = m.filter(pl.col("split") == "train")
    y = train["label"].to_numpy()
    for family in "ABC":
        own = [pid for pid in PROMPT_IDS if pid[0] == family]
        best = min(own, key=lambda pid: (metrics.nll(y, train[pid].to_numpy()), PROMPT_IDS.index(pid)))
        assert lock["family_selected"][family] == best
    assert lock["selected_prompt"] in lock["family_selected"].values()
    assert family_selected_prompts(lock, FAMILY_OF) == lock["family_selected"]
    # an old lock without the field: the same choice from prompt_order
    old = {k: v for k, v in lock.items() if k != "family_selected"}
    assert family_selected_prompts(old, FAMILY_OF) == lock["family_selected"]


def test_bad_family_selected_is_rejected(locked):
    _, lock = locked
    with pytest.raises(LockMismatchError, match="family_selected"):
        validate_lock({**lock, "family_selected": {"A": "Z9"}}, "lock.json")
    with pytest.raises(LockMismatchError, match="other families"):
        family_selected_prompts({**lock, "family_selected": {"A": "B1", "B": "B1", "C": "C1"}}, FAMILY_OF)


def test_within_and_global_rows(locked):
    m, lock = locked
    test = m.filter(pl.col("split") == "test")
    y = test["label"].to_numpy()
    table = family_view_table(test, lock, FAMILY_OF)
    assert table.height == 9
    for family in "ABC":
        rows = {r["method"]: r for r in table.filter(pl.col("family") == family).iter_rows(named=True)}
        own = test.select([pid for pid in PROMPT_IDS if pid[0] == family]).to_numpy().mean(axis=1)
        assert rows["mean"]["nll"] == pytest.approx(metrics.nll(y, own))
        chosen = lock["family_selected"][family]
        assert rows["selected_family"]["prompt_id"] == chosen
        assert rows["selected_family"]["nll"] == pytest.approx(metrics.nll(y, test[chosen].to_numpy()))
        assert rows["selected_global"]["prompt_id"] == lock["selected_prompt"]
    # two pairs: the same piece twice under different names
    pieces = pl.concat([table.select(pl.lit(name).alias("model"), pl.lit("d").alias("dataset"),
                                     pl.lit("test").alias("split"), pl.all()) for name in ("m1", "m2")])
    wins = family_wins(pieces)
    assert set(wins["view"]) == {"within", "global"}
    row = wins.filter((pl.col("family") == "A") & (pl.col("view") == "within") & (pl.col("metric") == "nll")).row(
        0, named=True)
    a = table.filter(pl.col("family") == "A")
    mean_nll = a.filter(pl.col("method") == "mean")["nll"][0]
    sel_nll = a.filter(pl.col("method") == "selected_family")["nll"][0]
    assert row["pairs"] == 2 and row["wins"] == (2 if mean_nll < sel_nll else 0)
    assert row["baseline"] == "selected_family" and row["challenger"] == "mean_A"
