"""Give each scoring job on a multi-GPU workstation GPUs of its own.

``--resources gpu=N`` (the workstation profile) caps how many GPUs concurrent scoring jobs request
in total, but Snakemake does not say *which* GPUs a job may use: every job would see all of them
and put its model on the first. :func:`claim_gpus` picks free GPUs for the job and sets
``CUDA_VISIBLE_DEVICES`` before any CUDA library is loaded. Under SLURM the scheduler has already
done this for the job's allocation, and the function leaves it alone.

A GPU is held through an exclusive ``flock`` on ``<lock_dir>/gpu<id>.lock``: the kernel releases it
when the process ends, however it ends (even SIGKILL), so no stale claim survives a crashed job.
"""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

# Lock files stay open (and locked) for the life of the process.
_held: list = []


def default_lock_dir() -> Path:
    """Machine-wide per user, so that separate runs (work directories) on one box coordinate too."""
    return Path(os.environ.get("PR_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"prompt-reliability-gpus-{os.getuid()}")


def visible_gpus() -> list[str]:
    """GPU ids this process may use: ``CUDA_VISIBLE_DEVICES`` if set, else every GPU nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def claim_gpus(n: int, lock_dir: str | Path | None = None, *, poll_seconds: float = 2.0) -> list[str] | None:
    """Claim ``n`` GPUs for the rest of this process and point ``CUDA_VISIBLE_DEVICES`` at them.

    Returns the claimed ids, or ``None`` when there is nothing to do: ``n`` is 0, the job runs
    inside a SLURM allocation (SLURM set ``CUDA_VISIBLE_DEVICES`` itself), or no GPU is visible (the
    backend then runs on the CPU). With fewer GPUs than ``n``, the job gets all of them. While other
    jobs hold the GPUs (more ``--resources gpu`` than GPUs), waits for them. Call it before
    importing torch.
    """
    if n <= 0 or os.environ.get("SLURM_JOB_ID"):
        return None
    pool = visible_gpus()
    if not pool:
        log.warning("the job asks for %d GPU(s) but none is visible: it runs without", n)
        return None
    if len(pool) < n:
        log.warning("the job asks for %d GPU(s) but only %d are visible (%s): it gets those", n, len(pool), ",".join(pool))
        n = len(pool)
    lock_dir = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    lock_dir.mkdir(parents=True, exist_ok=True)
    waited = False
    while True:
        claimed = []
        for gpu in pool:
            handle = open(lock_dir / f"gpu{gpu}.lock", "a")  # "a": create, never truncate
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            claimed.append((gpu, handle))
            if len(claimed) == n:
                break
        if len(claimed) == n:
            _held.extend(handle for _, handle in claimed)
            ids = [gpu for gpu, _ in claimed]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            log.info("using GPU(s) %s", ",".join(ids))
            return ids
        # Give back a partial claim before waiting: no job holds some GPUs while waiting for more,
        # so two jobs can never wait on each other.
        for _, handle in claimed:
            handle.close()
        if not waited:
            log.info("waiting for %d free GPU(s) of %s (held by other jobs)", n, ",".join(pool))
            waited = True
        time.sleep(poll_seconds)
