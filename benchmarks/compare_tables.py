"""Compare the tables of two runs: byte-identical CSVs, else the largest numeric difference per table.

    .venv/bin/python benchmarks/compare_tables.py RUN_A/results/tables RUN_B/results/tables

Used to show that a refactor leaves every number as it was. Prints one line per CSV present in
both runs (``same`` / ``numeric <max abs diff>`` / ``differs``), then the CSVs only one run has.
Exit status 0 when every shared table is byte-identical.
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl


def compare(a: Path, b: Path) -> str:
    if a.read_bytes() == b.read_bytes():
        return "same"
    left, right = pl.read_csv(a, infer_schema_length=None), pl.read_csv(b, infer_schema_length=None)
    if left.columns != right.columns or left.height != right.height:
        return f"differs (columns {left.columns} vs {right.columns}, rows {left.height} vs {right.height})"
    worst = 0.0
    for column in left.columns:
        if left[column].dtype.is_numeric() and right[column].dtype.is_numeric():
            diff = (left[column].cast(pl.Float64) - right[column].cast(pl.Float64)).abs().max()
            worst = max(worst, float(diff or 0.0))
        elif left[column].to_list() != right[column].to_list():
            return f"differs in column {column!r}"
    return f"numeric {worst:.3g}"


def main(a: str, b: str) -> int:
    first, second = Path(a), Path(b)
    names = sorted({p.name for p in first.glob("*.csv")} & {p.name for p in second.glob("*.csv")})
    results = {name: compare(first / name, second / name) for name in names}
    for name, result in results.items():
        print(f"{name:<32} {result}")
    for only, other in ((first, second), (second, first)):
        extra = sorted({p.name for p in only.glob("*.csv")} - {p.name for p in other.glob("*.csv")})
        if extra:
            print(f"only in {only}: {', '.join(extra)}")
    same = sum(r == "same" for r in results.values())
    print(f"{same}/{len(results)} shared tables byte-identical")
    return 0 if same == len(results) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
