"""Job logging for the Snakemake scripts: everything a job prints goes to its log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

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
    """A tqdm bar on stderr (the job log under :func:`log_to`) showing rate and ETA.

    On a terminal it redraws in place; in a log file it writes one line at most every ``interval`` seconds.
    """
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, file=sys.stderr if tty else _Lines(sys.stderr),
                mininterval=0.1 if tty else interval, maxinterval=interval, ascii=not tty, dynamic_ncols=tty,
                smoothing=0.1)


@contextlib.contextmanager
def log_to(path: str | Path) -> Iterator[logging.Logger]:
    """Send logging and stderr (progress bars, warnings) to ``path``; log the traceback of a failure.

    Warnings (e.g. a temperature at its bound, separable Platt data) also reach the console, with
    the log file's name, since they change how a result should be read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        console = logging.StreamHandler(sys.__stderr__)
        console.setLevel(logging.WARNING)
        console.setFormatter(logging.Formatter(f"%(levelname)s [{path}] %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.addHandler(console)
        root.setLevel(logging.INFO)
        saved_stderr = sys.stderr
        sys.stderr = stream
        try:
            yield log
        except Exception:
            log.exception("job failed")
            raise
        finally:
            sys.stderr = saved_stderr
            root.removeHandler(handler)
            root.removeHandler(console)
