"""Figure legends are whole in the saved PNG (issue 23, item 6): legends beside the axes used to be cut
at the figure's edge (answer types: "T/F/T/F"; top-k over pairs: no legend at all)."""

from __future__ import annotations

import polars as pl
from PIL import Image

from prompt_reliability.report.figures import DPI, save_figure
from prompt_reliability.report.figures.self_assessment import TYPE_NAMES, answer_types_figure
from prompt_reliability.report.figures.topk import topk_pairs_figure


def _legend_inside_saved_png(fig, path, legend):
    save_figure(fig, path)
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    fig.set_dpi(DPI)  # measure text as savefig rendered it (text extents do not scale exactly with dpi)
    renderer = FigureCanvasAgg(fig).get_renderer()
    drawn = fig.get_tightbbox(renderer)  # inches
    right = legend.get_window_extent(renderer).x1 / fig.dpi
    width = Image.open(path).size[0]
    assert right <= drawn.x1 + 1e-6
    assert abs(width - (drawn.width + 0.2) * DPI) <= 2  # the PNG is the drawn area (legend included) plus padding


def test_answer_types_legend_names_every_type_in_full(tmp_path):
    table = pl.DataFrame({"model": ["m"], "dataset": ["d"], "setting": ["mc"], "variant": ["default"], "ta": [3], "fu": [1],
                          "tu": [2], "fa": [4], "unf1": [0.5], "n_questions": [10], "n_unparseable": [0]})
    fig = answer_types_figure(table)
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == list(TYPE_NAMES.values())
    _legend_inside_saved_png(fig, tmp_path / "answer_types.png", legend)


def test_topk_over_pairs_has_a_legend_of_every_pair_and_the_mean(tmp_path):
    rows = [{"model": m, "dataset": "d", "split": "test", "k": k, "prompt_id": f"A{k}", "nll": 0.5 + k / 100, "ece": 0.1}
            for m in ("sim", "tiny") for k in range(1, 4)]
    fig = topk_pairs_figure(pl.DataFrame(rows))
    legend = fig.legends[0]
    assert [t.get_text() for t in legend.get_texts()] == ["sim / d / test", "tiny / d / test", "mean across pairs"]
    _legend_inside_saved_png(fig, tmp_path / "all_pairs.png", legend)
