"""The rule files hold no copied blocks: each piece of a rule's content is written once.

What it counts: every ``workflow/rules/*.smk`` file and the ``Snakefile``, read as lines with the white
space at both ends stripped. Left out as not meaningful: blank lines; comment lines (starting with
``#``); grammar-only lines, which are a bare directive keyword (``input:``, ``output:``, ``run:``, any
``name:`` alone on its line) or ``localrule: True``; lines of brackets and commas alone (``),``, ``]``);
and the standard argument lines of ``call(...)`` (``call(``, ``input,``, ``output,``, ``params,``,
``wildcards,``, ``log,``, ``None,``). The test fails when a run of :data:`RUN` consecutive meaningful
lines, identical after stripping, stands at two places (in one file or in two). Such a run is content
written twice (a CPU/GPU rule twin's outputs and logs, a figure's ``report(...)``): it belongs in one
spec or helper (``workflow/rules/common.smk``) that both places unpack or call.
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

from conftest import REPO

RUN = 6
RULE_FILES = sorted([*REPO.glob("workflow/rules/*.smk"), REPO / "Snakefile"])
DIRECTIVE = re.compile(r"^[A-Za-z_]\w*:$|^localrule: True$")
BRACKETS = re.compile(r"^[()\[\]{},]+$")
CALL_ARGUMENTS = {"call(", "input,", "output,", "params,", "wildcards,", "log,", "None,"}


def meaningful_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of each line of ``path`` that the module docstring counts."""
    found = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#") or DIRECTIVE.match(line) or BRACKETS.match(line):
            continue
        if line in CALL_ARGUMENTS:
            continue
        found.append((number, line))
    return found


def repeated_runs(paths: list[Path], run: int = RUN, root: Path = REPO) -> list[tuple[str, str, tuple[str, ...]]]:
    """``(first place, second place, lines)`` of every run of ``run`` meaningful lines found at two places."""
    places: dict[tuple[str, ...], list[str]] = defaultdict(list)
    for path in paths:
        lines = meaningful_lines(path)
        for start in range(len(lines) - run + 1):
            window = lines[start:start + run]
            places[tuple(text for _, text in window)].append(
                f"{path.relative_to(root)}:{window[0][0]}-{window[-1][0]}")
    return [(where[0], where[1], lines) for lines, where in places.items() if len(where) > 1]


def test_the_counter_finds_a_copied_block(tmp_path):
    # the same six lines under other directives and blank lines, in two files: found; five lines: not
    block = ["figure=report(", '"results/figures/x.png",', 'caption="../report/x.rst",', 'category="X",',
             "),", "log:", '**job_logs("figures", "x"),', "localrule: True", "params:", "code=code_of(f),"]
    first, second = tmp_path / "a.smk", tmp_path / "b.smk"
    first.write_text("rule a:\n    output:\n" + "\n".join(f"        {line}" for line in block) + "\n")
    second.write_text("rule b:\n\n    output:\n        # a comment\n" + "\n".join(block) + "\n")
    assert len(repeated_runs([first, second], root=tmp_path)) == 1  # the six content lines, `figure=report(` on
    assert repeated_runs([first, second], run=7, root=tmp_path) == []  # `rule a:` / `rule b:` differ


def test_no_run_of_six_meaningful_lines_stands_twice_in_the_rule_files():
    copies = repeated_runs(RULE_FILES)
    shown = "\n".join(f"{a} ~ {b}:\n    " + "\n    ".join(lines) for a, b, lines in copies[:10])
    assert not copies, f"{len(copies)} runs of {RUN} meaningful lines stand twice (write them once, e.g. a " \
                       f"spec or helper in common.smk):\n{shown}"
