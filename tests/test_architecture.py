"""The package's shape: stages import only down the pipeline, no import cycles, no workflow paths."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "src" / "prompt_reliability"
STAGES = ["base", "data", "scoring", "analysis", "report"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def package_imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (anywhere in the file, lazy imports included)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    here = module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("prompt_reliability"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if not base.startswith("prompt_reliability"):
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return found


def _is_module(name: str) -> bool:
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def stage_of(module: str) -> int | None:
    parts = module.split(".")
    return STAGES.index(parts[1]) if len(parts) > 1 and parts[1] in STAGES else None


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
GRAPH = {name: package_imports(path) for name, path in MODULES.items()}


def test_every_module_lives_in_a_stage():
    loose = [name for name in MODULES if name != "prompt_reliability" and stage_of(name) is None]
    assert not loose, f"modules outside the stage folders {STAGES}: {loose}"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down_the_stages(module):
    here = stage_of(module)
    upward = [m for m in GRAPH[module] if here is not None and (stage_of(m) or 0) > here]
    assert not upward, f"{module} (stage {STAGES[here]}) imports later stages: {sorted(upward)}"


def test_no_import_cycles():
    def cycle_from(start: str) -> list[str] | None:
        stack = [(start, [start])]
        seen = set()
        while stack:
            node, path = stack.pop()
            for target in GRAPH.get(node, ()):
                if target == start:
                    return path + [start]
                if target in GRAPH and target not in seen:
                    seen.add(target)
                    stack.append((target, path + [target]))
        return None

    cycles = [c for c in (cycle_from(m) for m in GRAPH) if c]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checks_see_real_imports():
    # guards the two tests above against parsing nothing
    assert "prompt_reliability.analysis.lockfile" in GRAPH["prompt_reliability.analysis.calibration"]
    assert "prompt_reliability.base.io" in GRAPH["prompt_reliability.scoring.cache"]


def test_no_workflow_paths_in_the_package():
    literal = re.compile(r"\bresults/")
    hits = [f"{p.relative_to(REPO)}:{i}" for p in PACKAGE.rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if literal.search(line)]
    assert not hits, f"'results/' literals in src/ (paths must come from the rules): {hits}"


def test_analyses_run_without_scikit_learn_or_scipy_stats():
    # Every worker pays for what its jobs import (~2 s for scikit-learn, which pulls scipy.stats);
    # the package computes its metrics, ranks and isotonic fits itself. A fresh interpreter runs the
    # lock-split fits and one pair's metrics, then lists what got imported.
    code = """
import sys
import numpy as np
from prompt_reliability.analysis import aggregation, calibration, metric_stability, metrics, reliability
rng = np.random.default_rng(0)
y, p = rng.integers(0, 2, 200), rng.random(200)
calibration.fit_calibrators({"selected": p, "mean": p}, y, score_names=["selected", "mean"])
metrics.reliability_metrics(y, p)
metrics.average_ranks(rng.random((4, 6)), axis=1)
print(sorted({m.split(".")[0] + "." + m.split(".")[1] for m in sys.modules if m.startswith(("sklearn.", "scipy.stats"))}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out
