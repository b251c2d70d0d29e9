"""Served models: chat requests to any OpenAI-compatible server, cached per request and resumable.

The API other steps use (self-assessment stages, safety-calibration responses and judge)::

    client = ServedClient.from_config(name, model_config, cache)   # models.<name>, backend served
    conversations = [[user_turn("Describe the image.", images=["img/0001.png"])], ...]
    replies = client.replies(conversations, max_tokens=64)          # reply texts, in order
    bodies = client.complete(conversations, max_tokens=1, logprobs=True, top_logprobs=20)  # response bodies

In a rule (workflow/rules/common.smk) a served step takes three params: ``model_config=
served_request_config(model)`` (what shapes a request; tracked), ``connection=served_connection(model)``
(URL, key variable, limits; untracked) and ``request_cache=served_request_cache(model, step, ...)``;
the function builds the client from ``{**model_config, **connection}`` (see
``self_assessment_inference._generator``), and runs as a CPU step (``call``, ``localrule: True``).

- A conversation is a list of OpenAI chat messages; :func:`user_turn` / :func:`assistant_turn` build
  them, images as ``data:`` URLs of the files' own bytes (no re-encoding, so a request is exactly
  reproducible).
- **Cache** (``cache``, a JSON-lines file; the workflow keeps one per step and wildcards): one line per answered request, keyed on
  the SHA-256 of the exact request body sent (model name, messages with image bytes, generation
  settings), not on the URL, so a server moved to another node or port reuses the answers, and a
  changed prompt, image or setting asks again. A request already in the cache is never sent again:
  a killed run resumes with exactly the requests it lacks. The key is also sent as ``X-Request-ID``
  (vLLM and ``transformers serve`` echo it), so a server's log can be matched with the cache.
- **Requests**: at most ``concurrency`` in flight per job; 429, 5xx, timeouts and refused or dropped
  connections are retried ``max_retries`` times with exponential backoff (``backoff_s`` doubling,
  or the server's ``Retry-After``); any other 4xx fails at once. A failure ends the job with a
  message naming the server and the config key to check, after the requests in flight have
  finished (and been cached).
- **The API key** is read from the environment variable that ``api_key_env`` names and sent only in
  the ``Authorization`` header: it is never logged, cached, written to a table or an error message.
"""

from __future__ import annotations

import base64
import concurrent.futures
import fcntl
import hashlib
import json
import logging
import mimetypes
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompt_reliability.base.config import check_served_model, missing_key_message
from prompt_reliability.base.errors import ConfigError
from prompt_reliability.base.logs import progress

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})


class ServedError(RuntimeError):
    """A served model could not answer; the message names the server and the config key to check."""


# --- messages ------------------------------------------------------------------------------------


def image_data_url(image: str | Path | bytes) -> str:
    """``data:<mime>;base64,...`` of an image file's own bytes (or of raw PNG/JPEG bytes)."""
    if isinstance(image, bytes):
        data, mime = image, _sniff_mime(image)
    else:
        data = Path(image).read_bytes()
        mime = mimetypes.guess_type(str(image))[0] or _sniff_mime(data)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _sniff_mime(data: bytes) -> str:
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if data[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    raise ValueError("an image sent to a served model is neither PNG, JPEG, WebP nor GIF; convert it first")


def user_turn(text: str, images: Sequence[str | Path | bytes] = ()) -> dict[str, Any]:
    """One user message: the images first (as data URLs), then the text."""
    content: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image_data_url(image)}} for image in images]
    content.append({"type": "text", "text": text})
    return {"role": "user", "content": content}


def assistant_turn(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": text}


def system_turn(text: str) -> dict[str, Any]:
    return {"role": "system", "content": text}


def request_bytes(body: Mapping[str, Any]) -> bytes:
    """The exact bytes sent for ``body`` (canonical JSON: sorted keys, no spaces)."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def request_key(body: Mapping[str, Any]) -> str:
    """Cache key of a request: SHA-256 of its exact bytes (:func:`request_bytes`)."""
    return hashlib.sha256(request_bytes(body)).hexdigest()


def reply_text(body: Mapping[str, Any]) -> str:
    """The first choice's message text ('' when the server sent none)."""
    try:
        content = body["choices"][0]["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ServedError(f"the server's reply has no choices[0].message: {json.dumps(body)[:300]}") from None
    if isinstance(content, list):  # some servers return content parts
        content = "".join(part.get("text", "") for part in content if isinstance(part, Mapping))
    return (content or "").strip()


def _summary(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the cache records of a request: everything but image bytes (their SHA-256 instead)."""
    def strip(value):
        if isinstance(value, Mapping):
            return {k: strip(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str) and value.startswith("data:") and ";base64," in value:
            head, data = value.split(",", 1)
            return f"{head},sha256:{hashlib.sha256(data.encode('ascii')).hexdigest()}"
        return value
    return strip(body)


# --- the cache -----------------------------------------------------------------------------------


class RequestCache:
    """Answered requests of one served model: a JSON-lines file, one ``{key, request, response, ...}`` per line.

    Appends are whole lines under an exclusive ``flock`` (jobs of several workers may share the file);
    a line cut short by a kill is skipped when read, and the next append starts a fresh line.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        """key -> cached record (the last line of a key wins)."""
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        with open(self.path, "rb") as handle:
            for line in handle:
                try:
                    record = json.loads(line)
                    records[record["key"]] = record
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut by a kill: that request is asked again
        return records

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(record, sort_keys=True, ensure_ascii=False).encode("utf-8") + b"\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._lock, open(self.path, "ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                if handle.tell() > 0:
                    with open(self.path, "rb") as tail:
                        tail.seek(-1, os.SEEK_END)
                        if tail.read(1) != b"\n":
                            line = b"\n" + line
                handle.write(line)
                handle.flush()
                os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedSettings:
    """A served model's validated config (``models.<name>`` with backend served)."""

    name: str
    url: str
    model: str
    api_key_env: str | None
    concurrency: int
    timeout_s: float
    max_retries: int
    backoff_s: float
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> ServedSettings:
        check_served_model(name, cfg)
        return cls(name=name, url=cfg["url"].rstrip("/"), model=cfg["model"], api_key_env=cfg.get("api_key_env"),
                   concurrency=cfg["concurrency"], timeout_s=cfg["timeout_s"], max_retries=cfg["max_retries"],
                   backoff_s=cfg["backoff_s"], extra_body=dict(cfg.get("extra_body") or {}))

    @property
    def endpoint(self) -> str:
        return f"{self.url}/chat/completions"

    def api_key(self) -> str | None:
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env)
        if not key:
            raise ConfigError(missing_key_message(self.name, self.api_key_env))
        return key


# --- the client ----------------------------------------------------------------------------------


@dataclass
class RequestStats:
    """What a job's requests cost: sent, answered from the cache, retried, seconds."""

    requested: int = 0
    cached: int = 0
    sent: int = 0
    retries: int = 0
    seconds: float = 0.0
    request_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        mean = self.request_seconds / self.sent if self.sent else None
        return {"requested": self.requested, "cached": self.cached, "sent": self.sent, "retries": self.retries,
                "seconds": round(self.seconds, 3), "seconds_per_request": None if mean is None else round(mean, 4)}


class ServedClient:
    """Chat requests to one served model, cached and resumable; see the module docstring."""

    def __init__(self, settings: ServedSettings, cache: str | Path, *, sleep=time.sleep):
        self.settings = settings
        self.cache = RequestCache(cache)
        self.stats = RequestStats()
        self._sleep = sleep
        self._stats_lock = threading.Lock()
        self._api_key = settings.api_key()  # fails now, before any request, when the variable is unset

    @classmethod
    def from_config(cls, name: str, model_config: Mapping[str, Any], cache: str | Path) -> ServedClient:
        return cls(ServedSettings.from_config(name, model_config), cache)

    def body(self, messages: Sequence[Mapping[str, Any]], *, max_tokens: int, **extra: Any) -> dict[str, Any]:
        """The request body of one conversation: greedy (temperature 0) unless ``extra_body`` or ``extra`` says otherwise."""
        return {"temperature": 0, **self.settings.extra_body, **extra, "model": self.settings.model,
                "messages": list(messages), "max_tokens": int(max_tokens)}

    def complete(self, conversations: Sequence[Sequence[Mapping[str, Any]]], *, max_tokens: int,
                 desc: str | None = None, **extra: Any) -> list[dict[str, Any]]:
        """Response bodies of ``conversations`` (in order): cached ones from the cache, the rest asked for."""
        bodies = [self.body(messages, max_tokens=max_tokens, **extra) for messages in conversations]
        keys = [request_key(body) for body in bodies]
        cached = self.cache.load()
        todo = {key: body for key, body in zip(keys, bodies) if key not in cached}
        self.stats.requested += len(keys)
        self.stats.cached += len(keys) - len(todo)
        log.info("%s: %d requests, %d from the cache, %d to send to %s", self.settings.name, len(keys),
                 len(keys) - len(todo), len(todo), self.settings.url)
        started = time.perf_counter()
        answers = self._send_all(todo, desc or self.settings.name) if todo else {}
        self.stats.seconds += time.perf_counter() - started
        return [answers[key] if key in answers else cached[key]["response"] for key in keys]

    def replies(self, conversations: Sequence[Sequence[Mapping[str, Any]]], *, max_tokens: int, **extra: Any) -> list[str]:
        """Reply texts of ``conversations`` (in order); see :meth:`complete`."""
        return [reply_text(body) for body in self.complete(conversations, max_tokens=max_tokens, **extra)]

    def _send_all(self, todo: Mapping[str, dict[str, Any]], desc: str) -> dict[str, dict[str, Any]]:
        """Send ``todo`` (key -> body) from ``concurrency`` threads; cache and log from this (the job's) thread."""
        answers: dict[str, dict[str, Any]] = {}
        failure: BaseException | None = None
        sessions = threading.local()  # one requests.Session (connection pool) per sending thread
        with concurrent.futures.ThreadPoolExecutor(self.settings.concurrency) as pool, \
                progress(len(todo), desc, unit="request") as bar:
            futures = {pool.submit(self._send, sessions, key, body): key for key, body in todo.items()}
            for future in concurrent.futures.as_completed(futures):
                try:
                    record = future.result()
                except BaseException as err:  # the first failure stops new requests; those in flight finish
                    self._log_retries(getattr(err, "retried", ()))
                    if failure is None:
                        failure = err
                        for other in futures:
                            other.cancel()
                    continue
                self._log_retries(record["retried"])
                self.cache.append(record)
                answers[record["key"]] = record["response"]
                bar.update()
        if failure is not None:
            log.error("%s: %d of %d requests answered and cached before the failure; a rerun sends only the others",
                      self.settings.name, len(answers), len(todo))
            raise failure
        return answers

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "<key>") if self._api_key else text

    def _log_retries(self, retried: Sequence[str]) -> None:
        # logged here, not in the sending threads: a job's log file takes the records of its own thread
        for attempt, problem in enumerate(retried, start=1):
            log.warning("%s: %s; retried (%d of at most %d)", self.settings.name, problem, attempt, self.settings.max_retries)

    def _session(self, sessions: threading.local):
        import requests

        if not hasattr(sessions, "session"):
            sessions.session = requests.Session()
            sessions.session.headers["Content-Type"] = "application/json"
            if self._api_key:
                sessions.session.headers["Authorization"] = f"Bearer {self._api_key}"
        return sessions.session

    def _send(self, sessions: threading.local, key: str, body: Mapping[str, Any]) -> dict[str, Any]:
        import requests

        settings, session = self.settings, self._session(sessions)
        payload = request_bytes(body)
        attempt = 0
        retried: list[str] = []
        while True:
            started = time.perf_counter()
            retry_after: float | None = None
            try:
                response = session.post(settings.endpoint, data=payload, headers={"X-Request-ID": key},
                                        timeout=settings.timeout_s)
            except requests.Timeout:
                problem = f"no answer within {settings.timeout_s} s (config key 'models.{settings.name}.timeout_s')"
            except requests.ConnectionError as err:
                problem = f"cannot connect ({type(err).__name__}: {_reason(err)})"
            else:
                if response.status_code == 200:
                    try:
                        answer = response.json()
                    except ValueError:
                        raise ServedError(f"models.{settings.name}: the server at {settings.endpoint} answered 200 with a body "
                                          f"that is not JSON ({self._redact(response.text[:200])!r}); is config key 'models."
                                          f"{settings.name}.url' an OpenAI-compatible server?") from None
                    seconds = time.perf_counter() - started
                    with self._stats_lock:
                        self.stats.sent += 1
                        self.stats.request_seconds += seconds
                    return {"key": key, "request": _summary(body), "response": answer, "seconds": round(seconds, 4),
                            "attempts": attempt + 1, "retried": retried}
                excerpt = self._redact(response.text[:300])  # a server that echoes headers must not leak the key
                problem = f"HTTP {response.status_code}: {excerpt!r}"
                if response.status_code not in RETRY_STATUS:
                    error = ServedError(_status_message(settings, response.status_code, excerpt))
                    error.retried = retried  # logged by the job's thread
                    raise error
                retry_after = _retry_after(response.headers.get("Retry-After"))
            if attempt >= settings.max_retries:
                error = ServedError(f"models.{settings.name}: the server at {settings.endpoint} failed {attempt + 1} times "
                                  f"for one request (last: {problem}); check that it is running and reachable at config key "
                                  f"'models.{settings.name}.url', or raise 'models.{settings.name}.max_retries' / "
                                  f"'backoff_s' for a busy server. Answered requests are cached: a rerun resumes.")
                error.retried = retried
                raise error
            delay = retry_after if retry_after is not None else settings.backoff_s * 2 ** attempt
            with self._stats_lock:
                self.stats.retries += 1
            retried.append(f"{problem}; waited {delay:.1f} s")
            self._sleep(delay)
            attempt += 1


def _reason(err: BaseException) -> str:
    """The innermost cause of a connection error (e.g. 'Connection refused'), without the request's headers."""
    while err.__context__ is not None and err.__context__ is not err:
        err = err.__context__
    return str(err)[:200]


def _retry_after(value: str | None) -> float | None:
    try:
        return min(max(float(value), 0.0), 300.0) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to the backoff


def _status_message(settings: ServedSettings, status: int, text: str) -> str:
    where = f"models.{settings.name}: the server at {settings.endpoint} answered HTTP {status} ({text!r})"
    if status in (401, 403):
        return (f"{where}: the API key was refused; check the key in the environment variable that config key "
                f"'models.{settings.name}.api_key_env' names ({settings.api_key_env!r})")
    if status == 404:
        return (f"{where}: check config key 'models.{settings.name}.url' (the base URL, usually ending in /v1) and "
                f"'models.{settings.name}.model' (a model name the server serves)")
    return (f"{where}: the request was refused; check config keys 'models.{settings.name}.model' and "
            f"'models.{settings.name}.extra_body' against what the server accepts")
