"""A job's log file (:func:`job_log`) and progress bars that read well both there and on a terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("prompt_reliability")

# The log stream of the job running in this thread (progress bars write there, see logs.progress).
_current = threading.local()


def current_log_stream():
    """The log file of the job running in this thread, or None outside a job."""
    return getattr(_current, "stream", None)


class _ThisThread(logging.Filter):
    """Pass only records made by the thread that created the filter (jobs run side by side in threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.thread = threading.get_ident()

    def filter(self, record: logging.LogRecord) -> bool:
        return record.thread == self.thread


@contextlib.contextmanager
def job_log(path: str | Path | None, console_prefix: str = "", capture_stderr: bool = False) -> Iterator[logging.Logger]:
    """Log this job's records to ``path``; warnings also to the console, prefixed with the job's name.

    Thread-safe: only records of the calling thread reach this job's file, so jobs running side by
    side in threads of one process keep separate logs. A failure's traceback goes to the file.
    ``capture_stderr`` (a job that has its process to itself: a worker's, the GPU adapter's) sends
    stderr, progress bars included, there too.
    """
    handlers: list[logging.Handler] = []
    stream = None
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        stream = open(path, "w", buffering=1)
        to_file = logging.StreamHandler(stream)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        handlers.append(to_file)
    to_console = logging.StreamHandler(sys.__stderr__)
    to_console.setLevel(logging.WARNING)
    to_console.setFormatter(logging.Formatter(f"%(levelname)s {console_prefix}%(message)s"))
    handlers.append(to_console)
    this_thread = _ThisThread()
    root = logging.getLogger()
    for handler in handlers:
        handler.addFilter(this_thread)
        root.addHandler(handler)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    saved_stderr = sys.stderr
    if capture_stderr and stream is not None:
        sys.stderr = stream
    _current.stream = stream
    try:
        yield log
    except Exception:
        log.exception("job failed")
        raise
    finally:
        _current.stream = None
        sys.stderr = saved_stderr
        for handler in handlers:
            root.removeHandler(handler)
        if stream is not None:
            stream.close()


class _Lines:
    """File wrapper for progress bars in log files: every refresh becomes its own line."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.replace("\r", "").strip()
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


def progress(total: int, desc: str, unit: str = "sample", initial: int = 0, interval: float = 10.0):
    """A tqdm bar showing rate and ETA, in the job's log file (or on stderr outside a job).

    On a terminal it redraws in place; in a log file it writes one line at most every ``interval`` seconds.
    """
    from tqdm import tqdm

    stream = current_log_stream() or sys.stderr
    tty = stream.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream if tty else _Lines(stream),
                mininterval=0.1 if tty else interval, maxinterval=interval, ascii=not tty, dynamic_ncols=tty,
                smoothing=0.1)
