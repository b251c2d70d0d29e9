"""REPORT.md: what a user reads after a run.

What was run (models, datasets with split sizes and unsafe rates, prompt families with their hashes,
the lock split, seeds, package versions, the config hash), the claims check, the headline tables in
the paper's shape (each captioned with the paper table it corresponds to), the sections of the
registered analyses (operating points, self-assessment, safety calibration: ``report/registry.py``)
and links to every figure and table. Built only from the run's Parquet tables, manifests and locks
(never from CSV).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl

from prompt_reliability.analysis.claims import VERDICTS
from prompt_reliability.base import io, tables
from prompt_reliability.report.registry import ANALYSES, ReportInputs
from prompt_reliability.report.trust_summary import first_screen
from prompt_reliability.scoring.cache import package_versions


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 (16 hex) of the validated config, keys sorted."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _md(frame: pl.DataFrame) -> str:
    return tables.to_markdown(frame)


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def model_row(name: str, cfg: Mapping[str, Any], provenance: Mapping[str, Any]) -> dict[str, str]:
    """One model: what the score cache recorded (resolved revision, dtype, fingerprint), else the config."""
    tiny = cfg.get("tiny")
    path = provenance.get("model_id") or cfg.get("path") or (f"tiny {_text(tiny)}" if tiny else "")
    revision = provenance.get("commit_hash") or provenance.get("revision") or cfg.get("revision")
    return {"model": name, "backend": _text(provenance.get("backend") or cfg.get("backend")), "path": _text(path),
            "revision": _text(revision), "dtype": _text(provenance.get("dtype") or cfg.get("dtype")),
            "fingerprint": _text(provenance.get("model_fingerprint"))}


def run_section(*, models: Mapping[str, Mapping[str, Any]], manifests: Mapping[str, pl.DataFrame],
                locks: Sequence[Mapping[str, Any]], prompts: Mapping[str, Mapping[str, Any]],
                lock_split: Mapping[str, str], evaluate: Sequence[Mapping[str, Any]], seeds: Mapping[str, Any],
                config_digest: str, versions: Mapping[str, str],
                provenance: Mapping[str, Mapping[str, Any]] | None = None) -> str:
    model_rows = [model_row(name, cfg, (provenance or {}).get(name, {})) for name, cfg in models.items()]
    roles = {(lock_split["dataset"], lock_split["split"]): "lock"}
    for pair in evaluate:
        roles[(pair["dataset"], pair["split"])] = "evaluate" + (" + lock" if roles.get(
            (pair["dataset"], pair["split"])) == "lock" else "")
    data_rows = []
    for name, manifest in manifests.items():
        per_split = manifest.group_by("split", maintain_order=True).agg(
            pl.len().alias("n"), pl.col("label").cast(pl.Float64).mean().alias("unsafe_rate"))
        for row in per_split.iter_rows(named=True):
            data_rows.append({"dataset": name, "split": row["split"], "n": row["n"], "unsafe_rate": row["unsafe_rate"],
                              "role": roles.get((name, row["split"]), "")})
    prompt_rows = [{"family": f, "prompts": ", ".join(info["prompt_ids"]), "text_hash": info["hash"]}
                   for f, info in prompts.items()]
    lock_rows = [{"model": lk["model"], "selected_prompt": lk["selected_prompt"], "random_prompt": lk["random_prompt"],
                  **({"family_selected": ", ".join(f"{f}: {p}" for f, p in lk["family_selected"].items())}
                     if "family_selected" in lk else {}),
                  "lock_n": lk.get("n"), "lock_unsafe_rate": lk.get("unsafe_rate")} for lk in locks]
    seeds_text = ", ".join(f"{k} = {v}" for k, v in seeds.items())
    versions_text = ", ".join(f"{k} {v}" for k, v in versions.items())
    return tables.markdown_section(
        "What was run",
        "### Models\n\n" + _md(pl.DataFrame(model_rows)),
        "### Datasets\n\n" + (_md(pl.DataFrame(data_rows)) if data_rows else "No manifests.\n"),
        "### Prompt families\n\n" + _md(pl.DataFrame(prompt_rows)),
        f"### Lock split\n\nEvery choice is made on `{lock_split['dataset']}` / `{lock_split['split']}` and applied "
        "unchanged to the evaluation pairs.\n\n" + (_md(pl.DataFrame(lock_rows)) if lock_rows else ""),
        f"Seeds: {seeds_text}. Package versions: {versions_text}. Config hash: `{config_digest}`.\n",
    )


def _verdict_counts(frame: pl.DataFrame) -> str:
    counts = dict(frame.group_by("verdict").len().iter_rows())
    return ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts.get(v))


def claims_section(claims: pl.DataFrame | None) -> str:
    if claims is None:
        return tables.markdown_section("Claims check", "The claims table was not produced in this run.")
    papers = list(dict.fromkeys(claims["paper_name"].to_list()))
    # a paper none of whose claims this run can test (its method is off in this config) gets one line, not a table
    untested = [p for p in papers
                if (claims.filter(pl.col("paper_name") == p)["verdict"] == "not testable").all()]
    if len(untested) < len(papers):
        papers = [p for p in papers if p not in untested]
        skipped = claims.filter(pl.col("paper_name").is_in(untested))
        claims = claims.filter(pl.col("paper_name").is_in(papers))
    else:
        untested, skipped = [], claims.clear()
    summary = f"Of {claims.height} claims checked on this run, {_verdict_counts(claims)}"
    if len(papers) > 1:
        per_paper = "; ".join(f"{p}: {_verdict_counts(claims.filter(pl.col('paper_name') == p))}" for p in papers)
        summary += f" ({per_paper})"
    summary += (". A count claim k/n is *contradicted* when k/n <= 1/2 and *weaker* when a one-sided Boschloo exact "
                "test finds this run's rate below the paper's (p < 0.05, column `p_value`); a \"best\" claim is "
                "*weaker* when its row is not this run's best but beats at least half of its rivals (rule: "
                "`workflow/claims/README.md`). Table `tables/claims.csv`.\n")
    if untested:
        counts = ", ".join(f"{p} ({skipped.filter(pl.col('paper_name') == p).height})" for p in untested)
        summary += (f"\nNot run in this config, so not counted: the claims of {counts}; their tables are not produced "
                    "here (`tables/claims.csv` lists them as not testable).\n")
    shown = claims.select("claim", "this_run", "pairs", "paper", "verdict", "p_value", "paper_table", "note")
    blocks = []
    for paper in papers:
        rows = shown.filter(claims["paper_name"] == paper)
        blocks.append((f"### {paper}\n\n" if len(papers) > 1 else "") + _md(rows))
    return tables.markdown_section("Claims check", summary, *blocks)


def headline_section(frames: Mapping[str, pl.DataFrame]) -> str:
    """The registry's headline tables, in registry order (``report/registry.py``)."""
    blocks = []
    for name, analysis in ANALYSES.items():
        headline = analysis.headline
        if headline is None:
            continue
        if headline.paper:
            blocks.append(f"### {name} ({headline.paper})\n\n*{headline.caption}* Corresponds to {headline.paper}; "
                          f"full table `tables/{name}.csv`.\n")
        else:
            blocks.append(f"### {name}\n\n*{headline.caption}* Full table `tables/{name}.csv`.\n")
        frame = frames.get(name)
        blocks.append(_md(headline.shape(frame)) if frame is not None else "Not produced in this run.\n")
    return tables.markdown_section("Headline tables", *blocks)


def registered_sections(inputs: ReportInputs) -> list[str]:
    """The registry's REPORT.md sections after the headline tables, in registry order (empty ones left out)."""
    return [text for a in ANALYSES.values() if a.section is not None and (text := a.section(inputs))]


def links_section(title: str, paths: Sequence[str], base: str) -> str:
    if not paths:
        return ""
    items = [f"- [{os.path.relpath(p, base)}]({os.path.relpath(p, base)})" for p in paths]
    return tables.markdown_section(title, "\n".join(items) + "\n")


def build_report(*, frames: Mapping[str, pl.DataFrame], run: str, figures: Sequence[str], table_files: Sequence[str],
                 base: str, table_paths: Mapping[str, str] | None = None) -> str:
    parts = [
        "# Prompt-family reliability report",
        "",
        "What this run measured, whether the paper's findings hold on these models, and where to look next. "
        "Paths are relative to this file. The HTML report (`snakemake --report`) holds the same figures and "
        "tables with captions, by category.",
        "",
        first_screen(frames),
        run,
        claims_section(frames.get("claims")),
        headline_section(frames),
        *registered_sections(ReportInputs(frames, table_paths or {}, figures, base)),
        links_section("Figures", figures, base),
        links_section("All tables (CSV)", table_files, base),
    ]
    return "\n".join(p.rstrip("\n") + "\n" for p in parts if p)


def write_report(*, tables_in: Sequence[str], manifests: Sequence[str], locks: Sequence[str], figures: Sequence[str],
                 report: str, run: Mapping[str, Any], caches: Sequence[str] = ()) -> str:
    """Rule ``report_md``: read the run's Parquet tables, manifests and locks; write REPORT.md."""
    frames = {Path(p).name.removesuffix(".parquet"): pl.read_parquet(p) for p in tables_in}
    base = str(Path(report).parent)
    manifest_frames = {Path(p).name.removesuffix(".parquet"): pl.read_parquet(p, columns=["split", "label"])
                       for p in manifests}
    # one score cache per model: its provenance (resolved revision, dtype, fingerprint) from the file metadata
    provenance = {}
    for path in caches:
        meta = io.read_parquet_metadata(path)
        provenance.setdefault(meta.get("model") or Path(path).parts[-3], meta)
    run_text = run_section(
        models=run["models"], manifests=manifest_frames, locks=[io.read_json(p) for p in locks],
        prompts=run["prompts"], lock_split=run["lock"], evaluate=run["evaluate"], seeds=run["seeds"],
        config_digest=run["config_hash"], versions=package_versions(), provenance=provenance)
    table_paths = {Path(p).name.removesuffix(".parquet"): p for p in tables_in}
    csvs = [str(Path(p).with_suffix(".csv")) for p in tables_in]
    text = build_report(frames=frames, run=run_text, figures=figures, table_files=csvs, base=base,
                        table_paths=table_paths)
    io.write_text(text, report)
    return text
