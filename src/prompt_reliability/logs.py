"""Job logging for the Snakemake scripts: everything a job prints goes to its log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("prompt_reliability")


@contextlib.contextmanager
def log_to(path: str | Path) -> Iterator[logging.Logger]:
    """Send logging and stderr (progress bars, warnings) to ``path``; log the traceback of a failure."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", buffering=1) as stream:
        handler = logging.StreamHandler(stream)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S"))
        root = logging.getLogger()
        root.addHandler(handler)
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
