"""How a Snakemake rule calls the library: one package function per rule, named arguments.

A rule's named ``input``, ``output``, ``params`` and ``wildcards`` become the keyword arguments of
one package function, so the rule is the whole contract and there is no script to read between
them (docs/architecture.md, "How rules call the library"). A job runs one of two ways:

- **CPU steps** (``run:`` + :func:`call`): analyses, tables, figures, simulated and imported
  scoring, and model steps without GPUs. The job is a thread of the Snakemake process
  (``force-use-threads``) that hands its function to one of ``--cores`` long-lived worker processes
  (:mod:`base.workers`), so jobs use every core and pay the imports once per worker::

      run:
          call(reliability.write_reliability, input, output, params, wildcards, log)

- **GPU steps** (``script:`` the adapter ``workflow/scripts/call.py`` + ``conda:``): model steps
  whose resources ask for GPUs run in a process and environment of their own, which claims its
  GPUs before CUDA loads (:func:`call_from_script`; the function is named in ``params.function``).

Either way the job's fields travel as JSON (:func:`job_arguments`: a value that is not JSON is an
error naming the rule and the param), the job logs to its ``log`` file and writes its wall time,
CPU time and peak memory, measured in the process that ran it, to its ``usage`` file
(:mod:`base.usage`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import pathlib
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from prompt_reliability.base.logs import job_log
from prompt_reliability.base.runtime import Untracked
from prompt_reliability.base.usage import measure, write_usage
from prompt_reliability.base.workers import Workers, resolve

log = logging.getLogger("prompt_reliability")

# Fields of the Snakemake job that are passed on, in this order; a name may appear in only one.
FIELDS = ("input", "output", "params", "wildcards")
# Params that key a job for Snakemake's params trigger and are not the function's arguments:
# ``code`` (code_hash of the package code a step calls), ``version`` (a contract's explicit version)
# and ``depends_on`` (content keys of the data it reads; see workflow/rules/common.smk).
KEY_PARAMS = ("code", "version", "depends_on")


class JobArgumentError(TypeError):
    """A rule's named fields do not fit its function; the message names the rule field and the fix."""


class UntrackedPath(type(pathlib.Path())):  # PosixPath on POSIX
    """A path param that Snakemake's params check ignores, sent to the job as a string.

    Snakemake compares only builtin values between runs; a ``pathlib.Path`` is not one. Rules use
    it (``untracked(path)`` in workflow/rules/common.smk) for where files are when what they hold is
    tracked otherwise (a prompt folder whose texts are hashed into another param). Any other value
    that is not JSON is an error (:func:`job_arguments`), so a path cannot reach a job by accident.
    """


def untracked(path: str | pathlib.Path) -> UntrackedPath:
    return UntrackedPath(path)


class UntrackedSettings(Mapping):
    """Settings that Snakemake's params check ignores (it compares only builtin values; this Mapping
    is not a dict), sent to the job as a plain dict.

    For how a step reaches a service, never what it computes: a served model's URL, key variable,
    concurrency, timeout and retries (``served_connection`` in workflow/rules/common.smk). Moving a
    server re-runs nothing; what a request contains stays a tracked param.
    """

    def __init__(self, values: Mapping[str, Any]):
        self._values = dict(values)

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self):
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"UntrackedSettings({self._values!r})"


def untracked_settings(values: Mapping[str, Any]) -> UntrackedSettings:
    return UntrackedSettings(values)


_JSON_SCALARS = (str, int, float, bool, type(None))


def _json_value(value: Any, where: str) -> Any:
    """``value`` as plain JSON: Snakemake's path strings and named lists as str / list, an
    :class:`UntrackedPath` as str; anything else that JSON cannot carry is an error naming ``where``."""
    if isinstance(value, UntrackedPath):
        return str(value)
    if isinstance(value, Untracked):  # base.runtime: a wrapped value Snakemake's params check ignores
        return _json_value(value.value, where)
    if isinstance(value, _JSON_SCALARS):
        return str(value) if isinstance(value, str) else value  # str subclasses: Snakemake's IOFile
    if isinstance(value, (list, tuple)):  # a Namedlist of several files is a list
        return [_json_value(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        bad = [k for k in value if not isinstance(k, str)]
        if bad:
            raise JobArgumentError(f"{where} has a key {bad[0]!r} of type {type(bad[0]).__name__}; JSON keys are strings")
        return {k: _json_value(v, f"{where}[{k!r}]") for k, v in value.items()}
    hint = " (a path Snakemake must not track: untracked(path) in the rule)" if isinstance(value, pathlib.PurePath) else ""
    raise JobArgumentError(f"{where} is a {type(value).__name__} ({value!r}), which a job cannot receive: jobs get "
                           f"JSON values (str, int, float, bool, None, lists and dicts of them){hint}")


def job_arguments(accepts: Callable[[str], bool] = lambda name: True, job: str = "job", **fields: Any) -> dict[str, Any]:
    """Keyword arguments, as plain JSON, from the named items of ``input``, ``output``, ``params`` and ``wildcards``.

    Every named input, output and param is passed; a wildcard only when ``accepts(name)`` (wildcards
    often only place files, and a function need not take them). A value that is not JSON raises
    :class:`JobArgumentError` naming the ``job`` (``"rule <name>"``) and the field, in every way a job runs.
    """
    kwargs: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field in FIELDS:
        group = fields.get(field)
        if group is None:
            continue
        for name, value in group.items():
            if field == "wildcards" and not accepts(name) or field == "params" and name in KEY_PARAMS:
                continue
            if name in kwargs:
                raise JobArgumentError(f"{job}: the name {name!r} is used by both {origin[name]} and {field}; "
                                       "rename one of them in the rule")
            kwargs[name] = _json_value(value, f"{job}: {field} {name!r}")
            origin[name] = field
    return kwargs


# Worker processes that run :func:`call`'s jobs, once the workflow asks for them (use_workers).
_workers: Workers | None = None


def use_workers(size: int, max_rss_mb: float | None = None, max_jobs: int | None = None) -> None:
    """Run every later :func:`call` in one of ``size`` worker processes (see base.workers)."""
    global _workers
    _workers = Workers(size, max_rss_mb=max_rss_mb, max_jobs=max_jobs)


def _function_name(function: Callable[..., Any] | str) -> str | None:
    """``"module:name"`` when a worker can import ``function`` by that name, else None."""
    if isinstance(function, str):
        return function
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or not name.isidentifier():
        return None
    return f"{module}:{name}" if getattr(sys.modules.get(module), name, None) is function else None


def _calling_rule(default: str) -> str:
    """``"rule <name>"`` of the ``run:`` block that called :func:`call` (Snakemake passes the name in as
    ``rule``), else ``default`` (a library call)."""
    rule = sys._getframe(2).f_locals.get("rule")
    return f"rule {rule}" if isinstance(rule, str) else default


def _named(log: Any, name: str, position: int | None = None) -> str | None:
    """The log file named ``name`` (or at ``position``) of a rule's ``log`` field."""
    if not log:
        return None
    if hasattr(log, "get") and log.get(name) is not None:
        return str(log.get(name))
    return str(log[position]) if position is not None and len(log) > position else None


# Without workers (a library call), model steps run in this process one at a time: torch already
# uses every core for one model, and transformers' lazy imports and global settings (verbosity)
# are not safe across threads.
_MODEL_STEP = threading.Lock()


def call(function: Callable[..., Any] | str, input: Any = None, output: Any = None, params: Any = None,
         wildcards: Any = None, log: Any = None, torch_threads: int | None = None) -> None:
    """A CPU step: run ``function`` with the job's named fields as keyword arguments.

    ``function`` is the function itself or ``"module:function"`` (model steps: the Snakemake
    process then never imports torch). ``log``: the rule's ``log`` field, whose entry ``log`` (or
    first entry) receives the job's records and whose entry ``usage`` its figures (base.usage).
    ``torch_threads``: the job loads a model (``resources.cpus_per_task`` threads for torch); it
    goes to a worker that has imported torch before, when one is idle.

    With :func:`use_workers` in effect the job runs in a worker process; otherwise (a library
    call, a test) in this thread, with the same JSON arguments.
    """
    target = resolve(function) if isinstance(function, str) else function
    name = getattr(target, "__name__", str(function))
    job = _calling_rule(default=name)
    kwargs = job_arguments(_accepts(target), job=job, input=input, output=output, params=params, wildcards=wildcards)
    _check_arguments(target, job, kwargs)
    log_file, usage_file = _named(log, "log", 0), _named(log, "usage")
    importable = _function_name(function)
    if _workers is not None and _workers.usable and importable:
        _workers.run(importable, kwargs, log_file, name, torch_threads=torch_threads, usage_file=usage_file)
        return
    kwargs = json.loads(json.dumps(kwargs))  # what a worker would receive (tuples as lists, ...)
    figures: dict[str, Any] = {}
    try:
        with (_MODEL_STEP if torch_threads else contextlib.nullcontext()), \
                measure("thread", own_peak=False) as figures, job_log(log_file, console_prefix=f"[{name}] "):
            target(**kwargs)
    finally:
        write_usage(usage_file, figures)


def _check_arguments(function: Callable[..., Any], job: str, kwargs: Mapping[str, Any]) -> None:
    """Fail here, naming the rule fields, when ``kwargs`` do not fit ``function``'s signature."""
    if _signature_mismatch(function, kwargs):
        import inspect

        raise JobArgumentError(f"{job}: the rule's named input/output/params/wildcards must match the keyword "
                               f"arguments of {getattr(function, '__name__', function)} "
                               f"{sorted(inspect.signature(function).parameters)} (got {sorted(kwargs)})")


def _accepts(function: Callable[..., Any]) -> Callable[[str], bool]:
    import inspect

    parameters = inspect.signature(function).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return lambda name: True
    return lambda name: name in parameters


def _signature_mismatch(function: Callable[..., Any], kwargs: Mapping[str, Any]) -> bool:
    import inspect

    try:
        inspect.signature(function).bind(**kwargs)
    except TypeError:
        return True
    return False


def call_from_script(snakemake: Any) -> None:
    """A GPU step, the body of ``workflow/scripts/call.py``: call ``params.function`` with the job's other fields.

    The job is a process of its own here (in the rule's ``conda:`` environment), so its stderr
    (progress bars) goes to the log file too, and it claims its GPUs (the ``gpu`` resource) before
    anything loads CUDA. Its figures (base.usage) are this process's, from after start-up.
    """
    from prompt_reliability.base.gpus import claim_gpus

    params = {name: value for name, value in snakemake.params.items() if name != "function"}
    function = resolve(snakemake.params.function)
    job = f"rule {snakemake.rule}"
    kwargs = job_arguments(_accepts(function), job=job, input=snakemake.input, output=snakemake.output, params=params,
                           wildcards=snakemake.wildcards)
    _check_arguments(function, job, kwargs)
    kwargs = json.loads(json.dumps(kwargs))
    figures: dict[str, Any] = {}
    try:
        with measure("script") as figures, job_log(_named(snakemake.log, "log", 0),
                                                   console_prefix=f"[{function.__name__}] ", capture_stderr=True):
            claim_gpus(int(snakemake.resources.get("gpu", 0) or 0))  # before anything loads CUDA
            function(**kwargs)
    finally:
        write_usage(_named(snakemake.log, "usage"), figures)
