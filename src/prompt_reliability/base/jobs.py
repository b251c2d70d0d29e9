"""How a Snakemake rule calls the library: one package function per rule, named arguments.

A rule's named ``input``, ``output``, ``params`` and ``wildcards`` become the keyword arguments of
one package function, so the rule is the whole contract and there is no script to read between
them (docs/architecture.md, "Add an analysis")::

    rule reliability:
        input: matrix=..., lock=...
        output: table=...
        params: analysis=...
        log: ...
        run:
            call(reliability.write_reliability, input, output, params, wildcards, log)

Analysis, table and figure rules use ``run:``: they start no Python of their own (threads of the
Snakemake process, with the workflow profile's ``force-use-threads``), and each thread hands its
function to one of ``--cores`` long-lived worker processes (:mod:`base.workers`), so the jobs
use every core and pay the imports once per worker. Model steps without GPUs (:func:`call_model`)
go to the workers too, which keep torch imported; a step with GPUs, and GPU scoring through the
one adapter script ``workflow/scripts/call.py``, run in a process of their own.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

from prompt_reliability.base.logs import job_log
from prompt_reliability.base.workers import Workers, resolve

log = logging.getLogger("prompt_reliability")

# Fields of the Snakemake job that are passed on, in this order; a name may appear in only one.
FIELDS = ("input", "output", "params", "wildcards")


class JobArgumentError(TypeError):
    """A rule's named fields do not fit its function; the message names the rule field and the fix."""


def _plain(value: Any) -> Any:
    """Snakemake's path and list wrappers as plain ``str`` / ``list`` (other params unchanged)."""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list):  # a Namedlist of several files
        return [_plain(v) for v in value]
    return value


def job_arguments(accepts: Callable[[str], bool] = lambda name: True, **fields: Any) -> dict[str, Any]:
    """Keyword arguments from the named items of ``input``, ``output``, ``params`` and ``wildcards``.

    Every named input, output and param is passed; a wildcard only when ``accepts(name)`` (wildcards
    often only place files, and a function need not take them).
    """
    kwargs: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for field in FIELDS:
        group = fields.get(field)
        if group is None:
            continue
        for name, value in group.items():
            if field == "wildcards" and not accepts(name):
                continue
            if name in kwargs:
                raise JobArgumentError(f"the name {name!r} is used by both {origin[name]} and {field}; rename one of them in the rule")
            kwargs[name] = _plain(value)
            origin[name] = field
    return kwargs


# Worker processes that run :func:`call`'s jobs, once the workflow asks for them (use_workers).
_workers: Workers | None = None


def use_workers(size: int) -> None:
    """Run every later :func:`call` in one of ``size`` worker processes (see base.workers)."""
    global _workers
    _workers = Workers(size)


def _importable_name(function: Callable[..., Any]) -> str | None:
    """``"module:name"`` when a worker can import ``function`` by that name, else None."""
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or not name.isidentifier():
        return None
    return f"{module}:{name}" if getattr(sys.modules.get(module), name, None) is function else None


def call(function: Callable[..., Any], input: Any = None, output: Any = None, params: Any = None,
         wildcards: Any = None, log: Any = None, torch_threads: int | None = None) -> Any:
    """Run ``function`` with the job's named fields as keyword arguments, logging to the job's log file.

    With :func:`use_workers` in effect the job runs in a worker process (its return value is not
    passed back); otherwise, and for functions a worker cannot import by name, in this thread.
    """
    kwargs = job_arguments(_accepts(function), input=input, output=output, params=params, wildcards=wildcards)
    log_file = log[0] if log else None
    name = getattr(function, "__name__", str(function))
    _check_arguments(function, name, kwargs)
    importable = _importable_name(function)
    if _workers is not None and _workers.usable and importable:
        return _workers.run(importable, kwargs, log_file, name, torch_threads=torch_threads)
    with job_log(log_file, console_prefix=f"[{name}] "):
        return function(**kwargs)


def _check_arguments(function: Callable[..., Any], name: str, kwargs: Mapping[str, Any]) -> None:
    """Fail here, naming the rule fields, when ``kwargs`` do not fit ``function``'s signature."""
    if _signature_mismatch(function, kwargs):
        import inspect

        raise JobArgumentError(f"{name}: the rule's named input/output/params/wildcards must match the function's "
                               f"keyword arguments {sorted(inspect.signature(function).parameters)} (got {sorted(kwargs)})")


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


# Without workers (a library call), model steps run in this process one at a time: torch already
# uses every core for one model, and transformers' lazy imports and global settings (verbosity)
# are not safe across threads.
_MODEL_STEP = threading.Lock()


def needs_gpu(resources: Any) -> bool:
    """Whether a job's resources ask for a GPU (``gpu`` > 0, or a ``gres``)."""
    return int(resources.get("gpu", 0) or 0) > 0 or bool(resources.get("gres"))


def call_model(function: str, input: Any = None, output: Any = None, params: Any = None, wildcards: Any = None,
               log: Any = None, resources: Any = None, loads_model: bool = True) -> Any:
    """:func:`call` for a step that loads a model: in a worker process unless the job asks for GPUs.

    A job without GPUs (tiny models, CPU runs) runs in one of the workflow's worker processes (see
    :func:`use_workers`), which keep torch imported from one job to the next; steps run side by
    side as Snakemake schedules them, each with torch limited to the model's ``cpus_per_task``
    threads. Without workers (a library call) it runs in this process, one model step at a time
    (transformers' lazy imports and global settings are not thread-safe). ``loads_model=False``
    (simulated and imported scores, which only use this for the GPU claim below) neither imports
    torch in its worker nor waits for other model steps. A job with GPUs runs ``function``
    ("module:function") in a Python process of its own, which claims its GPUs
    (``CUDA_VISIBLE_DEVICES``) before anything loads CUDA.
    """
    if resources is None or not needs_gpu(resources):
        if _workers is not None and _workers.usable:
            threads = int((resources or {}).get("cpus_per_task", 1) or 1) if loads_model else None
            return call(resolve(function), input, output, params, wildcards, log, torch_threads=threads)
        with _MODEL_STEP if loads_model else contextlib.nullcontext():
            return call(resolve(function), input, output, params, wildcards, log)
    target = resolve(function)
    payload = {"function": function, "kwargs": job_arguments(_accepts(target), input=input, output=output, params=params,
                                                                  wildcards=wildcards),
               "log": log[0] if log else None, "gpus": int(resources.get("gpu", 0) or 0)}
    subprocess.run([sys.executable, "-m", "prompt_reliability.base.jobs", json.dumps(payload, default=str)], check=True)
    return None


def run_in_own_process(function: Callable[..., Any], kwargs: Mapping[str, Any], log_file: str | None, gpus: int) -> Any:
    """A job that is its own process: log (stderr included) to its file, claim its GPUs, then call."""
    from prompt_reliability.base.gpus import claim_gpus

    with job_log(log_file, console_prefix=f"[{function.__name__}] ", capture_stderr=True):
        claim_gpus(gpus)  # before anything loads CUDA; its messages go to the job's log
        return function(**kwargs)


def _main(argv: list[str]) -> None:
    """Entry point of :func:`call_model`'s own process."""
    payload = json.loads(argv[1])
    run_in_own_process(resolve(payload["function"]), payload["kwargs"], payload["log"], payload["gpus"])


def call_from_script(snakemake: Any) -> Any:
    """The body of ``workflow/scripts/call.py``: call ``params.function`` with the job's other fields.

    The job is its own process here, so its stderr (progress bars) goes to the log file too, and a
    job that asks for GPUs (the ``gpu`` resource) claims its own before anything loads CUDA.
    """
    params = {name: value for name, value in snakemake.params.items() if name != "function"}
    function = resolve(snakemake.params.function)
    kwargs = job_arguments(_accepts(function), input=snakemake.input, output=snakemake.output, params=params,
                           wildcards=snakemake.wildcards)
    return run_in_own_process(function, kwargs, snakemake.log[0] if snakemake.log else None,
                              int(snakemake.resources.get("gpu", 0) or 0))

if __name__ == "__main__":
    _main(sys.argv)
