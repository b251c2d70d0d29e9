"""The worker processes that run analysis, table and figure jobs (base.workers, jobs.call)."""

from __future__ import annotations

import json
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
from prompt_reliability.base.usage import read_usage
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
    with pytest.raises(jobs.JobArgumentError, match=r"write: the rule's named .* must match the keyword arguments of write"):
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
    # simulated and imported scores are CPU steps that load no model: importing torch there cost
    # every simulated run ~2.5 s per worker
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    monkeypatch.setattr(jobs, "_workers", Workers(1))
    try:
        imported = tmp_path / "imported.txt"
        jobs.call("worker_jobs:report_torch", output={"path": str(imported)})
        assert imported.read_text() == "False"
        jobs.call("worker_jobs:report_torch", output={"path": str(imported)}, torch_threads=1)
        assert imported.read_text() == "True"
    finally:
        jobs._workers.close()


def _usage(path: Path) -> dict[str, str]:
    return read_usage(path)


def test_a_model_step_worker_is_replaced_and_later_small_jobs_record_their_own_peaks(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pool = Workers(1, max_rss_mb=300, max_jobs=None)
    try:
        # a model step: torch + transformers imported, a tiny VLM built (the worker keeps ~500 MB)
        pool.run("prompt_reliability.scoring.tiny_models:write_tiny_model",
                 {"folder": str(tmp_path / "model"), "model": "tiny", "tiny": {"arch": "llava"}},
                 str(tmp_path / "model.log"), "write_tiny_model", torch_threads=1, usage_file=str(tmp_path / "model.tsv"))
        model = _usage(tmp_path / "model.tsv")
        assert model["runner"] == "worker" and float(model["max_rss_mb"]) > 300, model
        assert pool.replaced == 1
        assert f"worker process {model['pid']} replaced after this job" in (tmp_path / "model.log").read_text()
        # then many small jobs: a fresh worker runs them, and each records its own peak
        for i in range(12):
            pool.run("worker_jobs:allocate", {"path": str(tmp_path / f"{i}.pid"), "mb": 20}, None, "allocate",
                     usage_file=str(tmp_path / f"small{i}.tsv"))
        small = [_usage(tmp_path / f"small{i}.tsv") for i in range(12)]
    finally:
        pool.close()
    assert {u["pid"] for u in small} != {model["pid"]} and len({u["pid"] for u in small}) == 1
    assert [int(u["job_in_process"]) for u in small] == list(range(1, 13))
    peaks = [float(u["max_rss_mb"]) for u in small]
    assert max(peaks) < float(model["max_rss_mb"]) / 2, (peaks, model)
    # the first one's 20 MB show (later ones reuse the heap the allocator kept: their peak is their start)
    assert float(small[0]["max_rss_mb"]) >= float(small[0]["start_rss_mb"]) + 15, small[0]
    assert all(float(u["start_rss_mb"]) <= float(u["max_rss_mb"]) < 150 for u in small), small
    assert pool.replaced == 1  # the small jobs stay far below max_rss_mb


def test_a_small_job_after_a_large_one_in_the_same_worker_records_its_own_peak(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pool = Workers(1)  # no recycling: the same worker runs both jobs
    try:
        for name, mb in (("large", 400), ("small", 10)):
            pool.run("worker_jobs:allocate", {"path": str(tmp_path / f"{name}.pid"), "mb": mb}, None, name,
                     usage_file=str(tmp_path / f"{name}.tsv"))
    finally:
        pool.close()
    large, small = _usage(tmp_path / "large.tsv"), _usage(tmp_path / "small.tsv")
    assert large["pid"] == small["pid"] and small["job_in_process"] == "2"
    assert float(large["max_rss_mb"]) >= float(large["start_rss_mb"]) + 390
    # the kernel's high-water mark was reset before the small job: the large job's 400 MB are not in it
    assert float(small["max_rss_mb"]) < float(small["start_rss_mb"]) + 100 < float(large["max_rss_mb"])
    assert float(large["cpu_s"]) > 0 and float(large["s"]) > 0


def test_a_worker_is_replaced_after_max_jobs(monkeypatch, tmp_path):
    monkeypatch.setenv("PYTHONPATH", str(TESTS))
    pool = Workers(1, max_jobs=3)
    try:
        for i in range(7):
            pool.run("worker_jobs:write", {"path": str(tmp_path / f"{i}.txt"), "text": "x"}, None, "write",
                     usage_file=str(tmp_path / f"{i}.tsv"))
    finally:
        pool.close()
    pids = [(tmp_path / f"{i}.txt").read_text().split(" from ")[1] for i in range(7)]
    assert pids[0] == pids[2] != pids[3] == pids[5] != pids[6] and len(set(pids)) == 3
    assert [int(_usage(tmp_path / f"{i}.tsv")["job_in_process"]) for i in range(7)] == [1, 2, 3, 1, 2, 3, 1]
    assert pool.replaced == 2


def test_a_param_that_is_not_json_is_an_error_naming_the_rule_and_the_param(tmp_path):
    def run_block(params):  # what a rule's run: block looks like to call (Snakemake passes `rule`)
        rule = "my_rule"  # noqa: F841 - read by jobs.call from this frame
        jobs.call(worker_jobs.write, output={"path": str(tmp_path / "w.txt")}, params=params)

    with pytest.raises(jobs.JobArgumentError, match=r"rule my_rule: params 'text' is a PosixPath .*untracked\(path\)"):
        run_block({"text": Path("prompts")})
    with pytest.raises(jobs.JobArgumentError, match=r"rule my_rule: params 'text'\['k'\]\[1\] is a set"):
        run_block({"text": {"k": [1, {2}]}})
    assert not (tmp_path / "w.txt").exists()
    # a path marked untracked() is sent as a string, by rule
    run_block({"text": jobs.untracked("prompts")})
    assert (tmp_path / "w.txt").read_text().startswith("prompts from ")


def test_in_thread_and_worker_jobs_receive_the_same_json_values(workers, monkeypatch, tmp_path):
    params = {"value": ("a", 1), "mapping": {"k": (2.5, None)}, "folder": jobs.untracked("x/y")}
    jobs.call(worker_jobs.echo, output={"path": str(tmp_path / "thread.json")}, params=params)
    monkeypatch.setattr(jobs, "_workers", workers)
    jobs.call(worker_jobs.echo, output={"path": str(tmp_path / "worker.json")}, params=params)
    thread, worker = (json.loads((tmp_path / f"{w}.json").read_text()) for w in ("thread", "worker"))
    assert thread == worker == {"value": ["a", 1], "mapping": {"k": [2.5, None]}, "folder": "x/y",
                                "types": ["list", "dict", "str"]}


def test_a_job_in_a_thread_records_its_time_but_no_peak_of_its_own(tmp_path):
    log = {"log": str(tmp_path / "j.log"), "usage": str(tmp_path / "j.tsv")}
    jobs.call(worker_jobs.write, output={"path": str(tmp_path / "w.txt")}, params={"text": "t"}, log=log)
    usage = _usage(tmp_path / "j.tsv")
    assert usage["runner"] == "thread" and usage["max_rss_mb"] == "NA" and float(usage["s"]) >= 0
    assert "writing" in (tmp_path / "j.log").read_text()
