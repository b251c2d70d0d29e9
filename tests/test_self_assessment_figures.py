"""The self-assessment figures render from small tables (and from empty ones, with a message)."""

import polars as pl

from prompt_reliability.analysis import metric_stability as ms
from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.report.figures import self_assessment as figures


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_figures_render(tmp_path):
    answers = pl.DataFrame({"question_id": ["q1", "q2", "q3"], "kind": ["answerable", "unanswerable", "answerable"],
                            "variant": ["default"] * 3, "reply": ["A", "unanswerable", "unanswerable"]})
    counts = pl.DataFrame({"sample_id": ["s"], "kind": ["answerable"], "n_parsed": [3], "n_rejected": [0], "n_unparseable": [1]})
    table = sa.score_table(answers, counts, ["default"], model="m", dataset="d", setting="mc")
    table.write_parquet(tmp_path / "sa.parquet")
    figures.write_answer_types(str(tmp_path / "sa.parquet"), str(tmp_path / "types.png"))
    stability = ms.ranking_stability(pl.DataFrame({"metric": ["ece_mean"] * 4, "dataset": ["d1", "d1", "d2", "d2"],
                                                   "model": ["a", "b", "a", "b"], "value": [0.1, 0.2, 0.3, 0.2]}))
    stability.write_parquet(tmp_path / "st.parquet")
    figures.write_footrule_heatmap(str(tmp_path / "st.parquet"), str(tmp_path / "st.png"))
    sizes = pl.DataFrame([{"metric": "ece_mean", "model": "a", "dataset": "d", "n": n, "draws": 5, "mean": 0.1, "sd": 0.01,
                           "cv": 0.1} for n in (10, 20)], schema=ms.SIZE_SCHEMA)
    sizes.write_parquet(tmp_path / "sz.parquet")
    figures.write_sample_size_figure(str(tmp_path / "sz.parquet"), str(tmp_path / "sz.png"))
    ms.ranking_stability(pl.DataFrame(schema=ms.VALUE_SCHEMA)).write_parquet(tmp_path / "empty.parquet")
    figures.write_footrule_heatmap(str(tmp_path / "empty.parquet"), str(tmp_path / "empty.png"))
    assert all(_png(tmp_path / name) for name in ("types.png", "st.png", "sz.png", "empty.png"))
