"""Process set-up shared by the Snakefile and the tests."""

from __future__ import annotations

import os
import sys


def use_package_from(src_dir: str) -> None:
    """Make ``src_dir`` win imports here and in every job's script process.

    A workflow run with ``-s <repo>/Snakefile`` must use that checkout's package, not whatever
    version is installed in the environment; scripts inherit PYTHONPATH (also on SLURM).
    """
    if src_dir not in sys.path:
        sys.path.insert(0, src_dir)
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src_dir]
    os.environ["PYTHONPATH"] = os.pathsep.join([src_dir, *current])
