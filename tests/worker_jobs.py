"""Jobs for the worker-process tests: the workers import this module by name (tests/ on PYTHONPATH)."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path


def write(*, path: str, text: str) -> None:
    print("stray output on stdout must not reach the protocol")
    logging.getLogger("prompt_reliability").info("writing %s", path)
    print("progress on stderr", file=sys.stderr)
    Path(path).write_text(f"{text} from {os.getpid()}")


def fail(*, message: str) -> None:
    raise ValueError(message)


def die(*, code: int) -> None:
    os._exit(code)


def sleep(*, pid_file: str, seconds: float) -> None:
    Path(pid_file).write_text(str(os.getpid()))
    import time

    time.sleep(seconds)


def report_torch(*, path: str) -> None:
    """Write whether this worker has imported torch (a model step imports it, other jobs must not)."""
    Path(path).write_text(str("torch" in sys.modules))


def allocate(*, path: str, mb: int, keep: bool = False) -> None:
    """Touch ``mb`` MiB (freed at the end unless ``keep``: a job that leaves memory behind)."""
    block = bytearray(mb * 2**20)
    block[:: 4096] = b"x" * len(block[:: 4096])  # resident, not just reserved
    if keep:
        _KEPT.append(block)
    Path(path).write_text(str(os.getpid()))


_KEPT: list[bytearray] = []



def echo(*, path: str, value, mapping, folder) -> None:
    """Write the arguments as received, with their types."""
    import json

    types = [type(v).__name__ for v in (value, mapping, folder)]
    Path(path).write_text(json.dumps({"value": value, "mapping": mapping, "folder": folder, "types": types}))
