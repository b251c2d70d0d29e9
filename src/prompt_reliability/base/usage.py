"""Per-job figures (wall time, CPU time, peak memory), measured in the process that runs the job.

Every job writes one such file, the rule's named log ``usage`` (a ``.tsv`` under the run's benchmarks folder,
see ``job_logs`` in workflow/rules/common.smk). Snakemake's own ``benchmark:`` measures the
process it started and all its children: for a job handed to a worker process that is the whole
Snakemake run, every worker included, so its memory and CPU columns are not the job's.

Columns (one header line, one row):

- ``s``: wall-clock seconds of the job's function;
- ``cpu_s``: CPU seconds (user + system, every thread, and child processes that ended) of the
  process running it, during the job;
- ``max_rss_mb``: the peak resident memory of that process during the job. A worker resets the
  kernel's high-water mark (``/proc/self/clear_refs``) before each job, so an earlier, larger job
  of the same worker does not count; what the worker already held (imports, ~150 MB; torch and
  transformers, ~600 MB) does. ``NA`` where the job shares its process (called in a thread);
- ``start_rss_mb``: the process's resident memory when the job started;
- ``runner``: ``worker`` (a worker process, CPU steps), ``script`` (a process of its own through
  the adapter script, GPU steps) or ``thread`` (outside a workflow);
- ``pid`` and ``job_in_process``: the process and how many jobs it had run with this one (a
  worker replaced after ``workers.max_jobs`` jobs, or for memory, starts again at 1).
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from typing import Any

COLUMNS = ("s", "cpu_s", "max_rss_mb", "start_rss_mb", "runner", "pid", "job_in_process")
_STATUS = "/proc/self/status"


def _status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` of this process in MiB (None off Linux)."""
    try:
        with open(_STATUS) as status:
            found = re.search(rf"^{field}:\s+(\d+) kB", status.read(), flags=re.M)
    except OSError:
        return None
    return int(found.group(1)) / 1024 if found else None


def rss_mb() -> float | None:
    """This process's resident memory now, in MiB."""
    return _status_mb("VmRSS")


def reset_peak() -> bool:
    """Reset this process's peak resident memory to its current value (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
    except OSError:
        return False
    return True


def _cpu_seconds() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@contextlib.contextmanager
def measure(runner: str, job_in_process: int = 1, own_peak: bool = True) -> Iterator[dict[str, Any]]:
    """Measure the enclosed job; the dict is filled when the block ends (also when it raises).

    ``own_peak=False``: the process is shared with other work (a thread), so its peak is not the
    job's and is reported as NA; CPU time is then this thread's alone.
    """
    figures: dict[str, Any] = {"runner": runner, "pid": os.getpid(), "job_in_process": job_in_process}
    peak_resettable = own_peak and reset_peak()
    figures["start_rss_mb"] = rss_mb()
    started = time.perf_counter()
    cpu_started = _cpu_seconds() if own_peak else time.thread_time()
    try:
        yield figures
    finally:
        figures["s"] = time.perf_counter() - started
        figures["cpu_s"] = (_cpu_seconds() if own_peak else time.thread_time()) - cpu_started
        figures["max_rss_mb"] = _status_mb("VmHWM") if peak_resettable else None


def write_usage(path: str | os.PathLike[str] | None, figures: dict[str, Any]) -> None:
    """The usage file: a header line and one tab-separated row (``NA`` for what is unknown)."""
    if not path:
        return

    def text(value: Any) -> str:
        if value is None:
            return "NA"
        return f"{value:.3f}" if isinstance(value, float) else str(value)

    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as out:
        out.write("\t".join(COLUMNS) + "\n" + "\t".join(text(figures.get(c)) for c in COLUMNS) + "\n")


def read_usage(path: str | os.PathLike[str]) -> dict[str, str]:
    """A usage file as ``{column: text}``."""
    with open(path) as file:
        header, row = file.read().splitlines()[:2]
    return dict(zip(header.split("\t"), row.split("\t"), strict=True))
