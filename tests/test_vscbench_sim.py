"""VSCBench at its own scale, simulated: SRA from judged responses, the trade-off and its Pareto front, and the
paper's findings as claims that fail when the simulator's effect is switched off.

The study is config/vscbench_sim.yaml's profiles on a smaller benchmark (fewer pairs, fewer helpfulness items),
run in-process; workflow/claims/vscbench.yaml gives the verdicts through the claims check.
"""

import copy

import numpy as np
import polars as pl
import pytest
import yaml
from conftest import REPO, SCHEMA_PATH

from prompt_reliability.analysis import claims as claims_check
from prompt_reliability.analysis import vscbench_findings as findings
from prompt_reliability.analysis.safety_calibration import sra
from prompt_reliability.base.config import validate_config
from prompt_reliability.scoring import safety_simulator

CONFIG = validate_config(yaml.safe_load((REPO / "config" / "vscbench_sim.yaml").read_text()), SCHEMA_PATH)
VERDICTS = CONFIG["safety_calibration"]["verdicts"]
CLAIMS = claims_check.load_claims(REPO / "workflow" / "claims" / "vscbench.yaml")


def _simulation(**effects) -> dict:
    simulation = copy.deepcopy(CONFIG["safety_simulation"])
    simulation["pairs"] = {"image_centric": 600, "text_centric": 600}
    simulation["helpfulness"] = {"pope": 300, "scienceqa": 300}
    simulation["iar"]["layers"], simulation["iar"]["strengths"] = [9, 14, 19, 24], [0.0, 1.5, 2.5]
    simulation["effects"].update(effects)
    return simulation


def _study(simulation: dict) -> dict[str, pl.DataFrame]:
    runs = [safety_simulator.simulate_model(m, p, simulation) for m, p in simulation["models"].items()]
    responses, answers = pl.concat([r for r, _ in runs]), pl.concat([h for _, h in runs])
    sra_table = findings.sra_table(responses, VERDICTS)
    tradeoff = findings.tradeoff_table(sra_table, answers)
    return {"responses": responses, "answers": answers, "sra": sra_table, "tradeoff": tradeoff,
            "findings": findings.findings(sra_table, tradeoff, answers, simulation["findings"], VERDICTS)}


@pytest.fixture(scope="module")
def study():
    return _study(_simulation())


def _verdicts(frame: pl.DataFrame) -> dict[str, str]:
    checked = claims_check.check_claims(CLAIMS, {"vscbench_findings": frame})
    return dict(zip(checked["id"], checked["verdict"]))


def test_sra_table_matches_a_loop_over_samples(study):
    responses, table = study["responses"], study["sra"]
    for model, subset, kind, method, category in [("gemini-1.5-pro", "image_centric", "image", "fewshot-1", "pornography"),
                                                  ("llava-1.5-7b", "text_centric", "QueryRelevant", "none", "all"),
                                                  ("vlguard-7b", "text_centric", "all", "iar-L14-s1.5", "homonyms")]:
        rows = responses.filter((pl.col("model") == model) & (pl.col("subset") == subset) & (pl.col("method") == method))
        if kind == "all":
            rows = rows.filter(pl.col("image_kind").is_in(["QueryRelevant", "FigStep"]))
        else:
            rows = rows.filter(pl.col("image_kind") == kind)
        if category != "all":
            rows = rows.filter(pl.col("category") == category)
        expected = sra(rows["label"].to_numpy(), rows["refused"].to_numpy(), 0.5)
        got = table.filter((pl.col("model") == model) & (pl.col("subset") == subset) & (pl.col("image_kind") == kind)
                           & (pl.col("method") == method) & (pl.col("category") == category)).row(0, named=True)
        for key in ("n_safe", "n_unsafe", "sra_s", "sra_u", "sra_a", "accuracy"):
            assert got[key] == pytest.approx(expected[key]), (model, key)


def test_pareto_front_matches_pairwise_dominance():
    rng = np.random.default_rng(1)
    for _ in range(20):
        x, y = rng.choice([0.1, 0.2, 0.3, 0.4], 8), rng.choice([0.5, 0.6, 0.7], 8)
        brute = [not any(x[j] >= x[i] and y[j] >= y[i] and (x[j] > x[i] or y[j] > y[i]) for j in range(8)) for i in range(8)]
        assert findings.pareto_mask(x, y).tolist() == brute


def test_iar_at_strength_zero_is_the_uncalibrated_model_and_only_open_weight_models_are_steered(study):
    responses = study["responses"]
    for layer in (9, 14, 24):
        steered = responses.filter((pl.col("model") == "vlguard-7b") & (pl.col("method") == f"iar-L{layer}-s0"))
        plain = responses.filter((pl.col("model") == "vlguard-7b") & (pl.col("method") == "none"))
        assert steered["refused"].to_list() == plain["refused"].to_list()
    steered_models = set(responses.filter(pl.col("method").str.starts_with("iar-"))["model"])
    assert steered_models == {m for m, p in CONFIG["safety_simulation"]["models"].items() if p["access"] == "open"}
    tradeoff = study["tradeoff"].filter(pl.col("model") == "llava-1.5-7b")
    assert tradeoff.filter(pl.col("method") == "iar-L14-s1.5")["pareto"][0]  # the paper's configuration is on the front
    assert not tradeoff.filter(pl.col("method") == "iar-L24-s2.5")["pareto"][0]


def test_the_papers_findings_are_reproduced_on_the_simulated_run(study):
    verdicts = _verdicts(study["findings"])
    assert verdicts == {c["id"]: "reproduced" for c in CLAIMS}


# (effects switched off, the claims that must then fail); every other claim must stay reproduced. The
# text-centric lean has two sources in the simulator, as in the paper: the group lean and QueryRelevant images
# pushing open-weight models toward under-safety, so it fails only with both off.
SWITCHES = [
    (("group_lean",), ["vscbench_lean_image"]),
    (("group_lean", "query_relevant"), ["vscbench_lean_image", "vscbench_lean_text", "vscbench_query_relevant"]),
    (("few_shot",), ["vscbench_fewshot_weakest"]),
    (("helpfulness_cost",), ["vscbench_helpfulness_cost"]),
    (("query_relevant",), ["vscbench_query_relevant"]),
    (("iar_layer",), ["vscbench_iar_layer"]),
]


@pytest.mark.parametrize(("effects", "claims"), SWITCHES, ids=["+".join(e) for e, _ in SWITCHES])
def test_each_claim_fails_when_its_effect_is_switched_off(effects, claims):
    verdicts = _verdicts(_study(_simulation(**dict.fromkeys(effects, False)))["findings"])
    for claim in claims:
        assert verdicts[claim] in ("weaker", "contradicted"), (claim, verdicts[claim])
    assert {c: v for c, v in verdicts.items() if c not in claims} == {c["id"]: "reproduced" for c in CLAIMS if c["id"] not in claims}


def test_a_run_without_the_simulation_leaves_the_claims_not_testable():
    checked = claims_check.check_claims(CLAIMS, {})
    assert set(checked["verdict"]) == {"not testable"}
