"""The simulated self-assessor writes text that the real parser and abstention detector read as configured."""

import polars as pl
import pytest

from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.analysis import self_assessment_simulation as simulation
from prompt_reliability.scoring import self_assessment_simulator as sim

PROFILE = {"params_b": 7.0, "public_scale": True, "well_formed": 0.95, "awareness": 0.0, "answer_bias": 0.0,
           "instruct": False, "skill": 0.0, "overconfidence": 0.0}
EFFECTS = {"scale": 1.0, "instruction_timidity": 1.0, "prompt_shift": 1.0, "awareness_dataset_sd": 0.1,
           "calibration_dataset_sd": 0.4}
SIMULATION = {"seeds": 1, "task_items": 500, "mc_answer_bias": 2.0, "datasets": {}, "effects": EFFECTS}


def _images(n):
    return pl.DataFrame({"sample_id": [f"s{i}" for i in range(n)], "image_path": [""] * n})


def _run(profile=PROFILE, setting="open", n=200, k=5, seeds=1, variants=("default",), effects=EFFECTS, model="m"):
    return simulation.simulate_setting(_images(n), profile, {**SIMULATION, "seeds": seeds, "effects": effects},
                                       model=model, dataset="d", setting=setting, k=k, variants=list(variants))


@pytest.mark.parametrize("setting", ["mc", "open"])
@pytest.mark.parametrize("share", [0.6, 0.9])
def test_parse_rate_matches_the_configured_well_formed_share(setting, share):
    run = _run({**PROFILE, "well_formed": share}, setting=setting, n=300, k=5)
    parsed, missing = run["questions"].height, int(run["parse_report"]["n_unparseable"].sum())
    assert parsed + missing == 300 * 2 * 5
    # 3000 Bernoulli(share) draws: sd <= 0.009
    assert parsed / (parsed + missing) == pytest.approx(share, abs=0.03)
    if setting == "mc":
        assert run["questions"]["option_d"].null_count() == 0


def test_generations_are_text_in_several_styles_with_preamble_and_options():
    run = _run(setting="mc", n=40, k=3)
    text = "\n".join(run["generations"]["text"])
    for marker in ("Question 1: ", "1. ", "- ", "**Q1.**", "(A) ", "- A) ", "Here are 3 questions"):
        assert marker in text, marker
    # the preamble never becomes a question
    assert not run["questions"]["question"].str.contains("Here are").any()


def test_every_simulated_abstention_is_detected_and_every_answer_is_not():
    for setting in ("mc", "open"):
        run = _run(setting=setting, n=150, k=5, variants=("default", "cautious", "encouraging"))
        replies = run["answers"]["reply"].to_list()
        detected = [sa.is_abstention(r) for r in replies]
        written = [r in sim.ABSTENTIONS for r in replies]
        assert detected == written
        assert 0 < sum(written) < len(written)


def test_answer_rates_follow_awareness_and_propensity():
    # a fully aware model (w ~ 1) answers answerable questions w.p. sigmoid(2), unanswerable w.p. sigmoid(-2)
    run = _run({**PROFILE, "awareness": 12.0, "well_formed": 1.0}, n=400, k=5,
               effects={**EFFECTS, "awareness_dataset_sd": 0.0})
    row = sa.score_table(run["answers"], run["parse_report"], ["default"], model="m", dataset="d",
                         setting="open").row(0, named=True)
    assert row["timidity"] == pytest.approx(0.881, abs=0.02)
    assert (row["fa"] / (row["fa"] + row["tu"])) == pytest.approx(0.119, abs=0.02)


def test_variants_trade_false_answers_for_false_abstentions():
    run = _run(n=300, variants=("default", "cautious", "encouraging"))
    table = sa.score_table(run["answers"], run["parse_report"], ["default", "cautious", "encouraging"], model="m",
                           dataset="d", setting="open")
    default, cautious, encouraging = table.iter_rows(named=True)
    assert cautious["fa"] < default["fa"] < encouraging["fa"]
    assert cautious["fu"] > default["fu"] > encouraging["fu"]
    off = _run(n=300, variants=("default", "cautious"), effects={**EFFECTS, "prompt_shift": 0.0})
    counts = sa.type_counts(off["answers"])
    assert counts.filter(pl.col("variant") == "default").drop("variant").rows() == \
        counts.filter(pl.col("variant") == "cautious").drop("variant").rows()


def test_seeded_and_independent_of_order():
    a, b = _run(n=20, seeds=2), _run(n=20, seeds=2)
    assert a["answers"].equals(b["answers"]) and a["generations"].equals(b["generations"])
    assert not a["generations"].filter(pl.col("seed") == 0)["text"].equals(
        a["generations"].filter(pl.col("seed") == 1)["text"])
    assert set(a["questions"]["question_id"].str.split(":").list.first()) == {"0", "1"}


def test_task_accuracy_rises_with_scale_and_a_calibrated_model_has_small_ece():
    effects = {**EFFECTS, "calibration_dataset_sd": 0.0}
    small = sim.simulate_task({**PROFILE, "params_b": 2}, effects, model="s", dataset="d", n_items=5000, difficulty=0.0,
                              seed=0)
    large = sim.simulate_task({**PROFILE, "params_b": 32}, effects, model="l", dataset="d", n_items=5000,
                              difficulty=0.0, seed=0)
    small_metrics, large_metrics = sa.conventional_metrics(small), sa.conventional_metrics(large)
    assert large_metrics["accuracy"] > small_metrics["accuracy"] + 0.1
    assert small_metrics["ece"] < 0.03 and large_metrics["ece"] < 0.03
    over = sa.conventional_metrics(sim.simulate_task({**PROFILE, "overconfidence": 2.0}, effects, model="o",
                                                     dataset="d", n_items=5000, difficulty=0.0, seed=0))
    assert over["ece"] > 0.1 and over["mce_top"] >= over["ece"]
