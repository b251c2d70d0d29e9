"""Scoring from a server's log-probabilities, on response bodies in the documented shapes.

Commercial APIs (OpenAI's chat completions) return ``choices[0].logprobs.content[i]`` with ``token``,
``logprob``, ``bytes`` and ``top_logprobs`` (the k most likely tokens); vLLM >= 0.28 with
``logprob_token_ids`` and ``return_tokens_as_token_ids`` returns the sampled token plus every
requested id there, each written ``token_id:<id>``. Not yet run against a real logprob server.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import polars as pl
import pytest
from conftest import REPO, validated_manifest, validated_model
from test_served_client import ScriptedServer

from prompt_reliability.data.prompts import load_registry
from prompt_reliability.scoring.backends.served import label_rows, read_label_logprobs, request_fields
from prompt_reliability.scoring.cache import ScoreCacheError, score_to_cache


def commercial_body(first_token: str, top: list[tuple[str, float]]) -> dict:
    """A chat completion in the documented shape of ``logprobs: true, top_logprobs: k``."""
    entries = [{"token": t, "logprob": lp, "bytes": list(t.encode())} for t, lp in top]
    logprob = dict(top).get(first_token, -0.05)
    return {"id": "chatcmpl-1", "object": "chat.completion", "model": "gpt-4o-2024-08-06", "choices": [{
        "index": 0, "message": {"role": "assistant", "content": first_token, "refusal": None},
        "logprobs": {"content": [{"token": first_token, "logprob": logprob, "bytes": list(first_token.encode()),
                                  "top_logprobs": entries}], "refusal": None},
        "finish_reason": "length"}], "usage": {"prompt_tokens": 90, "completion_tokens": 1, "total_tokens": 91}}


def vllm_body(sampled: int, logprobs: dict[int, float]) -> dict:
    """vLLM's chat completion with ``logprob_token_ids`` and ``return_tokens_as_token_ids``."""
    entries = [{"token": f"token_id:{i}", "logprob": lp, "bytes": None} for i, lp in logprobs.items()]
    return {"id": "chatcmpl-2", "object": "chat.completion", "model": "Qwen/Qwen2.5-VL-7B-Instruct", "choices": [{
        "index": 0, "message": {"role": "assistant", "content": "U", "reasoning_content": None, "tool_calls": []},
        "logprobs": {"content": [{"token": f"token_id:{sampled}", "logprob": logprobs[sampled], "bytes": None,
                                  "top_logprobs": entries}]},
        "finish_reason": "length", "stop_reason": None}]}


def test_commercial_top_logprobs_are_read_by_exact_token():
    body = commercial_body("U", [("U", -0.2), (" U", -2.0), ("S", -1.9), ("Unsafe", -3.0)])
    read = read_label_logprobs(body, ("U", "S"))
    assert (read.unsafe, read.safe, read.top_token) == (-0.2, -1.9, "U")  # " U" and "Unsafe" are other tokens
    sampled = read_label_logprobs(commercial_body("S", [("U", -1.0), ("The", -1.2)]), ("U", "S"))
    assert (sampled.unsafe, sampled.safe) == (-1.0, -0.05)  # the sampled token's own entry counts


def test_a_label_outside_the_top_k_is_missing_never_invented():
    body = commercial_body("U", [("U", -0.01), ("The", -5.0), ("I", -6.0)])
    read = read_label_logprobs(body, ("U", "S"))
    assert read.unsafe == -0.01 and read.safe is None
    rows, missing = label_rows([body, commercial_body("S", [("S", -0.1), ("U", -2.5)])], [("s1", "A1"), ("s2", "A1")],
                               ("U", "S"), ("U", "S"))
    assert rows["logit_s"].to_list()[0] is None and missing.to_dicts() == [
        {"sample_id": "s1", "prompt_id": "A1", "logit_u": -0.01, "logit_s": None, "top_token": "U", "missing": "S"}]
    assert rows["label_mass"].to_list()[1] == pytest.approx(math.exp(-0.1) + math.exp(-2.5))


def test_vllm_logprob_token_ids_shape():
    body = vllm_body(52, {52: -0.12, 50: -2.3})
    read = read_label_logprobs(body, ("token_id:52", "token_id:50"))
    assert (read.unsafe, read.safe, read.top_token) == (-0.12, -2.3, "token_id:52")
    assert request_fields("logprob_token_ids", 20, {"unsafe": 52, "safe": 50}) == {
        "logprobs": True, "logprob_token_ids": [52, 50], "return_tokens_as_token_ids": True}
    assert request_fields("top_logprobs", 5, None) == {"logprobs": True, "top_logprobs": 5}


def test_a_server_that_ignores_logprobs_is_named():
    body = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "ken"}, "finish_reason": "length"}]}
    with pytest.raises(ScoreCacheError, match="logprobs: none"):
        read_label_logprobs(body, ("U", "S"))


def _scripted_logprobs(body: dict) -> dict:
    """Per-request log-probabilities drawn from the request's own hash, so every row differs; S left out of a few."""
    assert body["logprobs"] is True and body["top_logprobs"] == 20 and body["max_tokens"] == 1
    seed = int(hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()[:8], 16)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=2) * 2
    lu, ls = z - np.logaddexp(np.logaddexp(z[0], z[1]), 0.0)  # the two labels plus the rest of the vocabulary
    top = [("U", float(lu)), ("S", float(ls)), ("other", -1.0)]
    return commercial_body("U" if lu > ls else "S", top)


@pytest.fixture
def scoring_inputs(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVED_TEST_KEY", "sk-never-written")
    dataset = {"adapter": "synthetic", "image_size": 16, "splits": {"train": {"n": 4}}}
    manifest = validated_manifest("d", dataset, tmp_path / "images")
    manifest.write_parquet(tmp_path / "manifest.parquet")
    return tmp_path


def test_scores_are_the_two_label_rule_on_the_returned_logprobs(scoring_inputs):
    tmp_path = scoring_inputs
    with ScriptedServer(respond=_scripted_logprobs) as server:
        cfg = validated_model({"backend": "served", "url": server.url, "model": "gpt-4o", "api_key_env": "SERVED_TEST_KEY",
                               "logprobs": "top_logprobs", "backoff_s": 0.01})
        kwargs = dict(model="m", model_cfg=cfg, dataset="d", family="A", manifest_path=tmp_path / "manifest.parquet",
                      prompt_dir=REPO / "prompts", families=["A", "B", "C"],
                      prompt_format={"with_query": "{template}\nQuery: {query}", "without_query": "{template}"},
                      work_dir=tmp_path / "chunks", request_cache=tmp_path / "requests.jsonl")
        cache = score_to_cache(output=tmp_path / "A.parquet", **kwargs)
        sent = len(server.received)
        again = score_to_cache(output=tmp_path / "A2.parquet", **kwargs)
        assert len(server.received) == sent == 4 * 5  # samples x prompts, then all from the cache
    assert again.equals(cache)
    pu, ps = np.exp(cache["logit_u"].to_numpy()), np.exp(cache["logit_s"].to_numpy())
    np.testing.assert_allclose(cache["p_unsafe"].to_numpy(), pu / (pu + ps), rtol=1e-12)  # from the definition
    np.testing.assert_allclose(cache["label_mass"].to_numpy(), pu + ps, rtol=1e-12)
    assert cache["p_unsafe"].n_unique() == cache.height
    requests = [json.loads(line)["request"] for line in (tmp_path / "requests.jsonl").read_text().splitlines()]
    assert all(r["messages"][0]["content"][0]["image_url"]["url"].startswith("data:image/png;base64,sha256:") for r in requests)
    texts = [r["messages"][0]["content"][1]["text"] for r in requests]
    for template in load_registry(REPO / "prompts", ["A", "B", "C"]).family("A"):  # each prompt once per sample
        assert sum(text.startswith(template.text) for text in texts) == 4
    assert "sk-never-written" not in (tmp_path / "requests.jsonl").read_text()


def test_rows_lacking_a_label_fail_the_job_with_their_count(scoring_inputs):
    tmp_path = scoring_inputs

    def no_safe_label_for_a2(body):
        reply = _scripted_logprobs(body)
        if body["messages"][0]["content"][1]["text"].startswith(_a2_text()):
            first = reply["choices"][0]["logprobs"]["content"][0]
            first.update(token="other", logprob=-1.0)  # the sampled token's own entry would carry S too
            first["top_logprobs"] = [e for e in first["top_logprobs"] if e["token"] != "S"]
        return reply

    with ScriptedServer(respond=no_safe_label_for_a2) as server:
        cfg = validated_model({"backend": "served", "url": server.url, "model": "gpt-4o", "api_key_env": "SERVED_TEST_KEY",
                               "logprobs": "top_logprobs", "backoff_s": 0.01})
        with pytest.raises(ScoreCacheError, match=r"4 of 20 .*rows lack.*prompt 'A2', missing 'S'.*not invented"):
            score_to_cache(model="m", model_cfg=cfg, dataset="d", family="A", manifest_path=tmp_path / "manifest.parquet",
                           prompt_dir=REPO / "prompts", families=["A"], output=tmp_path / "A.parquet",
                           prompt_format={"with_query": "{template}\nQuery: {query}", "without_query": "{template}"},
                           work_dir=tmp_path / "chunks", request_cache=tmp_path / "requests.jsonl")
    assert not (tmp_path / "A.parquet").exists()
    assert pl.DataFrame([json.loads(x) for x in (tmp_path / "requests.jsonl").read_text().splitlines()]).height == 20


def _a2_text() -> str:
    return load_registry(REPO / "prompts", ["A"]).family("A")[1].text
