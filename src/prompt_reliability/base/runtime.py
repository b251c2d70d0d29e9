"""Process set-up shared by the Snakefile and the tests; content keys for Snakemake's params."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import inspect
import os
import sys
from functools import cache
from typing import Any

PACKAGE = "prompt_reliability"


def use_package_from(src_dir: str) -> None:
    """Make ``src_dir`` win imports here and in every job's script process.

    A workflow run with ``-s <repo>/Snakefile`` must use that checkout's package, not whatever
    version is installed in the environment; scripts inherit PYTHONPATH (also on SLURM).
    """
    if src_dir not in sys.path:
        sys.path.insert(0, src_dir)
    current = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != src_dir]
    os.environ["PYTHONPATH"] = os.pathsep.join([src_dir, *current])


class Untracked:
    """A rule parameter that Snakemake's params trigger ignores (it compares builtin values only).

    For where things are (paths, folders) or how work is split (batch and chunk sizes) when what
    determines the result is keyed otherwise. :func:`base.jobs.call` hands the function ``value``.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any):
        self.value = value

    def __repr__(self) -> str:  # inside a tracked param (a list or dict of them), the value does not count
        return "<untracked>"


def _module_name(item: object) -> str:
    if isinstance(item, str):
        return item
    module = inspect.getmodule(item)
    if module is None:
        raise TypeError(f"code_hash: {item!r} is not a module, function or module name with a source file")
    return module.__name__


def _package_file(name: str) -> str | None:
    """The source file of module ``name`` of this package, found without importing it."""
    base = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), *name.split(".")[1:])
    for path in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(path):
            return path
    return None


def _source_file(name: str) -> str:
    if name == PACKAGE or name.startswith(PACKAGE + "."):
        path = _package_file(name)
    else:
        spec = importlib.util.find_spec(name)
        path = spec.origin if spec is not None else None
    if not path or not path.endswith(".py"):
        raise TypeError(f"code_hash: {name!r} is not a module, function or module name with a source file")
    return path


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _package_imports(tree: ast.AST, name: str, is_package: bool) -> set[str]:
    """Modules of this package that ``name``'s code imports (absolute or relative, any depth)."""
    found: set[str] = set()
    base = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = base.split(".")
                module = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)  # `from pkg import module`
    modules = set()
    for module in found:
        if module == PACKAGE or module.startswith(PACKAGE + "."):
            while module and not _is_module(module):
                module = module.rpartition(".")[0]
            if module:
                modules.add(module)
    return modules


def _is_module(name: str) -> bool:
    return _package_file(name) is not None


# Parsing the package's syntax trees costs ~0.4 s per workflow start; their digests are kept on disk
# by the source's content (XDG_CACHE_HOME/prompt_reliability/code_digests.json), so a module is
# parsed again only after it changed. Any problem with the file only means parsing again.
_DISK: dict[str, list] | None = None
_DISK_NEW = False


def _disk_path() -> str:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(root, "prompt_reliability", "code_digests.json")


def _disk() -> dict[str, list]:
    global _DISK
    if _DISK is None:
        import json

        try:
            with open(_disk_path()) as handle:
                loaded = json.load(handle)
            _DISK = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            _DISK = {}
    return _DISK


def _save_disk() -> None:
    global _DISK_NEW
    if not _DISK_NEW:
        return
    import json
    import tempfile

    _DISK_NEW = False
    try:
        os.makedirs(os.path.dirname(_disk_path()), exist_ok=True)
        with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(_disk_path()), delete=False, suffix=".tmp") as handle:
            json.dump(_disk(), handle)
        os.replace(handle.name, _disk_path())
    except OSError:
        pass


def _module_digest(name: str) -> tuple[str, frozenset[str]]:
    """(hash of the module's code without comments, docstrings or layout, package modules it imports)."""
    global _DISK_NEW
    path = _source_file(name)
    with open(path, "rb") as handle:
        source = handle.read()
    key = f"{name}:{hashlib.sha256(source).hexdigest()}"
    known = _disk().get(key)
    if isinstance(known, list) and len(known) == 2:
        return known[0], frozenset(known[1])
    digest, imports = _source_digest(name, path, source)
    _disk()[key] = [digest, sorted(imports)]
    _DISK_NEW = True
    return digest, imports


@cache
def _source_digest(name: str, path: str, source: bytes) -> tuple[str, frozenset[str]]:
    tree = ast.parse(source, filename=path)
    imports = _package_imports(tree, name, os.path.basename(path) == "__init__.py")
    # ast.dump leaves out comments and, without attributes, line numbers: reformatting changes nothing
    text = ast.dump(_without_docstrings(tree), annotate_fields=False)
    return hashlib.sha256(text.encode()).hexdigest(), frozenset(imports - {name})


def package_closure(*code: object) -> list[str]:
    """The modules of ``code`` and every package module they import, directly or not (sorted)."""
    todo = [_module_name(item) for item in code]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_module_digest(name)[1] if name == PACKAGE or name.startswith(PACKAGE + ".") else ())
    return sorted(seen)


def code_hash(*code: object) -> str:
    """sha256 (16 hex) of the code of ``code`` (modules, functions or dotted module names) and of every
    module of this package that it imports, directly or not.

    For a rule's ``params`` (``code=code_hash(fragility.write_fragility)``): Snakemake tracks a ``run:``
    block's own text, not the package code it calls, so without it a fix in an analysis module
    re-runs nothing. The hash covers the code's syntax tree only: comments, docstrings, layout and
    the files' paths do not count, so another clone or a moved checkout gives the same value.
    Modules outside the package (numpy, polars) are versioned by the environment, not hashed.
    """
    digest = hashlib.sha256()
    for name in package_closure(*code):
        digest.update(name.encode() + b"\0" + _module_digest(name)[0].encode() + b"\0")
    _save_disk()
    return digest.hexdigest()[:16]


class Keyed(dict):
    """A dict param whose Snakemake key leaves out ``untracked`` entries.

    Snakemake's params trigger compares each param's ``repr``; this one's repr omits settings that
    change how a step runs but not its result (a model's ``batch_size`` and ``chunk_size``), so
    changing them re-runs nothing, while the step still receives them.
    """

    def __init__(self, value: dict, untracked: tuple[str, ...]):
        super().__init__(value)
        self.untracked = tuple(untracked)

    def __repr__(self) -> str:
        return repr({key: value for key, value in self.items() if key not in self.untracked})
