"""UnSAF self-assessment: parser, abstention, four-way classification and UnF1, two stages on canned text."""

import math

import polars as pl
import pytest
from conftest import REPO
from PIL import Image

from prompt_reliability.analysis import self_assessment_scores as sa
from prompt_reliability.scoring import self_assessment_inference as stage

PROMPTS = REPO / "prompts" / "self_assessment" / "unsaf.yaml"

MC_TEXT = """Here are the questions.
**Question 1:** What colour is the triangle in the picture?
A. Red
B. Blue
C) Green
(D) Yellow

2. How many shapes are shown? A. One B. Two C. Three D. Four
Question 3: Which option is missing a letter?
A. x
B. y
D. z
"""

OPEN_TEXT = """1. What colour is the background?
- What shape is drawn in the middle?
Question: Who painted the triangle on the wall?
ok?
Some words without a question mark
"""


def test_mc_parser_reads_labelled_numbered_and_inline_questions_and_rejects_missing_options():
    parsed = sa.parse_questions(MC_TEXT, "mc", k=5)
    assert [q.text for q in parsed.questions] == ["What colour is the triangle in the picture?", "How many shapes are shown?"]
    assert parsed.questions[0].options == {"A": "Red", "B": "Blue", "C": "Green", "D": "Yellow"}
    assert parsed.questions[1].options == {"A": "One", "B": "Two", "C": "Three", "D": "Four"}
    assert parsed.rejected == 1  # question 3 has no option C
    assert parsed.unparseable == 3  # 5 asked, 2 recovered


def test_open_parser_keeps_at_most_k_and_skips_one_word_lines():
    parsed = sa.parse_questions(OPEN_TEXT, "open", k=2)
    assert [q.text for q in parsed.questions] == ["What colour is the background?", "What shape is drawn in the middle?"]
    assert parsed.unparseable == 0
    parsed = sa.parse_questions(OPEN_TEXT, "open", k=5)
    assert len(parsed.questions) == 3 and parsed.rejected == 1 and parsed.unparseable == 2  # "ok?" is too short


@pytest.mark.parametrize("text", ["", "zq xx ## ,,", "A. B. C. D.", None])
def test_gibberish_is_all_unparseable(text):
    parsed = sa.parse_questions(text, "mc", k=2)
    assert parsed.questions == [] and parsed.unparseable == 2


@pytest.mark.parametrize(("reply", "abstains"), [
    ("unanswerable", True), ("Unanswerable.", True), ('"UNANSWERABLE"', True), ("*unanswerable*", True),
    ("I cannot answer this question.", True), ("I can't answer that", True), ("This cannot be answered.", True),
    ("It is not answerable", True), ("I don't know.", True), ("cannot be determined", True),
    ("B", False), ("(c)", False), ("A red triangle", False), ("answerable", False), ("The answer is D.", False),
])
def test_abstention_parser(reply, abstains):
    assert sa.is_abstention(reply) is abstains


def test_option_letters_and_empty_replies():
    assert [sa.option_letter(r) for r in ["B", "(c)", "Answer: D.", "d) Four", "banana", ""]] == ["B", "C", "D", "D", None, None]
    assert sa.classify("answerable", "  '' ") is None


def test_four_way_classification_and_hand_counted_unf1():
    assert [sa.classify("answerable", r) for r in ["A", "unanswerable"]] == ["ta", "fu"]
    assert [sa.classify("unanswerable", r) for r in ["A", "Unanswerable."]] == ["fa", "tu"]
    # TA 3, FA 1, TU 2, FU 1: audacity 3/4, timidity 3/4, UnF1 3/4
    assert sa.unf1_scores(3, 1, 2, 1) == pytest.approx({"audacity": 0.75, "timidity": 0.75, "unf1": 0.75})
    # TA 2, FA 2, FU 0: audacity 1/2, timidity 1, UnF1 2 * .5 / 1.5 = 2/3
    assert sa.unf1_scores(2, 2, 0, 0) == pytest.approx({"audacity": 0.5, "timidity": 1.0, "unf1": 2 / 3})
    # abstains on everything: TA + FA = 0 -> audacity undefined, UnF1 0 (the paper's eq. 1), timidity 0
    scores = sa.unf1_scores(0, 0, 3, 3)
    assert math.isnan(scores["audacity"]) and scores["timidity"] == 0.0 and scores["unf1"] == 0.0
    # answers only unanswerable questions and abstains on the answerable: TA = 0, both ratios 0
    assert sa.unf1_scores(0, 2, 0, 2) == {"audacity": 0.0, "timidity": 0.0, "unf1": 0.0}
    # no answerable question classified (TA + FU = 0) while answering: timidity and UnF1 undefined
    scores = sa.unf1_scores(0, 2, 1, 0)
    assert scores["audacity"] == 0.0 and math.isnan(scores["timidity"]) and math.isnan(scores["unf1"])
    assert sa.unf1_scores(0, 0, 0, 0)["unf1"] == 0.0


def test_abstaining_on_everything_keeps_unf1_zero_with_a_note():
    answers = pl.DataFrame({"kind": ["answerable", "unanswerable"], "variant": ["default"] * 2,
                            "reply": ["unanswerable", "I can't tell"]})
    report = pl.DataFrame({"n_unparseable": [0]})
    row = sa.score_table(answers, report, ["default"], model="m", dataset="d", setting="open").row(0, named=True)
    assert row["unf1"] == 0.0 and math.isnan(row["audacity"]) and "abstained on every question" in row["note"]
    assert math.isnan(row["ece"]) and "no task answers" in row["conventional_note"]


class Scripted:
    """A fake generator: canned replies chosen by a function of the instruction, with a call log."""

    def __init__(self, reply):
        self.reply, self.seen = reply, []

    def __call__(self, images, instructions):
        assert len(images) == len(instructions)
        self.seen.extend(instructions)
        return [self.reply(text) for text in instructions]


def _images(tmp_path, n):
    paths = []
    for i in range(n):
        path = tmp_path / f"im{i}.png"
        Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(path)
        paths.append(str(path))
    # a repeated image is used once
    return pl.DataFrame({"sample_id": [f"s{i}" for i in range(n)] + ["dup"], "image_path": paths + [paths[0]]})


def test_two_stages_on_canned_outputs_give_hand_counted_table(tmp_path):
    templates = stage.load_templates(PROMPTS)
    images = stage.select_images(_images(tmp_path, 3), 3)
    assert images["sample_id"].to_list() == ["s0", "s1", "s2"]

    def stage1(text):
        if "cannot be answered" in text:  # the unanswerable mc prompt
            return "Question: What did the painter eat that morning?\nA. Bread\nB. Rice\nC. Soup\nD. Eggs\n" \
                   "Question: What was the owner's name?\nA. Ann\nB. Bo\nC. Cy\nD. Di"
        return "Question: What colour is the square?\nA. Red\nB. Blue\nC. Green\nD. Black\nnoise noise"

    gens = stage.run_generation(images, templates, "mc", k=2, generate=Scripted(stage1))
    assert gens.height == 6 and gens["kind"].to_list() == ["answerable", "unanswerable"] * 3
    questions = sa.questions_table(gens, k=2)
    counts = sa.parse_counts(gens, k=2)
    # answerable: 1 question per image (3, 1 missing each); unanswerable: 2 per image
    assert questions.height == 9 and int(counts["n_unparseable"].sum()) == 3

    def stage2(text):
        if "owner" in text:
            return "Unanswerable."  # TU x3
        if "painter" in text:
            return "B" if "Trust your instincts" in text else "I cannot answer"
        if "square" in text:
            return "A"
        raise AssertionError(text)

    answers = stage.run_answering(questions, templates, "mc", ["default", "encouraging"], Scripted(stage2))
    assert answers.height == 18
    table = sa.score_table(answers, counts, ["default", "encouraging"], model="m", dataset="d", setting="mc")
    default = table.row(0, named=True)
    # answerable: 3 x "A" -> TA 3; unanswerable: painter abstains (TU 3), owner abstains (TU 3)
    assert (default["ta"], default["fa"], default["tu"], default["fu"]) == (3, 0, 6, 0)
    assert default["n_questions"] == 9 and default["n_unparseable"] == 3 and default["n_empty"] == 0
    assert default["audacity"] == 1.0 and default["timidity"] == 1.0 and default["unf1"] == 1.0
    encouraging = table.row(1, named=True)
    # painter answered -> FA 3; audacity 3/6, timidity 1, UnF1 2/3
    assert (encouraging["ta"], encouraging["fa"], encouraging["tu"], encouraging["fu"]) == (3, 3, 3, 0)
    assert encouraging["unf1"] == pytest.approx(2 / 3)
    assert table.columns[:13] == ["model", "dataset", "setting", "variant", "n_questions", "n_unparseable", "ta", "fa",
                                  "tu", "fu", "audacity", "timidity", "unf1"]


def test_all_gibberish_finishes_with_zero_questions_and_a_count(tmp_path):
    templates = stage.load_templates(PROMPTS)
    images = stage.select_images(_images(tmp_path, 2), 2)
    gens = stage.run_generation(images, templates, "open", k=2, generate=Scripted(lambda t: "zz qq ## 12"))
    questions = sa.questions_table(gens, k=2)
    answers = stage.run_answering(questions, templates, "open", ["default"], Scripted(lambda t: "x"))
    table = sa.score_table(answers, sa.parse_counts(gens, k=2), ["default"], model="m", dataset="d", setting="open")
    row = table.row(0, named=True)
    assert row["n_questions"] == 0 and row["n_unparseable"] == 8
    assert all(math.isnan(row[c]) for c in ("audacity", "timidity", "unf1")) and "no parsed question" in row["note"]
    from prompt_reliability.report.self_assessment_tables import self_assessment_markdown

    assert "Parsed questions: 0 of 8 requested" in self_assessment_markdown(table)


def test_open_answering_prompt_carries_question_and_variant(tmp_path):
    templates = stage.load_templates(PROMPTS)
    q = {"question": "What colour is it?", **{f"option_{c}": None for c in "abcd"}}
    text = stage.answer_instruction(templates, q, "open", "cautious")
    assert "What colour is it?" in text and templates["variants"]["cautious"] in text and "{" not in text
    with pytest.raises(stage.SelfAssessmentError, match="variants"):
        stage.run_answering(pl.DataFrame(schema={"image_path": pl.String}), templates, "open", ["bold"], Scripted(str))


def test_label_on_its_own_line_takes_the_next_line_as_the_question():
    text = "**Question 1:**\nWhat is on the table\nA. Cup\nB. Pen\nC. Book\nD. Key\nQuestion 2:\nWhere is the cat?\n" \
           "A) Sofa\nB) Bed\nC) Floor\nD) Chair"
    parsed = sa.parse_questions(text, "mc", k=2)
    assert [q.text for q in parsed.questions] == ["What is on the table", "Where is the cat?"]
    assert parsed.rejected == 0 and parsed.unparseable == 0


# Real-looking stage-2 replies, both ways (issue 25: at least 40).
ABSTAINING_REPLIES = [
    "unanswerable", "Unanswerable.", "UNANSWERABLE", "**Unanswerable**", "The question is unanswerable.",
    "This question is not answerable from the image.", "I cannot answer this question.", "I can't answer that.",
    "Sorry, I cannot answer that based on the image.", "I'm unable to answer this from the picture.",
    "Not enough information to answer.", "There is not enough information in the image.",
    "The image does not provide enough information to answer this question.",
    "The picture doesn't show enough detail to tell.", "I can't tell from the image.", "I cannot tell.",
    "It is impossible to determine from the photo.", "This cannot be determined from the picture.",
    "Cannot be determined.", "It can't be determined.", "N/A", "n/a", "Unknown.", "unknown", "Unclear.",
    "I don't know.", "I do not know the answer.", "Not sure.", "I'm not sure.", "No idea.",
    "There is no way to know that from the image.", "It is not possible to say from this image.",
    "Insufficient information.", "I am unable to determine the person's name.",
    "There's no information about that in the image.",
]
ANSWERING_REPLIES = [
    "B", "(c)", "D.", "The answer is A.", "Answer: C", "A. Red", "(B) Two", "Option D", "Red.", "blue",
    "There are two dogs.", "It is on the left side.", "Next to a bench.", "A small cup.", "The cat is sleeping.",
    "Three", "Yes", "No", "None of them are visible.", "The unknown soldier statue.", "It says 'STOP'.",
    "The sign reads 'Unknown Pleasures'.", "A determined runner crossing the line.", "answerable",
    "The person is holding an umbrella.", "About 5 o'clock, judging by the clock.", "Zero.",
    "The man who owns the dog is wearing a hat.", "Probably a birthday party.", "It is a tennis racket.",
    "The bus number is 42.", "Summer, since people wear shorts.", "Wood.", "On the table.", "Two cats and a dog.",
]


def test_abstention_detector_on_a_table_of_real_looking_replies_both_ways():
    assert len(ABSTAINING_REPLIES) >= 20 and len(ANSWERING_REPLIES) >= 20
    assert len(ABSTAINING_REPLIES) + len(ANSWERING_REPLIES) >= 40
    missed = [r for r in ABSTAINING_REPLIES if not sa.is_abstention(r)]
    false_alarms = [r for r in ANSWERING_REPLIES if sa.is_abstention(r)]
    assert not missed and not false_alarms, (missed, false_alarms)


def test_parser_reads_bulleted_and_parenthesised_options_and_skips_the_preamble():
    text = ("Sure! Here are two questions about the image?\n"  # a preamble line ending in '?': not a question
            "1. What colour is the umbrella?\n- A) Red\n- B) Blue\n- C) Green\n- D) White\n"
            "2. How many dogs are there?\n(A) One\n(B) Two\n(C) Three\n(D) Four\n"
            "I hope these help!")
    parsed = sa.parse_questions(text, "mc", k=2)
    assert [q.text for q in parsed.questions] == ["What colour is the umbrella?", "How many dogs are there?"]
    assert parsed.questions[0].options == {"A": "Red", "B": "Blue", "C": "Green", "D": "White"}
    assert parsed.questions[1].options == {"A": "One", "B": "Two", "C": "Three", "D": "Four"}
    assert parsed.unparseable == 0 and parsed.rejected == 0


def _sa_config(**block):
    return {"models": {"m": {"backend": "simulate"}, "h": {"backend": "hf"}}, "datasets": {"d": {}},
            "self_assessment": {"models": [], "simulate": {}, "datasets": None, "variants": ["default"], **block}}


@pytest.mark.parametrize("block,message", [
    ({"models": ["m"]}, "'self_assessment.models' lists 'm', which is not a model with backend 'hf' or 'served'"),
    ({"models": ["h"], "datasets": ["e"]}, "'self_assessment.datasets' lists 'e', which is not under 'datasets'"),
    ({"models": ["h"], "variants": ["default", "shy"]}, "'self_assessment.variants' lists ['shy']"),
    ({"simulate": {"m": {}}}, "'self_assessment.simulate.m' names a simulated self-assessor that is also under 'models'"),
])
def test_the_config_check_names_the_key_of_each_problem(block, message):
    from prompt_reliability.base.errors import ConfigError
    from prompt_reliability.data.self_assessment_protocol import check_self_assessment_config

    with pytest.raises(ConfigError) as caught:
        check_self_assessment_config(_sa_config(**block), PROMPTS, ["d"])
    assert message in str(caught.value)
    check_self_assessment_config(_sa_config(models=["h"]), PROMPTS, ["d"])  # a good block passes
