"""The per-behaviour scores of `eval.check` on hand-written answers (no model): yes/no words, declines, false
refusals, abbreviation expansions, and a dataset without the new columns."""

import json
from pathlib import Path

import datasets
import pytest

from eval.behaviours import abbreviation_hits, behaviours, expands, gold_labels, yes_no_correct
from eval.check import print_quality, quality
from ko_radiology.generation import Answer
from ko_radiology.glossary import Glossary
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_qa
from ko_radiology.statistics import wilson_interval

GLOSSARY = Glossary.from_tsv()
GOLD_ROWS = [row for rows in load_gold_qa(SAMPLE_DIR).values() for row in rows]

YES = "네, 소량의 좌측 흉막삼출이 있습니다."
NO = "아니요, 기흉은 없습니다."
DECLINE = "이 판독문에는 항생제 투여 계획에 대한 정보가 없어 답변할 수 없습니다."
OPEN = "기관내관 끝은 기관분기부 4.5 cm 위에 있습니다."
EXPANSION = "PA는 posteroanterior의 약자로 후전면 촬영을 뜻합니다."
ROWS = [  # one per question type and task: the split's gold answers and labels
    {"task": "질문 답변", "answer": YES, "answerable": True, "question_type": "yes_no", "expanded_abbreviations": []},
    {"task": "질문 답변", "answer": NO, "answerable": True, "question_type": "yes_no", "expanded_abbreviations": []},
    {"task": "질문 답변", "answer": DECLINE, "answerable": False, "question_type": "unanswerable"}
    | {"expanded_abbreviations": []},
    {"task": "질문 답변", "answer": OPEN, "answerable": True, "question_type": "open", "expanded_abbreviations": []},
    {"task": "축약어 확장", "answer": EXPANSION, "answerable": True, "question_type": "open"}
    | {"expanded_abbreviations": ["PA", "LAT"]},
]


def split(rows: list[dict], drop: tuple[str, ...] = ()) -> datasets.Dataset:
    return datasets.Dataset.from_list([{k: v for k, v in row.items() if k not in drop} for row in rows])


def test_a_yes_no_answer_counts_when_its_first_word_is_the_golds():
    assert yes_no_correct("네, 흉막삼출이 있습니다.", YES)
    assert yes_no_correct("예. 있습니다.", YES)  # 예 is 네
    assert yes_no_correct("아니오, 기흉은 보이지 않습니다.", NO)
    assert not yes_no_correct("아니요, 흉막삼출이 있습니다.", YES)  # the Space's example of issue 19
    assert not yes_no_correct("소량의 좌측 흉막삼출이 있습니다.", YES)  # right, but without the 네
    assert not yes_no_correct("네네 있어요", YES)


def test_every_gold_answer_expands_its_own_abbreviations():
    """The gold answers are perfect by the metric: every abbreviation they are labelled with is expanded."""
    labelled = [row for row in GOLD_ROWS if row["expanded_abbreviations"]]
    assert len(labelled) >= 60
    for row in labelled:
        hits = abbreviation_hits(row["answer"], row["expanded_abbreviations"], GLOSSARY)
        assert hits == [True] * len(row["expanded_abbreviations"]), row["id"]


def test_a_made_up_expansion_scores_zero_and_spelling_variants_count():
    assert abbreviation_hits("IJ는 intestinal catheterization의 약자입니다.", ["IJ"], GLOSSARY) == [False]
    assert abbreviation_hits("PA는 pulmonary artery, 즉 폐동맥입니다.", ["PA"], GLOSSARY) == [False]
    assert abbreviation_hits("IJ는 Internal-Jugular의 약자입니다.", ["IJ"], GLOSSARY) == [True]
    assert abbreviation_hits("GGO는 ground glass opacity입니다.", ["GGO"], GLOSSARY) == [True]
    assert expands("CT는 컴퓨터 단층촬영입니다.", GLOSSARY.entries["CT"])  # the Korean term, spaced otherwise
    assert abbreviation_hits(EXPANSION, ["PA", "LAT", "NOT-A-TERM"], GLOSSARY) == [True, False]  # unknown: unscored


def test_the_gold_answers_score_perfectly_on_every_behaviour():
    golds = [row["answer"] for row in GOLD_ROWS]
    result = behaviours(golds, golds, gold_labels(split(GOLD_ROWS)), GLOSSARY)
    assert result["yes_no_accuracy"] == result["unanswerable_declined"] == result["abbreviation_accuracy"] == 1.0
    assert result["answerable_declined"] == 0.0
    assert result["abbreviations_not_scored"] == [] and result["question_types_from_gold_answers"] == 0


def test_shares_and_wilson_intervals_for_model_and_base():
    tuned = ["네, 있습니다.", "네, 기흉이 있습니다.", DECLINE, "판독문에 나와 있지 않습니다.", EXPANSION]
    base = ["있습니다.", NO, "네, 항생제를 투여할 예정입니다.", OPEN, "PA는 폐동맥입니다."]
    result = behaviours(tuned, base, gold_labels(split(ROWS)), GLOSSARY)
    assert (result["yes_no_questions"], result["unanswerable_questions"], result["answerable_questions"]) == (2, 1, 4)
    assert result["yes_no_accuracy"] == 0.5 and result["base_yes_no_accuracy"] == 0.5
    assert result["yes_no_accuracy_ci95"] == list(wilson_interval(1, 2)[1:])
    assert result["unanswerable_declined"] == 1.0 and result["base_unanswerable_declined"] == 0.0
    assert result["answerable_declined"] == 0.25 and result["base_answerable_declined"] == 0.0  # a false refusal
    assert (result["abbreviation_pairs"], result["abbreviation_accuracy"], result["base_abbreviation_accuracy"]) == (
        2,
        0.5,
        0.0,
    )
    low, high = result["base_answerable_declined_ci95"]
    assert low == 0.0 and 0 < high < 1  # 0 of 4 is not certainty


def test_a_split_without_the_new_columns_reads_types_off_the_gold_answers():
    labels = gold_labels(split(ROWS, drop=("question_type", "expanded_abbreviations", "answerable", "task")))
    assert labels.question_types == ["yes_no", "yes_no", "unanswerable", "open", "open"]
    assert labels.types_from_gold_answers == 5 and labels.tasks is None and labels.abbreviations is None
    result = behaviours([YES, YES, OPEN, OPEN, OPEN], [OPEN] * 5, labels, GLOSSARY)
    assert result["yes_no_accuracy"] == 0.5 and result["unanswerable_declined"] == 0.0
    assert result["abbreviation_pairs"] is None and result["abbreviation_accuracy"] is None
    assert result["abbreviation_accuracy_ci95"] is None


def test_a_bad_question_type_is_one_line():
    rows = [{**ROWS[0], "question_type": "maybe"}]
    with pytest.raises(ValueError, match=r"^ko-cxr-qa \[test\] row 0 has question_type 'maybe'; it must be one of"):
        gold_labels(split(rows), "ko-cxr-qa [test]")


def answers(texts: list[str], stopped: bool = True) -> list[Answer]:
    return [Answer(text, stopped, 10, "<end_of_turn>" if stopped else None) for text in texts]


def test_quality_holds_each_target_and_prints_each_with_its_ci(capsys):
    golds = [row["answer"] for row in ROWS]
    result = quality(answers(golds), answers([OPEN] * 5, stopped=False), gold_labels(split(ROWS)), GLOSSARY)
    assert list(result["targets"]) == [
        "stop_rate",
        "looping",
        "yes_no_accuracy",
        "unanswerable_declined",
        "answerable_declined",
        "chrf_pp_difference",
        "rouge_l_chars_difference",
    ]
    assert all(target["met"] for target in result["targets"].values()) and result["meets_targets"]
    assert result["targets"]["yes_no_accuracy"]["target"] == ">= 0.85"
    assert list(result["chrf_pp_by_task"]) == ["질문 답변", "축약어 확장"]
    qa = result["chrf_pp_by_task"]["질문 답변"]
    assert qa["examples"] == 4 and qa["chrf_pp"] == 1.0 and qa["difference_ci95"][0] <= qa["difference"]
    print_quality(result)
    printed = capsys.readouterr().out
    assert "yes_no_accuracy, yes/no questions answered with the gold's 네/아니요: 100% (95% CI 34% to 100%) of 2" in (
        printed
    )
    assert "answerable_declined" in printed and "target <= 5%: met" in printed
    assert "\n  축약어 확장 (1): 1.000 vs base" in printed
    assert printed.endswith("All targets met.\n")


def test_quality_of_an_older_export_says_what_it_could_not_measure(capsys):
    rows = split(ROWS, drop=("question_type", "expanded_abbreviations", "task"))
    result = quality(answers([YES] * 5), answers([NO] * 5), gold_labels(rows), GLOSSARY)
    assert result["abbreviation_accuracy"] is None and result["chrf_pp_by_task"] is None
    assert result["targets"]["yes_no_accuracy"]["met"] is False and not result["meets_targets"]  # YES to a NO
    print_quality(result)
    printed = capsys.readouterr().out
    assert (
        "abbreviation_accuracy, abbreviations expanded as the glossary does: not measured: the split does not"
        in printed
    )
    assert "Question types read off the gold answers for 5 rows." in printed
    assert "Targets NOT met: yes_no_accuracy, unanswerable_declined, chrf_pp_difference, rouge_l_chars" in printed


def test_the_docs_fixture_holds_every_field_quality_writes():
    """tests/fixtures/quality.json (what tests/test_docs.py renders) is a quality.json as eval.check writes it now."""
    fixture = json.loads((Path(__file__).parent / "fixtures" / "quality.json").read_text())
    result = quality(answers([YES] * 5), answers([NO] * 5), gold_labels(split(ROWS)), GLOSSARY)
    run_checks = {"split", "dataset", "base", "subset", "max_new_tokens", "generation"}
    assert set(fixture) == set(result) | run_checks
    assert set(fixture["targets"]) == set(result["targets"])
    assert all(
        set(task) == set(result["chrf_pp_by_task"]["질문 답변"]) for task in fixture["chrf_pp_by_task"].values()
    )


def test_a_target_with_no_questions_on_the_split_is_not_measured_and_not_met(capsys):
    result = quality(answers([YES, NO]), answers([NO, YES]), gold_labels(split(ROWS[:2])), GLOSSARY)
    assert result["unanswerable_questions"] == 0 and result["unanswerable_declined"] is None
    assert result["targets"]["unanswerable_declined"] == {"target": ">= 0.75", "met": None}
    assert result["targets"]["yes_no_accuracy"]["met"] and not result["meets_targets"]
    print_quality(result)
    printed = capsys.readouterr().out
    assert "unanswerable_declined, unanswerable questions declined: not measured: none in the split" in printed
    assert printed.endswith("Targets not measured on this split: unanswerable_declined.\n")
