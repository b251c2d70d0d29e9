"""The ``distillation`` table (UnSAF Table 1 + Table 2 in one) and its figures (Table 1, Fig. 7 shapes, loss curves).

One row per (student, arm): the base student (``strategy = baseline``) and each (teacher, strategy)
adapter, with audacity, timidity, UnF1, POPE F1, CHAIR_i, CHAIR F1 and each one's delta against the
same student's baseline (``d_<metric>``; NaN where either side is undefined).

matplotlib object API only (``Figure``; no global pyplot state): jobs run side by side in threads.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from prompt_reliability.analysis.distillation_data import STRATEGY_LABELS
from prompt_reliability.base import io, tables
from prompt_reliability.report.figures import new_figure, save_figure
from prompt_reliability.report.figures.self_assessment import TYPE_COLOURS, TYPE_NAMES

DELTA_METRICS = ("audacity", "timidity", "unf1", "tu_share", "parse_rate", "pope_f1", "chair_i", "chair_f1")
HEAD = ("student", "teacher", "strategy", "audacity", "timidity", "unf1", "pope_f1", "chair_i", "chair_f1")
STRATEGY_ORDER = ("baseline", "qa", "iq", "joint")
STRATEGY_COLOURS = {"baseline": "#868e96", "qa": "#f59f00", "iq": "#1c7ed6", "joint": "#5f3dc4"}


def distillation_table(pieces: pl.DataFrame) -> pl.DataFrame:
    """Pieces -> the table: headline columns first, deltas against each student's baseline appended."""
    base = (pieces.filter(pl.col("strategy") == "baseline")
            .select("student", *[pl.col(m).alias(f"_base_{m}") for m in DELTA_METRICS]))
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    frame = (pieces.join(base, on="student", how="left", maintain_order="left")
             .with_columns(*[(pl.col(m) - pl.col(f"_base_{m}")).alias(f"d_{m}") for m in DELTA_METRICS])
             .drop([f"_base_{m}" for m in DELTA_METRICS])
             .with_columns(pl.col("strategy").replace_strict(order, default=len(order)).alias("_order"))
             .sort("student", "_order", "teacher", nulls_last=False, maintain_order=True).drop("_order"))
    rest = [c for c in frame.columns if c not in HEAD]
    return frame.select(*HEAD, *rest)


def write_distillation_table(*, pieces: Sequence[str], table: str, csv: str, md: str) -> pl.DataFrame:
    """Rule ``distillation_table``."""
    frame = distillation_table(pl.concat([pl.read_parquet(p) for p in pieces], how="vertical_relaxed"))
    return tables.write_table(frame, table, csv, md, "distillation")


# --- figures -------------------------------------------------------------------------------------


def unf1_figure(table: pl.DataFrame):
    """Table 1's shape: per teacher a panel, per student a group of bars (baseline, UnD-QA, -IQ, -Joint)."""
    teachers = [t for t in table["teacher"].unique(maintain_order=True).to_list() if t is not None]
    students = table["student"].unique(maintain_order=True).to_list()
    fig = new_figure(figsize=(max(4.5, 3.2 * max(len(teachers), 1) + 1), 3.8))
    axes = fig.subplots(1, max(len(teachers), 1), sharey=True, squeeze=False)[0]
    width = 0.8 / len(STRATEGY_ORDER)
    for ax, teacher in zip(axes, teachers or [None]):
        for j, strategy in enumerate(STRATEGY_ORDER):
            values = []
            for student in students:
                rows = table.filter((pl.col("student") == student) & (pl.col("strategy") == strategy)
                                    & ((pl.col("teacher") == teacher) if strategy != "baseline" else pl.lit(True)))
                values.append(rows["unf1"][0] if rows.height else np.nan)
            x = np.arange(len(students)) + (j - 1.5) * width
            ax.bar(x, values, width, color=STRATEGY_COLOURS[strategy],
                   label=STRATEGY_LABELS.get(strategy, "Baseline"))
            for xi, v in zip(x, values):
                ax.text(xi, (0 if np.isnan(v) else v) + 0.01, "n/a" if np.isnan(v) else f"{v:.2f}", ha="center",
                        va="bottom", fontsize=6, rotation=90)
        ax.set_xticks(np.arange(len(students)), students, fontsize=8, rotation=15)
        ax.set_xlim(-0.5, len(students) - 0.5)
        ax.set_title(f"teacher: {teacher}", fontsize=9)
        ax.set_ylim(0, 1.3)
    axes[0].set_ylabel("UnF1 on held-out images (n/a: no parsed question)")
    axes[0].legend(fontsize=7, loc="upper left", ncol=len(STRATEGY_ORDER))
    fig.suptitle("Students' UnF1 by distillation strategy (UnSAF Table 1)", fontsize=10)
    return fig


def answer_types_figure(table: pl.DataFrame):
    """Fig. 7's shape: shares of TA/FA/TU/FU per student and arm (stacked bars), one row of panels per teacher."""
    teachers = [t for t in table["teacher"].unique(maintain_order=True).to_list() if t is not None] or [None]
    students = table["student"].unique(maintain_order=True).to_list()
    fig = new_figure(figsize=(max(4.5, 2.6 * len(students) + 1.5), 2.6 * len(teachers) + 0.6))
    axes = fig.subplots(len(teachers), len(students), sharey=True, squeeze=False)
    for i, teacher in enumerate(teachers):
        for j, student in enumerate(students):
            ax = axes[i][j]
            rows = table.filter((pl.col("student") == student)
                                & ((pl.col("teacher") == teacher) | (pl.col("strategy") == "baseline")))
            totals = np.array([sum(r[t] for t in TYPE_COLOURS) for r in rows.iter_rows(named=True)], dtype=float)
            bottom = np.zeros(rows.height)
            for t, colour in TYPE_COLOURS.items():
                share = np.divide(rows[t].to_numpy().astype(float), totals, out=np.zeros(rows.height), where=totals > 0)
                ax.bar(np.arange(rows.height), share, bottom=bottom, color=colour, width=0.7,
                       label=TYPE_NAMES[t] if (i, j) == (0, len(students) - 1) else None)
                bottom += share
            for x, total in enumerate(totals):
                if total == 0:
                    ax.text(x, 0.5, "no parsed\nquestion", ha="center", va="center", fontsize=6, color="0.4")
            ax.set_xticks(np.arange(rows.height), [STRATEGY_LABELS.get(s, "Baseline") for s in rows["strategy"]],
                          fontsize=7, rotation=20)
            ax.set_ylim(0, 1.3)
            ax.set_title(f"{student} ← {teacher}", fontsize=8)
    axes[0][0].set_ylabel("share of answers")
    handles, labels = axes[0][-1].get_legend_handles_labels()
    axes[0][0].legend(handles, [label.split(" (")[0] for label in labels], fontsize=7, loc="upper left", ncol=4)
    fig.suptitle("Answer types after distillation (UnSAF Fig. 7)", fontsize=10)
    return fig


HALLUCINATION_PANELS = (("pope_f1", "POPE F1 (higher is better)"), ("chair_i", "CHAIR_i (lower is better)"),
                        ("chair_f1", "CHAIR F1 (higher is better)"))


def hallucination_figure(table: pl.DataFrame):
    """Table 2's shape: POPE F1, CHAIR_i and CHAIR F1 per student (rows) and arm (bars), one bar group per teacher."""
    teachers = [t for t in table["teacher"].unique(maintain_order=True).to_list() if t is not None] or [None]
    students = table["student"].unique(maintain_order=True).to_list()
    fig = new_figure(figsize=(9.0, 2.4 * len(students) + 0.8))
    axes = fig.subplots(len(students), len(HALLUCINATION_PANELS), squeeze=False)
    width = 0.8 / len(STRATEGY_ORDER)
    for i, student in enumerate(students):
        rows = table.filter(pl.col("student") == student)
        base = rows.filter(pl.col("strategy") == "baseline")
        for j, (metric, title) in enumerate(HALLUCINATION_PANELS):
            ax = axes[i][j]
            for k, strategy in enumerate(STRATEGY_ORDER):
                values = [(base if strategy == "baseline" else rows.filter(
                    (pl.col("strategy") == strategy) & (pl.col("teacher") == t)))[metric] for t in teachers]
                heights = [v[0] if v.len() else np.nan for v in values]
                ax.bar(np.arange(len(teachers)) + (k - 1.5) * width, heights, width,
                       color=STRATEGY_COLOURS[strategy], label=STRATEGY_LABELS.get(strategy, "Baseline"))
            ax.set_xticks(np.arange(len(teachers)), [str(t) for t in teachers], fontsize=7)
            ax.set_xlim(-0.5, len(teachers) - 0.5)
            ax.set_title(title, fontsize=8)
            finite = rows[metric].drop_nulls().drop_nans()
            top = float(finite.max()) if finite.len() else 0.0
            ax.set_ylim(0, max(0.05, top * 1.45) if metric == "chair_i" else max(1.0, top) * 1.3)
            if j == 0:
                ax.set_ylabel(student, fontsize=8)
            if all(np.isnan(v) for v in rows[metric].to_numpy()):
                ax.text(0.5, 0.5, "undefined (no object mentioned)", transform=ax.transAxes, ha="center", fontsize=7,
                        color="0.4")
    axes[0][-1].legend(fontsize=6, loc="upper right", ncol=2)  # above the bars: the panels have headroom
    fig.suptitle("Object hallucination after distillation (UnSAF Table 2); x: teacher", fontsize=10)
    return fig


def loss_figure(curves: dict[str, list[list[float]]]):
    """Training loss per job (student ← teacher / strategy)."""
    fig = new_figure(figsize=(6.0, 3.6))
    ax = fig.add_subplot()
    for name, losses in curves.items():
        if losses:
            steps, values = zip(*losses)
            ax.plot(steps, values, label=name, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.set_yscale("log")
    ax.legend(fontsize=6, loc="upper right")
    ax.set_title("LoRA distillation: training loss", fontsize=10)
    return fig


def write_distillation_figures(*, table: str, curves: Sequence[str], unf1: str, answer_types: str, hallucination: str,
                               loss: str) -> None:
    """Rule ``distillation_figures``."""
    frame = pl.read_parquet(table)
    save_figure(unf1_figure(frame), unf1)
    save_figure(answer_types_figure(frame), answer_types)
    save_figure(hallucination_figure(frame), hallucination)
    named = {}
    for path in curves:
        data = io.read_json(path)
        p = data["provenance"]
        named[f"{p['student']} ← {p['teacher']} / {STRATEGY_LABELS[p['strategy']]}"] = data["losses"]
    save_figure(loss_figure(named), loss)


# --- claims' statistics (workflow/claims/unsaf_distillation.yaml) ------------------------------------

CLAIM_STATISTICS = {
    "iq_unf1_above_qa": "cells (student, teacher) where UnD-IQ's UnF1 > UnD-QA's (both defined)",
    "pope_f1_above_baseline": "adapters whose POPE F1 is above the base student's (both defined)",
    "chair_i_below_baseline": "adapters whose CHAIR_i is below the base student's (both defined)",
}


def distillation_claims(table: pl.DataFrame) -> pl.DataFrame:
    """``statistic, description, count, pairs``: the counts the section-5 claims are checked on (NaN cells left out)."""
    iq = table.filter(pl.col("strategy") == "iq").select("student", "teacher", pl.col("unf1").alias("iq"))
    qa = table.filter(pl.col("strategy") == "qa").select("student", "teacher", pl.col("unf1").alias("qa"))
    cells = iq.join(qa, on=["student", "teacher"]).filter(pl.col("iq").is_not_nan() & pl.col("qa").is_not_nan())
    adapters = table.filter(pl.col("strategy") != "baseline")
    pope = adapters.filter(pl.col("d_pope_f1").is_not_nan())["d_pope_f1"]
    chair = adapters.filter(pl.col("d_chair_i").is_not_nan())["d_chair_i"]
    rows = [("iq_unf1_above_qa", int((cells["iq"] > cells["qa"]).sum()), cells.height),
            ("pope_f1_above_baseline", int((pope > 0).sum()), pope.len()),
            ("chair_i_below_baseline", int((chair < 0).sum()), chair.len())]
    return pl.DataFrame([{"statistic": s, "description": CLAIM_STATISTICS[s], "count": c, "pairs": n}
                         for s, c, n in rows],
                        schema={"statistic": pl.String, "description": pl.String, "count": pl.Int64, "pairs": pl.Int64})


def write_distillation_claims(*, table: str, summary: str, csv: str, md: str) -> pl.DataFrame:
    """Rule ``distillation_claims`` (a summary of the ``distillation`` table)."""
    return tables.write_table(distillation_claims(pl.read_parquet(table)), summary, csv, md, "distillation_claims")


def distillation_markdown(table: pl.DataFrame) -> str:
    """REPORT.md's distillation section: what was run, the headline columns, and what it does not show."""
    lines = ["## Uncertainty-aware distillation (UnSAF section 5)", ""]
    if table.height == 0:
        return "\n".join(lines + ["No students in this configuration.", ""])
    students = table["student"].n_unique()
    adapters = table.filter(pl.col("strategy") != "baseline")
    lines += [
        (f"{students} student(s), each as its base model and with {adapters.height // max(students, 1)} LoRA adapter(s) "
         "distilled from a teacher's self-assessment run (UnD-QA: question -> answer; UnD-IQ: instruction -> "
         "questions; UnD-Joint: both). Every arm is self-assessed on held-out images (never trained on) and "
         "probed for object hallucination (POPE F1 on yes/no object probes; CHAIR_i and CHAIR F1 on captions of "
         "images whose objects are known). `d_*` columns: the arm minus its base student."),
        "",
        ("With tiny random-weight students (the test scenarios) this shows that the pipeline works (data, "
         "training, evaluation), not that distillation helps."),
        "",
    ]
    columns = [*HEAD, "parse_rate", "d_unf1", "d_pope_f1", "d_chair_i", "note"]
    return "\n".join(lines) + "\n" + tables.to_markdown(table.select(columns))
