"""UnSAF's claims on a simulated study: reproduced with the simulator's effects on, not reproduced with each off.

The study is config/unsaf_sim.yaml's (its profiles, datasets and simulator settings), smaller (fewer
images, seeds and items), computed in process with the workflow's own functions; the verdicts come from
workflow/claims/unsaf.yaml through the claims check.
"""

import functools

import polars as pl
import pytest
import yaml
from conftest import REPO

from prompt_reliability.analysis import claims as claims_check
from prompt_reliability.analysis import metric_stability
from prompt_reliability.analysis import self_assessment_findings as findings
from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.analysis import self_assessment_simulation as simulation

CONFIG = yaml.safe_load((REPO / "config/unsaf_sim.yaml").read_text())["self_assessment"]
CLAIMS = {c["id"]: c for c in claims_check.load_claims(REPO / "workflow/claims/unsaf.yaml")}
DEFAULT_EFFECTS = {"scale": 1.0, "instruction_timidity": 1.0, "prompt_shift": 1.0, "awareness_dataset_sd": 0.1,
                   "calibration_dataset_sd": 0.4}
PROFILE_DEFAULTS = {"public_scale": True, "well_formed": 0.95, "awareness": 0.0, "answer_bias": 0.0, "instruct": False,
                    "skill": 0.0, "overconfidence": 0.0}
VARIANTS = ["default", "cautious", "encouraging"]
SIZES = [10, 20, 40]


def _profiles(**override):
    return {name: {**PROFILE_DEFAULTS, **p, **override} for name, p in CONFIG["simulate"].items()}


@functools.cache
def _study(models: tuple[str, ...], effects: tuple[tuple[str, float], ...] = (), profile_override: tuple = (),
           images: int = 40, seeds: int = 3) -> dict[str, pl.DataFrame]:
    """self_assessment, metric_stability and metric_sample_size tables of a small open-setting study."""
    sim = {"seeds": seeds, "task_items": 300, "mc_answer_bias": 2.0, "datasets": CONFIG["simulation"]["datasets"],
           "effects": {**DEFAULT_EFFECTS, **dict(effects)}}
    profiles = _profiles(**dict(profile_override))
    ids = pl.DataFrame({"sample_id": [f"s{i}" for i in range(images)], "image_path": [""] * images})
    rows, sizes = [], []
    common = {"sample_sizes": SIZES, "draws": 5, "seed": 0}
    for model in models:
        for dataset in CONFIG["datasets"]:
            run = simulation.simulate_setting(ids, profiles[model], sim, model=model, dataset=dataset, setting="open",
                                              k=5, variants=VARIANTS)
            task = simulation.simulate_task(profiles[model], sim, model=model, dataset=dataset)
            rows.append(sa.score_table(run["answers"], run["parse_report"], VARIANTS, model=model, dataset=dataset,
                                       setting="open", task=task))
            sizes += metric_stability.unf1_sample_size(run["answers"].filter(pl.col("variant") == "default"), model=model,
                                                       dataset=dataset, setting="open", **common)
            sizes += metric_stability.task_sample_size(task, model=model, dataset=dataset, **common)
    table = pl.concat(rows)
    return {"table": table, "stability": metric_stability.ranking_stability(metric_stability.unf1_values(table)),
            "sample_size": pl.DataFrame(sizes, schema=metric_stability.SIZE_SCHEMA)}


def _verdict(claim_id, study):
    scales = {m: p["params_b"] for m, p in _profiles().items() if p["public_scale"]}
    frame = findings.findings(study["table"], study["stability"], study["sample_size"], scales=scales,
                              instruction_pairs=CONFIG["instruction_pairs"])
    return claims_check.evaluate_claim(CLAIMS[claim_id], frame)


FIVE = tuple(CONFIG["stability"]["models"])
ALL = tuple(CONFIG["simulate"])

# claim -> (models, the switch that turns the simulated effect off)
SWITCHES = {
    # UnF1's ranking is as dataset-specific as the confidence's miscalibration: no consistency advantage
    "unsaf_footrule": (FIVE, {"effects": (("calibration_dataset_sd", 0.0), ("awareness_dataset_sd", 1.5))}),
    # ECE far from 0 and steady (accurate, badly underconfident models), UnF1 from few parseable questions
    "unsaf_cv_every_n": (FIVE, {"profile_override": (("overconfidence", -6.0), ("skill", 4.0), ("well_formed", 0.05))}),
    "unsaf_cv": (FIVE, {"profile_override": (("overconfidence", -6.0), ("skill", 4.0), ("well_formed", 0.05))}),
    "unsaf_scale": (ALL, {"effects": (("scale", 0.0),)}),
    "unsaf_instruction_timid": (ALL, {"effects": (("instruction_timidity", 0.0),)}),
    "unsaf_prompt_tradeoff": (ALL, {"effects": (("prompt_shift", 0.0),)}),
}


# The simulator's UnF1 is an average of independent questions (10 per image and seed), so its CV is
# about 5-10x below ECE's, not the paper's "one to two orders of magnitude": on the simulated study this
# claim is not reproduced, and the claims table says so. Its test shows the ratio and the switch.
NOT_REPRODUCED_BY_THE_SIMULATOR = {"unsaf_cv"}


@pytest.mark.parametrize("claim_id", sorted(set(SWITCHES) - NOT_REPRODUCED_BY_THE_SIMULATOR))
def test_claim_is_reproduced_with_the_effect_on(claim_id):
    models, _ = SWITCHES[claim_id]
    row = _verdict(claim_id, _study(models))
    assert row["verdict"] == "reproduced", row


def test_cv_ratio_with_the_effect_on_is_several_fold_but_below_ten():
    row = _verdict("unsaf_cv", _study(SWITCHES["unsaf_cv"][0]))
    assert row["verdict"] in ("weaker", "contradicted")
    ratio = findings.cv_findings(_study(SWITCHES["unsaf_cv"][0])["sample_size"])[1]["value"]
    assert 3 < ratio < 10


@pytest.mark.parametrize("claim_id", sorted(SWITCHES))
def test_claim_is_not_reproduced_with_the_effect_switched_off(claim_id):
    models, switch = SWITCHES[claim_id]
    row = _verdict(claim_id, _study(models, **switch))
    assert row["pairs"] and row["verdict"] in ("weaker", "contradicted"), row


def test_claims_file_names_only_findings_the_table_has():
    study = _study(FIVE, images=6, seeds=1)
    frame = findings.findings(study["table"], study["stability"], study["sample_size"], scales={},
                              instruction_pairs=[])
    assert set(frame["finding"]) >= {c["where"]["finding"] for c in CLAIMS.values()}
    # no size known, no pair configured: nothing to compare, the claim is not testable (never a silent pass)
    assert claims_check.evaluate_claim(CLAIMS["unsaf_scale"], frame)["verdict"] == "not testable"
    assert claims_check.evaluate_claim(CLAIMS["unsaf_instruction_timid"], frame)["verdict"] == "not testable"


def test_spearman_p_value_is_exact_for_few_models():
    from scipy.stats import spearmanr

    assert findings.spearman([1, 2, 3], [0.1, 0.2, 0.3]) == (pytest.approx(1.0), pytest.approx(2 / 6))
    # 6 points: exact two-sided p of a perfect order is 2 / 720; more points: scipy's value
    assert findings.spearman(range(6), range(6))[1] == pytest.approx(2 / 720)
    x, y = list(range(10)), [0, 2, 1, 3, 5, 4, 6, 8, 7, 9]
    assert findings.spearman(x, y)[1] == pytest.approx(spearmanr(x, y).pvalue)
