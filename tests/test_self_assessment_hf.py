"""The two stages on a real tiny offline hf model (random weights: gibberish text, greedy, batched)."""

from pathlib import Path

import polars as pl
import pytest
from conftest import validated_model
from PIL import Image

from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.scoring import self_assessment_inference as stage

PROMPTS = Path(__file__).resolve().parents[1] / "prompts" / "self_assessment" / "unsaf.yaml"


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    import torch

    from prompt_reliability.scoring.backends.hf import hf_settings
    from prompt_reliability.scoring.generation import HFGenerator
    from prompt_reliability.scoring.tiny_models import build_tiny_model

    torch.set_num_threads(1)
    folder = tmp_path_factory.mktemp("sa") / "llava"
    build_tiny_model(folder, "llava", seed=1)
    settings = hf_settings("tiny", validated_model({"backend": "hf", "path": str(folder), "device_map": "cpu", "dtype": "float32"}))
    return HFGenerator.load("tiny", settings, max_new_tokens=12, batch_size=3)


def test_gibberish_model_runs_both_stages_and_counts_unparseable(tmp_path, generator):
    paths = []
    for i in range(2):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.new("RGB", (32, 32), (0, 100 * i, 0)).save(paths[-1])
    templates = stage.load_templates(PROMPTS)
    images = stage.select_images(pl.DataFrame({"sample_id": ["a", "b"], "image_path": paths}), 2)
    gens = stage.run_generation(images, templates, "open", k=2, generate=generator)
    assert gens.height == 4 and all(isinstance(t, str) for t in gens["text"])
    counts = sa.parse_counts(gens, k=2)
    questions = sa.questions_table(gens, k=2)
    assert questions.height + int(counts["n_unparseable"].sum()) == 8

    # stage 2 on hand-written questions: one fresh conversation per (question, variant), greedy
    canned = pl.DataFrame({"question_id": ["a:answerable:0", "a:unanswerable:0", "b:answerable:0"],
                           "sample_id": ["a", "a", "b"], "image_path": [paths[0], paths[0], paths[1]],
                           "setting": ["mc"] * 3, "kind": ["answerable", "unanswerable", "answerable"],
                           "question": ["What colour is it?", "Who made it?", "Is it square?"],
                           "option_a": ["red"] * 3, "option_b": ["green"] * 3, "option_c": ["blue"] * 3,
                           "option_d": ["black"] * 3})
    answers = stage.run_answering(canned, templates, "mc", ["default", "cautious"], generator)
    assert answers.height == 6 and answers["variant"].to_list() == ["default"] * 3 + ["cautious"] * 3
    again = stage.run_answering(canned, templates, "mc", ["default", "cautious"], generator)
    assert again["reply"].to_list() == answers["reply"].to_list()  # greedy: deterministic
    table = sa.score_table(answers, counts, ["default", "cautious"], model="tiny", dataset="d", setting="mc")
    for row in table.iter_rows(named=True):
        assert row["ta"] + row["fa"] + row["tu"] + row["fu"] + row["n_empty"] == 3
    assert generator.stats()["generations"] == 16
