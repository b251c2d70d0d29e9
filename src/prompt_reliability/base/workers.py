"""A few long-lived Python processes that run the workflow's analysis, table and figure jobs.

Jobs that are ``run:`` blocks execute as threads of the Snakemake process (profiles/default), so
they share its imports instead of paying Python start-up once per job. Threads of one process
share one interpreter lock, though, and most of an analysis or a figure is Python, not numpy: on
two cores, two jobs side by side took as long as one after the other. :func:`jobs.call` therefore
hands each job to one of these workers, started once per run (lazily, on the first job; as many as
Snakemake's ``--cores``). A worker imports the package once and runs one job at a time; the thread
that handed it the job waits on a pipe, which holds no lock.

The protocol is one JSON line each way on the worker's stdin/stdout (nothing is pickled): the
function as ``"module:qualname"``, its keyword arguments and the job's log file; the reply says
``ok`` or gives the error's type and message (the traceback is in the job's log). A worker that
dies mid-job (killed for memory, a crash in native code) fails that job only and is replaced.
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
from typing import Any


def resolve(function: str) -> Callable[..., Any]:
    """``"package.module:function"`` as the function it names."""
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


class WorkerJobError(RuntimeError):
    """A job failed inside a worker; the message carries the original error type and message."""


class Workers:
    """Up to ``size`` worker processes, started when first needed and reused.

    A model step goes preferably to a worker that has run one before (torch and transformers take
    ~6 s to import, once per worker), other jobs preferably to one that has not.
    """

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size))
        self._idle: list[subprocess.Popen] = []  # most recently idle last
        self._started: list[subprocess.Popen] = []
        self._ran_models: set[int] = set()  # pids of workers that have imported torch
        self._changed = threading.Condition()
        self._owner = os.getpid()
        atexit.register(self.close)

    @property
    def usable(self) -> bool:
        """False in a forked child: the pipes belong to the process that started the workers."""
        return os.getpid() == self._owner

    def _take(self, model_step: bool) -> subprocess.Popen:
        with self._changed:
            while True:
                self._idle = [w for w in self._idle if w.poll() is None]
                if self._idle:
                    fits = [w for w in self._idle if (w.pid in self._ran_models) == model_step]
                    worker = (fits or self._idle)[-1]
                    self._idle.remove(worker)
                    break
                self._started = [w for w in self._started if w.poll() is None]
                if len(self._started) < self.size:
                    worker = subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.PIPE,
                                              stdout=subprocess.PIPE, text=True, bufsize=1)
                    self._started.append(worker)
                    break
                self._changed.wait()
        if model_step:
            self._ran_models.add(worker.pid)
        return worker

    def _release(self, worker: subprocess.Popen, alive: bool) -> None:
        with self._changed:
            if alive:
                self._idle.append(worker)
            else:  # its pid may come back as a new worker's, which has not imported torch
                self._ran_models.discard(worker.pid)
            self._changed.notify()

    def run(self, function: str, kwargs: Mapping[str, Any], log_file: str | None, name: str,
            torch_threads: int | None = None) -> None:
        """Run ``function`` ("module:qualname") with ``kwargs`` in a worker; raise if the job failed.

        ``torch_threads``: a model step's CPU threads (torch's intra-op pool is process-wide).
        """
        worker = self._take(model_step=torch_threads is not None)
        job = json.dumps({"function": function, "kwargs": kwargs, "log": log_file, "name": name,
                          "torch_threads": torch_threads}, default=str)
        try:
            worker.stdin.write(job + "\n")
            worker.stdin.flush()
            reply = worker.stdout.readline()
        except OSError:
            reply = ""
        if not reply:
            worker.kill()
            code = worker.wait()
            self._release(worker, alive=False)
            where = f"; its log: {log_file}" if log_file else ""
            raise WorkerJobError(f"{name}: the worker process running it exited with code {code} (killed, e.g. for "
                                 f"memory, or crashed in native code){where}")
        self._release(worker, alive=True)
        result = json.loads(reply)
        if not result["ok"]:
            raise WorkerJobError(f"{name} failed: {result['type']}: {result['message']}")

    def close(self) -> None:
        """Let every worker finish (end of input) and wait for it."""
        if not self.usable:
            return
        with self._changed:
            started, self._started, self._idle = self._started, [], []
        for worker in started:
            try:
                worker.stdin.close()
                worker.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                worker.kill()


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

    threadpool_limits(1)  # one job per worker and one worker per core: BLAS keeps to one thread
    for line in sys.stdin:
        job = json.loads(line)
        try:
            if job.get("torch_threads"):
                import torch

                torch.set_num_threads(job["torch_threads"])
            with job_log(job["log"], console_prefix=f"[{job['name']}] ", capture_stderr=True), \
                    contextlib.redirect_stdout(sys.stderr):  # stderr is the job's log by now
                resolve(job["function"])(**job["kwargs"])
            reply = {"ok": True}
        except Exception as err:  # noqa: BLE001 - every failure goes back to the job that asked
            reply = {"ok": False, "type": type(err).__name__, "message": str(err)}
        replies.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    try:
        _serve()
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group; Snakemake reports it
        sys.exit(130)
