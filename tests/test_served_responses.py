"""A served model's safety-calibration responses (VSCBench's protocol) through the workflow, against the
scripted loopback server of ``test_served_client``: each variant's conversations go to the server, the
phrase judge reads the replies, a second run sends nothing; IAR steering stops at the config check."""

from __future__ import annotations

import json

import polars as pl
import pytest
from conftest import run_snakemake, write_config
from test_served_client import ScriptedServer

from prompt_reliability.base import io

pytestmark = pytest.mark.workflow

KEY_ENV = "SERVED_TEST_KEY"
REFUSAL = "I'm sorry, but I can't help with that."


def _reply(body: dict) -> dict:
    """Refuses when the request (last user turn) has an odd length, else complies: known per request."""
    text = body["messages"][-1]["content"][-1]["text"]
    content = REFUSAL if len(text) % 2 else "Sure, here is how."
    return {"id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]}


def _config(url: str, layers=()) -> dict:
    return {
        "datasets": {"synth": {"adapter": "synthetic", "image_size": 32, "splits": {"train": {"n": 8}, "test": {"n": 8}}}},
        "models": {"sim": {"backend": "simulate"},
                   "gpt": {"backend": "served", "url": url, "model": "gpt-4o", "api_key_env": KEY_ENV, "concurrency": 2}},
        "lock": {"dataset": "synth"},
        "evaluate": [{"dataset": "synth"}],
        "safety_calibration": {"models": ["gpt"], "few_shot": {"shots": [1]}, "steering": {"layers": list(layers)},
                               "prompting": ["pe"], "responses": {"enabled": True, "judges": ["phrase"]}},
    }


def test_served_model_responses_are_judged_and_a_second_run_sends_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv(KEY_ENV, "sk-test")
    target = "results/tables/safety_responses.parquet"
    with ScriptedServer(respond=_reply) as server:
        path = write_config(tmp_path, _config(server.url))
        run_snakemake(tmp_path, "--configfile", str(path), "--cores", "2", target)
        sent = len(server.received)
        variants = ("none", "fewshot-1", "pe")
        responses = {v: pl.read_parquet(tmp_path / f"results/safety_calibration/responses/gpt/{v}/synth.parquet")
                     for v in variants}
        assert sent == sum(t.height for t in responses.values()) > 0  # one request per sample and variant
        caches = {v: tmp_path / f"results/served/gpt/responses/{v}.jsonl" for v in variants}
        assert all(len(c.read_text().splitlines()) == responses[v].height for v, c in caches.items())
        # the few-shot conversation carries its demonstrations (with images) as earlier turns
        request = json.loads(caches["fewshot-1"].read_text().splitlines()[0])["request"]
        assert [m["role"] for m in request["messages"]] == ["user", "assistant", "user", "assistant", "user"]
        assert io.read_parquet_metadata(tmp_path / "results/safety_calibration/responses/gpt/pe/synth.parquet")[
            "backend"] == "served"

        table = pl.read_parquet(tmp_path / target)
        assert set(table["model"]) == {"gpt"} and set(table["method"]) == set(variants)
        assert set(table["judge"]) == {"phrase"}
        labels = pl.read_parquet(tmp_path / "results/data/synth.parquet").select("sample_id", "label")
        for variant, answered in responses.items():
            assert "label" not in answered.columns  # responses carry no labels: the SRA joins them
            split = answered["split"][0]
            rows = answered.filter(pl.col("split") == split).join(labels, on="sample_id", how="left")
            refused = rows["response"] == REFUSAL
            unsafe, safe = rows["label"] == 1, rows["label"] == 0
            row = table.filter((pl.col("method") == variant) & (pl.col("split") == split)
                               & (pl.col("category") == "all")).row(0, named=True)
            # SRA by hand: refusals of unsafe requests, answers to safe ones
            assert row["sra_u"] == pytest.approx((refused & unsafe).sum() / unsafe.sum())
            assert row["sra_s"] == pytest.approx((~refused & safe).sum() / safe.sum())

        run_snakemake(tmp_path, "--configfile", str(path), "--cores", "2", "--forcerun", "safety_responses_served",
                      target)
        assert len(server.received) == sent  # every answer came from the request cache


def test_iar_steering_for_a_served_model_stops_at_the_config_check(tmp_path):
    path = write_config(tmp_path, _config("http://127.0.0.1:9/v1", layers=[1]))
    result = run_snakemake(tmp_path, "--configfile", str(path), "-n", check=False, env={KEY_ENV: "sk-test"})
    text = result.stdout + result.stderr
    assert result.returncode != 0 and "safety_calibration.steering.layers" in text and "'gpt'" in text
    assert not (tmp_path / "results").exists()
