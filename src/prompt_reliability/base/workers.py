"""A few long-lived Python processes that run the workflow's CPU steps (base.jobs.call).

Jobs that are ``run:`` blocks execute as threads of the Snakemake process (``force-use-threads``),
so they share its imports instead of paying Python start-up once per job. Threads of one process
share one interpreter lock, though, and most of an analysis or a figure is Python, not numpy: on
two cores, two jobs side by side took as long as one after the other. :func:`jobs.call` therefore
hands each job to one of these workers, started as needed (as many as Snakemake's ``--cores``). A
worker imports the package once and runs one job at a time; the thread that handed it the job
waits on a pipe, which holds no lock.

The protocol is one JSON line each way on the worker's stdin/stdout (nothing is pickled): the
function as ``"module:qualname"``, its keyword arguments, the job's log and usage files; the reply
says ``ok`` or gives the error's type and message (the traceback is in the job's log), and the
worker's resident memory after the job. A worker that dies mid-job (killed for memory, a crash in
native code) fails that job only and is replaced.

Recycling: a worker is replaced once its resident memory after a job exceeds ``max_rss_mb`` (a
model step leaves torch, transformers and the allocator's arenas behind, while Snakemake's
``mem_mb`` scheduling assumes a finished job frees its memory) or after ``max_jobs`` jobs. The
next job then starts a fresh worker (~1-2 s of imports; ~6 s more for a model step's torch).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


def resolve(function: str) -> Callable[..., Any]:
    """``"package.module:function"`` as the function it names."""
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


class WorkerJobError(RuntimeError):
    """A job failed inside a worker; the message carries the original error type and message."""


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen
    jobs: int = 0  # jobs run so far
    torch: bool = False  # has run a model step (torch and transformers imported)


class Workers:
    """Up to ``size`` worker processes, started when needed, reused, and replaced when they grow.

    A model step goes preferably to a worker that has run one before (torch and transformers take
    ~6 s to import, once per worker), other jobs preferably to one that has not.
    ``max_rss_mb`` / ``max_jobs`` (None: no limit): when a worker is replaced (see the module).
    """

    def __init__(self, size: int, max_rss_mb: float | None = None, max_jobs: int | None = None) -> None:
        self.size = max(1, int(size))
        self.max_rss_mb = max_rss_mb
        self.max_jobs = max_jobs
        self._idle: list[_Worker] = []  # most recently idle last
        self._started: list[_Worker] = []
        self.replaced = 0  # workers retired for memory or job count
        self._changed = threading.Condition()
        self._owner = os.getpid()
        atexit.register(self.close)

    @property
    def usable(self) -> bool:
        """False in a forked child: the pipes belong to the process that started the workers."""
        return os.getpid() == self._owner

    def _take(self, model_step: bool) -> _Worker:
        with self._changed:
            while True:
                self._idle = [w for w in self._idle if w.process.poll() is None]
                if self._idle:
                    fits = [w for w in self._idle if w.torch == model_step]
                    worker = (fits or self._idle)[-1]
                    self._idle.remove(worker)
                    break
                self._started = [w for w in self._started if w.process.poll() is None]
                if len(self._started) < self.size:
                    worker = _Worker(subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                                      stdout=subprocess.PIPE, text=True, bufsize=1))
                    self._started.append(worker)
                    break
                self._changed.wait()
        worker.torch = worker.torch or model_step
        worker.jobs += 1
        return worker

    def _release(self, worker: _Worker, alive: bool) -> None:
        with self._changed:
            if alive:
                self._idle.append(worker)
            else:
                with contextlib.suppress(ValueError):
                    self._started.remove(worker)
            self._changed.notify()

    def _retire_reason(self, worker: _Worker, rss_mb: float | None) -> str | None:
        if self.max_rss_mb is not None and rss_mb is not None and rss_mb > self.max_rss_mb:
            return f"its resident memory after the job, {rss_mb:.0f} MB, exceeds workers.max_rss_mb ({self.max_rss_mb})"
        if self.max_jobs is not None and worker.jobs >= self.max_jobs:
            return f"it ran workers.max_jobs ({self.max_jobs}) jobs"
        return None

    def run(self, function: str, kwargs: Mapping[str, Any], log_file: str | None, name: str,
            torch_threads: int | None = None, usage_file: str | None = None) -> None:
        """Run ``function`` ("module:qualname") with ``kwargs`` in a worker; raise if the job failed.

        ``kwargs`` must be JSON as it is (base.jobs checks that). ``torch_threads``: a model step's
        CPU threads (torch's intra-op pool is process-wide). ``usage_file``: where the worker
        writes the job's wall time, CPU time and peak memory (base.usage).
        """
        worker = self._take(model_step=torch_threads is not None)
        job = json.dumps({"function": function, "kwargs": kwargs, "log": log_file, "name": name,
                          "torch_threads": torch_threads, "usage": usage_file, "job_in_process": worker.jobs})
        try:
            worker.process.stdin.write(job + "\n")
            worker.process.stdin.flush()
            reply = worker.process.stdout.readline()
        except OSError:
            reply = ""
        if not reply:
            worker.process.kill()
            code = worker.process.wait()
            self._release(worker, alive=False)
            where = f"; its log: {log_file}" if log_file else ""
            raise WorkerJobError(f"{name}: the worker process running it exited with code {code} (killed, e.g. for "
                                 f"memory, or crashed in native code){where}")
        result = json.loads(reply)
        reason = self._retire_reason(worker, result.get("rss_mb"))
        if reason is not None:
            self._retire(worker, reason, log_file)
        self._release(worker, alive=reason is None)
        if not result["ok"]:
            raise WorkerJobError(f"{name} failed: {result['type']}: {result['message']}")

    def _retire(self, worker: _Worker, reason: str, log_file: str | None) -> None:
        """End ``worker`` (end of input; it exits after its loop) and say why in the job's log."""
        self.replaced += 1
        if log_file:
            with contextlib.suppress(OSError), open(log_file, "a") as log:
                log.write(f"worker process {worker.process.pid} replaced after this job: {reason}\n")
        with contextlib.suppress(OSError):
            worker.process.stdin.close()
        threading.Thread(target=worker.process.wait, daemon=True).start()  # reap it

    def close(self) -> None:
        """Let every worker finish (end of input) and wait for it."""
        if not self.usable:
            return
        with self._changed:
            started, self._started, self._idle = self._started, [], []
        for worker in started:
            try:
                worker.process.stdin.close()
                worker.process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                worker.process.kill()


def _exit_with_parent() -> None:
    """End this worker, even mid-job, once the process that started it is gone (e.g. SIGKILLed).

    A worker that outlived its run could still be writing an output when the next run starts.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="exit-with-parent").start()


def _serve() -> None:
    """A worker's loop: one job per input line, one reply per job, until its input ends."""
    _exit_with_parent()
    # The reply channel is a private copy of stdout; fd 1 then points at stderr, so a stray print
    # or native library output can never corrupt the protocol.
    replies = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from threadpoolctl import threadpool_limits

    from prompt_reliability.base.logs import job_log
    from prompt_reliability.base.usage import measure, rss_mb, write_usage

    threadpool_limits(1)  # one job per worker and one worker per core: BLAS keeps to one thread
    for line in sys.stdin:
        job = json.loads(line)
        figures: dict[str, Any] = {}
        try:
            with measure("worker", job["job_in_process"]) as figures:
                if job.get("torch_threads"):
                    import torch

                    torch.set_num_threads(job["torch_threads"])
                with job_log(job["log"], console_prefix=f"[{job['name']}] ", capture_stderr=True), \
                        contextlib.redirect_stdout(sys.stderr):  # stderr is the job's log by now
                    resolve(job["function"])(**job["kwargs"])
            reply = {"ok": True}
        except Exception as err:  # noqa: BLE001 - every failure goes back to the job that asked
            reply = {"ok": False, "type": type(err).__name__, "message": str(err)}
        with contextlib.suppress(OSError):
            write_usage(job.get("usage"), figures)
        replies.write(json.dumps({**reply, "rss_mb": rss_mb()}) + "\n")


if __name__ == "__main__":
    try:
        _serve()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; Snakemake reports it
        sys.exit(130)
