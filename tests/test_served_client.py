"""The served-model client against a scripted HTTP server on loopback: cache, retries, limits, errors, secrets."""

from __future__ import annotations

import base64
import hashlib
import http.server
import json
import threading
import time
from pathlib import Path

import pytest

from prompt_reliability.base.config import check_served_model
from prompt_reliability.base.errors import ConfigError
from prompt_reliability.scoring.served import (
    RequestCache,
    ServedClient,
    ServedError,
    ServedSettings,
    image_data_url,
    request_bytes,
    request_key,
    user_turn,
)

SENTINEL = "sk-sentinel-do-not-write-9f1c"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC")


class ScriptedServer:
    """An OpenAI-shaped chat endpoint on 127.0.0.1 whose status codes follow a script.

    ``statuses`` is consumed one per request (then 200); a 200 replies ``echo:<last text part>``, or
    ``respond(body)`` when given.
    Records each request's body hash, headers and arrival time, and the most requests in flight.
    """

    def __init__(self, statuses=(), delay=0.0, retry_after=None, respond=None, echo_headers=False):
        self.statuses, self.delay, self.retry_after, self.respond = list(statuses), delay, retry_after, respond
        self.echo_headers = echo_headers  # error bodies repeat the request's headers (as some proxies do)
        self.received: list[dict] = []
        self.in_flight = self.max_in_flight = 0
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with outer.lock:
                    outer.received.append({"sha256": hashlib.sha256(body).hexdigest(), "path": self.path,
                                           "headers": dict(self.headers), "time": time.perf_counter()})
                    status = outer.statuses.pop(0) if outer.statuses else 200
                    outer.in_flight += 1
                    outer.max_in_flight = max(outer.max_in_flight, outer.in_flight)
                time.sleep(outer.delay)
                with outer.lock:
                    outer.in_flight -= 1
                if status == 200 and outer.respond is not None:
                    payload = json.dumps(outer.respond(json.loads(body))).encode()
                elif status == 200:
                    text = json.loads(body)["messages"][-1]["content"][-1]["text"]
                    payload = json.dumps({"id": "x", "object": "chat.completion", "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": f"echo:{text}"}, "finish_reason": "stop"}]}).encode()
                else:
                    headers = dict(self.headers) if outer.echo_headers else {}
                    payload = json.dumps({"error": {"message": f"scripted {status}", "headers": headers}}).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                if status == 429 and outer.retry_after is not None:
                    self.send_header("Retry-After", str(outer.retry_after))
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def served_config(url, **overrides):
    cfg = {"backend": "served", "url": url, "model": "tiny-vlm", "api_key_env": "SERVED_TEST_KEY", "concurrency": 2,
           "timeout_s": 5, "max_retries": 3, "backoff_s": 0.01, "extra_body": {}, "logprobs": "none", "top_logprobs": 20}
    return {**cfg, **overrides}


@pytest.fixture
def key_env(monkeypatch):
    monkeypatch.setenv("SERVED_TEST_KEY", SENTINEL)


def conversations(n, image=None):
    return [[user_turn(f"question {i}", [image] if image else [])] for i in range(n)]


def test_requests_are_cached_on_their_exact_bytes_and_never_sent_twice(tmp_path, key_env):
    image = tmp_path / "img.png"
    image.write_bytes(PNG)
    cache = tmp_path / "served" / "requests.jsonl"
    with ScriptedServer() as server:
        client = ServedClient.from_config("m", served_config(server.url), cache)
        assert client.replies(conversations(5, image), max_tokens=4) == [f"echo:question {i}" for i in range(5)]
        bodies = [client.body(c, max_tokens=4) for c in conversations(5, image)]
        # the key is the SHA-256 of the bytes the server received, and is sent as X-Request-ID
        assert sorted(r["sha256"] for r in server.received) == sorted(request_key(b) for b in bodies)
        assert all(r["headers"]["X-Request-ID"] == r["sha256"] for r in server.received)
        assert all(r["headers"]["Authorization"] == f"Bearer {SENTINEL}" for r in server.received)
        assert all(r["path"] == "/v1/chat/completions" for r in server.received)
        again = ServedClient.from_config("m", served_config(server.url), cache)
        assert again.replies(conversations(5, image), max_tokens=4) == [f"echo:question {i}" for i in range(5)]
        assert len(server.received) == 5 and again.stats.sent == 0 and again.stats.cached == 5
        # a changed prompt or setting asks again; the rest comes from the cache
        changed = conversations(5, image)
        changed[2] = [user_turn("question 2, reworded", [image])]
        assert again.replies(changed, max_tokens=4)[2] == "echo:question 2, reworded"
        assert len(server.received) == 6
        again.replies(conversations(1, image), max_tokens=5)
        assert len(server.received) == 7
    body = json.loads(request_bytes(bodies[0]))
    assert body["messages"][0]["content"][0]["image_url"]["url"] == "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert body["temperature"] == 0 and body["model"] == "tiny-vlm"
    text = cache.read_text()
    assert SENTINEL not in text and base64.b64encode(PNG).decode() not in text  # images by hash, never the key
    assert len(RequestCache(cache).load()) == 7


def test_429_and_5xx_are_retried_with_backoff_and_retry_after(tmp_path, key_env):
    delays = []
    with ScriptedServer(statuses=[429, 503, 500], retry_after=0) as server:
        client = ServedClient(ServedSettings.from_config("m", served_config(server.url, concurrency=1, backoff_s=0.5)),
                              tmp_path / "c.jsonl", sleep=delays.append)
        assert client.replies(conversations(1), max_tokens=2) == ["echo:question 0"]
    assert len(server.received) == 4 and client.stats.retries == 3 and client.stats.sent == 1
    assert delays == [0.0, 1.0, 2.0]  # Retry-After: 0 wins; then 0.5 s doubled per attempt
    assert json.loads((tmp_path / "c.jsonl").read_text())["attempts"] == 4


def test_a_server_that_keeps_failing_ends_with_a_message_naming_it_and_keeps_what_was_answered(tmp_path, key_env):
    cache = tmp_path / "c.jsonl"
    with ScriptedServer(statuses=[200, 200] + [500] * 20) as server:
        client = ServedClient.from_config("m", served_config(server.url, concurrency=1, max_retries=2), cache)
        with pytest.raises(ServedError) as err:
            client.replies(conversations(4), max_tokens=2)
    message = str(err.value)
    assert server.url in message and "models.m.url" in message and "HTTP 500" in message and SENTINEL not in message
    assert len(RequestCache(cache).load()) == 2  # answered before the failure: a rerun sends only the others


def test_a_4xx_is_not_retried_and_names_the_config_key(tmp_path, key_env, caplog):
    with ScriptedServer(statuses=[404]) as server:
        client = ServedClient.from_config("m", served_config(server.url), tmp_path / "c.jsonl")
        with pytest.raises(ServedError, match=r"models\.m\.url.*models\.m\.model"):
            client.replies(conversations(1), max_tokens=2)
    assert len(server.received) == 1
    with ScriptedServer(statuses=[401]) as server:
        client = ServedClient.from_config("m", served_config(server.url), tmp_path / "c.jsonl")
        with pytest.raises(ServedError, match=r"models\.m\.api_key_env.*SERVED_TEST_KEY") as err:
            client.replies(conversations(1), max_tokens=2)
    assert SENTINEL not in str(err.value)
    for statuses in ([400], [503, 400]):  # refused at once, or retried (logged) first
        with ScriptedServer(statuses=statuses, echo_headers=True) as server:
            client = ServedClient.from_config("m", served_config(server.url), tmp_path / "c.jsonl")
            with pytest.raises(ServedError, match="<key>") as err:
                client.replies(conversations(1), max_tokens=2)
        assert SENTINEL not in str(err.value) and "Bearer <key>" in str(err.value)
    assert "retried" in caplog.text and SENTINEL not in caplog.text


def test_an_unreachable_server_is_retried_then_named(tmp_path, key_env):
    with ScriptedServer() as server:
        url = server.url  # the port is closed once the server is gone
    client = ServedClient.from_config("m", served_config(url, max_retries=1), tmp_path / "c.jsonl")
    with pytest.raises(ServedError, match=r"failed 2 times.*cannot connect.*models\.m\.url"):
        client.replies(conversations(1), max_tokens=2)
    assert client.stats.retries == 1 and not (tmp_path / "c.jsonl").exists()


def test_no_more_than_concurrency_requests_are_in_flight(tmp_path, key_env):
    with ScriptedServer(delay=0.05) as server:
        client = ServedClient.from_config("m", served_config(server.url, concurrency=3), tmp_path / "c.jsonl")
        client.replies(conversations(12), max_tokens=2)
    assert server.max_in_flight == 3


def test_the_key_variable_and_the_url_are_checked_before_any_request(tmp_path, monkeypatch):
    monkeypatch.delenv("SERVED_TEST_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"models\.m\.api_key_env.*'SERVED_TEST_KEY'.*not set"):
        ServedClient.from_config("m", served_config("http://127.0.0.1:9/v1"), tmp_path / "c.jsonl")
    for url, fix in (("127.0.0.1:8000/v1", "http:// or https://"), ("ftp://host/v1", "http:// or https://"),
                     ("http://127.0.0.1:8000/v1/chat/completions", "without /chat/completions")):
        with pytest.raises(ConfigError, match=rf"models\.m\.url.*{fix}"):
            check_served_model("m", served_config(url, api_key_env=None))
    with pytest.raises(ConfigError, match=r"models\.m\.model"):
        check_served_model("m", served_config("http://127.0.0.1:8000/v1", model="", api_key_env=None))
    with pytest.raises(ConfigError, match=r"models\.m\.extra_body.*max_tokens"):
        check_served_model("m", served_config("http://127.0.0.1:8000/v1", api_key_env=None, extra_body={"max_tokens": 3}))
    with pytest.raises(ConfigError, match=r"models\.m\.label_token_ids"):
        check_served_model("m", served_config("http://127.0.0.1:8000/v1", api_key_env=None, logprobs="logprob_token_ids"))
    check_served_model("m", served_config("http://127.0.0.1:8000/v1"), environment={"SERVED_TEST_KEY": "x"})


def test_a_line_cut_by_a_kill_is_skipped_and_the_next_append_starts_a_new_line(tmp_path):
    cache = RequestCache(tmp_path / "c.jsonl")
    cache.append({"key": "a", "response": {"n": 1}})
    with open(cache.path, "ab") as handle:
        handle.write(b'{"key": "b", "respo')  # killed mid-write
    cache.append({"key": "c", "response": {"n": 3}})
    assert sorted(cache.load()) == ["a", "c"]


def test_images_are_sent_as_their_own_bytes(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert image_data_url(path).startswith("data:image/jpeg;base64,")
    assert base64.b64decode(image_data_url(path).split(",", 1)[1]) == path.read_bytes()
    assert image_data_url(PNG).startswith("data:image/png;base64,")
    with pytest.raises(ValueError, match="PNG, JPEG"):
        image_data_url(b"GIF?no")


def test_cache_file_is_shared_by_clients_in_parallel(tmp_path, key_env):
    """Two jobs of one model (two threads here, two workers in a run) append to one file without losing lines."""
    cache = tmp_path / "c.jsonl"
    with ScriptedServer(delay=0.01) as server:
        clients = [ServedClient.from_config("m", served_config(server.url), cache) for _ in range(2)]
        threads = [threading.Thread(target=c.replies, args=([[user_turn(f"{j}-{i}")] for i in range(20)],),
                                    kwargs={"max_tokens": 2}) for j, c in enumerate(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert len(RequestCache(cache).load()) == 40 and len(Path(cache).read_text().splitlines()) == 40


def test_a_config_whose_only_models_generate_is_refused(monkeypatch):
    from conftest import SCHEMA_PATH

    from prompt_reliability.base.config import check_config, scored_models, validate_config

    monkeypatch.delenv("SERVED_TEST_KEY", raising=False)
    config = {"datasets": {"d": {"adapter": "synthetic"}}, "lock": {"dataset": "d"}, "evaluate": [{"dataset": "d"}],
              "models": {"gen": {"backend": "served", "url": "http://127.0.0.1:8000/v1", "model": "x"}}}
    validate_config(config, SCHEMA_PATH)
    assert config["models"]["gen"]["logprobs"] == "none" and scored_models(config) == []
    with pytest.raises(ConfigError, match="at least one model scored on the prompts"):
        check_config(config)
    config["models"]["scorer"] = {**config["models"]["gen"], "logprobs": "top_logprobs"}
    check_config(config)
    assert scored_models(config) == ["scorer"]
    config["models"]["scorer"]["path"] = "x"
    with pytest.raises(ConfigError, match=r"models\.scorer\.path' applies to backend 'hf' only"):
        check_config(config)
