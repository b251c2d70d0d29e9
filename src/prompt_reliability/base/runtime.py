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


def code_hash(*code: object) -> str:
    """sha256 (16 hex) of the source files of ``code``: modules, functions or dotted module names.

    For a rule's ``params`` (``code=code_hash(fragility)``): Snakemake tracks a ``run:`` block's own
    text and a script's file, not the package code they call, so without it a change in the
    analysis module re-runs nothing. The hash covers file contents only (never their paths), so
    another clone or a moved checkout of the same commit gives the same value.
    """
    import hashlib
    import importlib
    import inspect

    digest = hashlib.sha256()
    files = []
    for item in code:
        module = importlib.import_module(item) if isinstance(item, str) else inspect.getmodule(item)
        if module is None or not getattr(module, "__file__", None):
            raise TypeError(f"code_hash: {item!r} is not a module, function or module name with a source file")
        files.append((module.__name__, module.__file__))
    for name, file in sorted(set(files)):
        with open(file, "rb") as handle:
            digest.update(name.encode() + b"\0" + handle.read() + b"\0")
    return digest.hexdigest()[:16]
