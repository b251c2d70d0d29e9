"""Progress bars that read well both on a terminal and in a job's log file (see jobs.job_log)."""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("prompt_reliability")


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

    from prompt_reliability.s0_base.jobs import current_log_stream

    stream = current_log_stream() or sys.stderr
    tty = stream.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=stream if tty else _Lines(stream),
                mininterval=0.1 if tty else interval, maxinterval=interval, ascii=not tty, dynamic_ncols=tty,
                smoothing=0.1)
