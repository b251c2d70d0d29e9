"""Served models end to end against a real server: ``transformers serve`` with a tiny VLM on 127.0.0.1.

One server process per test module (restarted once, by the resume test, after it kills it), started
by ``tests/served_server.py``, which adds a request log to transformers' own server: the SHA-256 of
each body received and its ``X-Request-ID``. That log, not the client's word, shows which requests
a resumed run sent.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import polars as pl
import pytest
from conftest import REPO, dry_run_jobs, run_snakemake, snakemake_env, write_config
from test_served_client import ScriptedServer

from prompt_reliability.base import io
from prompt_reliability.scoring.served import RequestCache

pytestmark = pytest.mark.workflow

SENTINEL = "sk-sentinel-served26-never-written"
KEY_ENV = "SERVED_TEST_KEY"
MODEL = "tiny-served"
N_IMAGES = 6  # stage 1: 6 images x 2 kinds x 2 settings = 24 requests


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LocalServer:
    """``tests/served_server.py`` in a process of its own, on loopback, stopped by its pid."""

    def __init__(self, model_folder: Path, folder: Path):
        self.model_folder, self.folder, self.port = model_folder, folder, free_port()
        self.process: subprocess.Popen | None = None
        self.request_log: Path | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self, request_log: Path, delay_s: float = 0.0, timeout_s: float = 180.0) -> None:
        self.request_log = request_log
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "SERVED_TEST_EXPECTED_KEY": SENTINEL}
        self.starts += 1
        output = open(self.folder / f"server-{self.starts}.log", "w")
        self.process = subprocess.Popen([sys.executable, str(REPO / "tests/served_server.py"), str(self.model_folder),
                                         str(self.port), str(request_log), str(delay_s)], env=env, stdout=output,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {(self.folder / f'server-{self.starts}.log').read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.kill()
        raise AssertionError(f"the server did not answer /health within {timeout_s} s")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)
        self.process = None

    def logged(self) -> list[tuple[str, str, str]]:
        """(body sha256, X-Request-ID, key state) of every request received, in arrival order."""
        if self.request_log is None or not self.request_log.exists():
            return []
        return [tuple(line.split()) for line in self.request_log.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def server(tiny_models, tmp_path_factory):
    server = LocalServer(tiny_models["qwen2_vl"], tmp_path_factory.mktemp("served-server"))
    yield server
    server.kill()


def served_workflow_config(url: str, model_name: str = "tiny-qwen2-vl", **served) -> dict:
    return {
        "datasets": {"synth": {"adapter": "synthetic", "image_size": 32, "splits": {"train": {"n": 8}, "test": {"n": 8}}}},
        "models": {
            "sim": {"backend": "simulate"},
            MODEL: {"backend": "served", "url": url, "model": model_name, "api_key_env": KEY_ENV, "concurrency": 2,
                    "timeout_s": 60, "max_retries": 1, "backoff_s": 0.2, **served},
        },
        "lock": {"dataset": "synth"},
        "evaluate": [{"dataset": "synth"}],
        "self_assessment": {"models": [MODEL], "images": N_IMAGES, "k": 1, "max_new_tokens": 4, "settings": ["mc", "open"]},
    }


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_self_assessment_through_a_real_server_resumes_with_exactly_the_missing_requests(server, tmp_path, monkeypatch):
    clock = time.perf_counter()
    server.start(tmp_path / "requests-1.log", delay_s=0.5)
    timings = {"server start": time.perf_counter() - clock}
    config = served_workflow_config(server.url, str(server.model_folder))  # transformers serve knows it by its folder
    path = write_config(tmp_path, config)
    target = "results/tables/self_assessment.csv"
    cmd = [str(Path(sys.executable).parent / "snakemake"), "-s", str(REPO / "Snakefile"), "-d", str(tmp_path), "--configfile",
           str(path), "--cores", "2", target]
    env = {**snakemake_env(tmp_path), KEY_ENV: SENTINEL}
    run = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    caches = [RequestCache(tmp_path / f"results/served/{MODEL}/self_assessment/synth/{s}.jsonl") for s in ("mc", "open")]

    def cached() -> dict:
        return {key: record for cache in caches for key, record in cache.load().items()}

    deadline = time.monotonic() + 300
    while len(cached()) < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, "the run ended before the server was killed"
    server.kill()  # mid-run (2 of 24 answered, each held 0.5 s): requests in flight get no answer
    first_output, _ = run.communicate(timeout=300)
    timings["first run"] = time.perf_counter() - clock - timings["server start"]
    assert run.returncode != 0
    assert f"models.{MODEL}.url" in first_output and server.url in first_output  # the message names the key and the server

    before = set(cached())
    first_logged = [entry[0] for entry in server.logged()]
    assert 0 < len(before) < 2 * 2 * N_IMAGES
    assert before <= set(first_logged)
    assert not all((tmp_path / f"results/self_assessment/{MODEL}/synth/{s}/generations.parquet").exists() for s in ("mc", "open"))
    assert not (tmp_path / "results/tables/self_assessment.parquet").exists()
    first_logs = "".join(p.read_text() for p in (tmp_path / f"results/logs/self_assessment/{MODEL}").rglob("generate.log"))
    retries = first_logs.count("retried (")
    assert retries >= 1 and "Connection refused" in first_logs  # requests cut by the kill were retried, then given up

    clock = time.perf_counter()
    server.start(tmp_path / "requests-2.log")
    timings["server restart"] = time.perf_counter() - clock
    started = time.perf_counter()
    run_snakemake(tmp_path, "--configfile", str(path), "--cores", "2", target, env={KEY_ENV: SENTINEL})
    resumed_seconds = time.perf_counter() - started
    after = cached()
    resent = server.logged()
    assert len(after) == 2 * 2 * N_IMAGES  # every stage-1 request answered once
    assert all(body == header for body, header, _ in resent)  # the cache key is the hash of the exact bytes received
    assert sorted(body for body, _, _ in resent) == sorted(set(after) - before)  # exactly the missing ones, none twice
    assert {state for *_, state in server.logged()} == {"key-ok"}

    table = pl.read_parquet(tmp_path / "results/tables/self_assessment.parquet")
    assert table.height == 2 and set(table["setting"]) == {"mc", "open"}
    for setting in ("mc", "open"):
        generations = pl.read_parquet(tmp_path / f"results/self_assessment/{MODEL}/synth/{setting}/generations.parquet")
        assert generations.height == 2 * N_IMAGES and generations["text"].str.len_chars().min() > 0
    # the key travelled in the Authorization header only: no file under the run (results, logs, metadata) holds it,
    # nor the server's own logs
    assert files_containing(tmp_path, SENTINEL) == [] and files_containing(server.folder, SENTINEL) == []
    # what reaches the server is untracked (moving it re-runs nothing); what a request contains is tracked
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    moved = served_workflow_config(f"http://127.0.0.1:{free_port()}/v1", str(server.model_folder), concurrency=7,
                                   timeout_s=5, max_retries=9)
    moved["self_assessment"]["batch_size"] = 3  # the hf stages' batch size: not read by a served model
    assert dry_run_jobs(tmp_path, target, "--configfile", str(write_config(tmp_path, moved))) == {}
    reworded = served_workflow_config(server.url, str(server.model_folder), extra_body={"top_p": 1.0})
    assert dry_run_jobs(tmp_path, target, "--configfile", str(write_config(tmp_path, reworded)))[
        "self_assessment_generate_served"] == 2
    resumed = [after[key]["seconds"] for key in set(after) - before]
    stats = {s: io.read_parquet_metadata(tmp_path / f"results/self_assessment/{MODEL}/synth/{s}/generations.parquet")["generation"]
             for s in ("mc", "open")}
    assert sum(v["sent"] for v in stats.values()) == len(resent) and sum(v["cached"] for v in stats.values()) == len(before)
    print(f"served resume: {len(first_logged)} requests received before the kill, {len(before)} answered and cached, "
          f"{retries} retried after the kill (connection refused) before the job gave up; the resumed run sent "
          f"{len(resent)} ({resumed_seconds:.1f} s for the run), {1000 * sum(resumed) / len(resumed):.0f} ms per request "
          f"(mean, tiny qwen2_vl, max_tokens 4, 2 in flight); job stats {stats}; timings {timings}")


def test_stage_two_answers_through_the_server_and_a_second_call_sends_nothing(server, tmp_path, monkeypatch):
    """Stage 1's random-weight text parses to no question, so stage 2 gets written questions here."""
    from prompt_reliability.scoring.self_assessment_inference import answer_questions

    if server.process is None:
        server.start(tmp_path / "requests.log")
    monkeypatch.setenv(KEY_ENV, SENTINEL)
    image = tmp_path / "img.png"
    from PIL import Image

    Image.new("RGB", (32, 32), (40, 160, 90)).save(image)
    questions = pl.DataFrame({"question_id": ["q1", "q2"], "sample_id": ["s1", "s1"], "image_path": [str(image)] * 2,
                              "kind": ["answerable", "unanswerable"], "question": ["What colour is it?", "Who painted it?"],
                              "option_a": ["green", "Monet"], "option_b": ["red", "Goya"], "option_c": ["blue", "Klee"],
                              "option_d": ["grey", "Miro"]})
    questions.write_parquet(tmp_path / "questions.parquet")
    served = served_workflow_config(server.url, str(server.model_folder))["models"][MODEL]
    from conftest import validated_model

    model_config = validated_model(served, MODEL)
    settings = {"max_new_tokens": 4, "variants": ["default", "cautious"]}
    cache = tmp_path / "requests.jsonl"
    logged = len(server.logged())
    kwargs = dict(questions=str(tmp_path / "questions.parquet"), prompts=str(REPO / "prompts/self_assessment/unsaf.yaml"),
                  model="m", dataset="d", setting="mc", model_config=model_config, settings=settings, request_cache=str(cache))
    table = answer_questions(answers=str(tmp_path / "a.parquet"), **kwargs)
    assert table.height == 4 and table["reply"].str.len_chars().min() > 0
    assert len(server.logged()) == logged + 4
    again = answer_questions(answers=str(tmp_path / "b.parquet"), **kwargs)
    assert again["reply"].to_list() == table["reply"].to_list() and len(server.logged()) == logged + 4
    assert io.read_parquet_metadata(tmp_path / "b.parquet")["generation"]["cached"] == 4
    assert files_containing(tmp_path, SENTINEL) == []


def test_wrong_url_missing_key_and_a_500ing_server_end_with_a_message_and_no_table(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/v1"

    (tmp_path / "missing-key").mkdir()
    path = write_config(tmp_path / "missing-key", served_workflow_config(closed))
    result = run_snakemake(tmp_path / "missing-key", "--configfile", str(path), "-n", check=False, env={KEY_ENV: ""})
    text = result.stdout + result.stderr
    assert result.returncode != 0 and f"models.{MODEL}.api_key_env" in text and KEY_ENV in text
    assert not (tmp_path / "missing-key/results").exists()  # stopped at parse time, before any job

    # one run, two served models: one at a closed port, one at a server that answers 500 to everything
    with ScriptedServer(statuses=[500] * 100) as failing:
        config = served_workflow_config(closed)
        config["models"]["failing"] = {**config["models"][MODEL], "url": failing.url}
        config["self_assessment"].update(models=[MODEL, "failing"], settings=["open"])
        path = write_config(tmp_path, config)
        outputs = {m: tmp_path / f"results/self_assessment/{m}/synth/open/generations.parquet" for m in (MODEL, "failing")}
        result = run_snakemake(tmp_path, "--configfile", str(path), "--cores", "2", "--keep-going",
                               *(str(o.relative_to(tmp_path)) for o in outputs.values()), check=False,
                               env={KEY_ENV: SENTINEL})
    assert result.returncode != 0
    logs = {m: (tmp_path / f"results/logs/self_assessment/{m}/synth/open/generate.log").read_text() for m in outputs}
    assert f"models.{MODEL}.url" in logs[MODEL] and closed in logs[MODEL] and "Connection refused" in logs[MODEL]
    assert "models.failing.url" in logs["failing"] and f"{failing.url}/chat/completions" in logs["failing"]
    assert "HTTP 500" in logs["failing"] and len(failing.received) >= 2  # retried before giving up
    console = result.stdout + result.stderr
    assert f"models.{MODEL}.url" in console and "models.failing.url" in console  # the messages reach the console too
    assert not any(o.exists() for o in outputs.values())  # no half-written table
    assert files_containing(tmp_path, SENTINEL) == []


def test_a_served_model_with_logprobs_is_scored_on_the_prompts_and_one_without_only_generates(tmp_path, monkeypatch):
    from test_served_logprobs import _scripted_logprobs

    monkeypatch.setenv(KEY_ENV, SENTINEL)
    with ScriptedServer(respond=_scripted_logprobs) as logprob_server:
        config = served_workflow_config("http://127.0.0.1:9/v1")
        config["models"]["scorer"] = {"backend": "served", "url": logprob_server.url, "model": "gpt-4o",
                                      "api_key_env": KEY_ENV, "logprobs": "top_logprobs"}
        path = write_config(tmp_path, config)
        jobs = dry_run_jobs(tmp_path, "--configfile", str(path))
        assert jobs["score_family_served"] == 3  # scorer x synth x families A, B, C; tiny-served is not scored
        assert jobs["score_family"] == 3 and jobs["lock"] == 2  # sim and scorer
        assert jobs["self_assessment_generate_served"] == 2 and jobs["self_assessment_answer_served"] == 2
        run_snakemake(tmp_path, "--configfile", str(path), "--cores", "1", "results/scores/scorer/synth/A.parquet")
    scores = pl.read_parquet(tmp_path / "results/scores/scorer/synth/A.parquet")
    assert scores.height == 16 * 5 and len(logprob_server.received) == 16 * 5 and scores["p_unsafe"].is_between(0, 1).all()
    provenance = io.read_parquet_metadata(tmp_path / "results/scores/scorer/synth/A.parquet")
    assert provenance["backend"] == "served" and provenance["served"]["requests"]["sent"] == 16 * 5
    assert len((tmp_path / "results/served/scorer/scores/synth/A.jsonl").read_text().splitlines()) == 16 * 5
    assert files_containing(tmp_path, SENTINEL) == []
