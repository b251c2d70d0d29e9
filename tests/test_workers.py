"""The worker processes that run analysis, table and figure jobs (base.workers, jobs.call)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import worker_jobs

from prompt_reliability.base import jobs
from prompt_reliability.base.workers import WorkerJobError, Workers

TESTS = Path(__file__).resolve().parent


@pytest.fixture
def workers(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))  # the workers import worker_jobs by name
    pool = Workers(2)
    yield pool
    pool.close()


def test_jobs_run_in_reused_worker_processes_with_their_own_logs(workers, tmp_path):
    for i in range(3):
        workers.run("worker_jobs:write", {"path": str(tmp_path / f"{i}.txt"), "text": "hello"}, str(tmp_path / f"{i}.log"), "write")
    pids = {(tmp_path / f"{i}.txt").read_text().split(" from ")[1] for i in range(3)}
    assert len(pids) == 1 and int(pids.pop()) != os.getpid()  # one warm worker, not this process
    log = (tmp_path / "0.log").read_text()
    # the job's records, stderr and stdout reach its log (stdout did not break the JSON replies)
    assert "writing" in log and "progress on stderr" in log and "stray output" in log and "1.txt" not in log


def test_a_failing_job_raises_its_type_and_message_and_the_worker_stays(workers, tmp_path):
    with pytest.raises(WorkerJobError, match=r"fail failed: ValueError: bad input in x.csv"):
        workers.run("worker_jobs:fail", {"message": "bad input in x.csv"}, str(tmp_path / "f.log"), "fail")
    assert "Traceback" in (tmp_path / "f.log").read_text()
    workers.run("worker_jobs:write", {"path": str(tmp_path / "ok.txt"), "text": "after"}, None, "write")
    assert (tmp_path / "ok.txt").read_text().startswith("after")


def test_a_worker_that_dies_fails_only_its_job_and_is_replaced(workers, tmp_path):
    with pytest.raises(WorkerJobError, match=r"exited with code 7.*its log: .*d.log"):
        workers.run("worker_jobs:die", {"code": 7}, str(tmp_path / "d.log"), "die")
    workers.run("worker_jobs:write", {"path": str(tmp_path / "ok.txt"), "text": "again"}, None, "write")
    assert (tmp_path / "ok.txt").read_text().startswith("again")


def test_call_uses_the_workers_only_for_functions_importable_by_name(workers, monkeypatch, tmp_path):
    monkeypatch.setattr(jobs, "_workers", workers)
    jobs.call(worker_jobs.write, output={"path": str(tmp_path / "w.txt")}, params={"text": "via call"})
    assert int((tmp_path / "w.txt").read_text().split(" from ")[1]) != os.getpid()
    seen = []
    jobs.call(lambda value: seen.append(value), params={"value": 1})  # a lambda runs in this thread
    assert seen == [1]
    with pytest.raises(jobs.JobArgumentError, match=r"must match the function's keyword arguments"):
        jobs.call(worker_jobs.write, output={"path": "x"}, params={"txt": "typo"})


def _alive(pid: int) -> bool:
    stat = Path(f"/proc/{pid}/stat")
    try:
        return stat.read_text().split(") ")[1][0] not in "ZX"  # a zombie waits only for its reaper
    except FileNotFoundError:
        return False


def test_a_worker_ends_mid_job_when_the_run_that_started_it_is_killed(tmp_path):
    pid_file = tmp_path / "worker.pid"
    script = ("from prompt_reliability.base.workers import Workers\n"
              f"Workers(1).run('worker_jobs:sleep', {{'pid_file': {str(pid_file)!r}, 'seconds': 120}}, None, 'sleep')\n")
    run = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{TESTS.parent / 'src'}"})
    deadline = time.monotonic() + 60
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline and run.poll() is None
        time.sleep(0.05)
    worker = int(pid_file.read_text())
    run.send_signal(signal.SIGKILL)
    run.wait()
    deadline = time.monotonic() + 10
    while _alive(worker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(worker), "the worker outlived the killed run"


def test_model_steps_prefer_the_worker_that_already_imported_torch(workers, tmp_path):
    def pid_of(name, **extra):
        path = tmp_path / f"{name}.txt"
        workers.run("worker_jobs:write", {"path": str(path), "text": name}, None, name, **extra)
        return path.read_text().split(" from ")[1]

    model = pid_of("model", torch_threads=1)
    assert pid_of("table") == model  # the only worker so far, idle
    # two jobs at once start the second worker; afterwards each kind goes back to its own
    started = threading.Barrier(2)
    holder = threading.Thread(target=lambda: (started.wait(), workers.run(
        "worker_jobs:sleep", {"pid_file": str(tmp_path / "held.pid"), "seconds": 1.0}, None, "sleep", torch_threads=1)))
    holder.start()
    started.wait()
    while not (tmp_path / "held.pid").exists():
        time.sleep(0.02)
    other = pid_of("table2")
    holder.join()
    assert other != model and (tmp_path / "held.pid").read_text() == model
    assert pid_of("model2", torch_threads=1) == model and pid_of("table3") == other


def test_only_steps_that_load_a_model_import_torch_in_their_worker(monkeypatch, tmp_path):
    # simulated and imported scores go through call_model (for the GPU claim) but load no model:
    # importing torch there cost every simulated run ~2.5 s per worker
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setattr(jobs, "_workers", Workers(1))
    try:
        imported = tmp_path / "imported.txt"
        output = {"path": str(imported)}
        jobs.call_model("worker_jobs:report_torch", output=output, resources={"cpus_per_task": 1}, loads_model=False)
        assert imported.read_text() == "False"
        jobs.call_model("worker_jobs:report_torch", output=output, resources={"cpus_per_task": 1})
        assert imported.read_text() == "True"
    finally:
        jobs._workers.close()
