"""The hand-written sample corpus is complete and consistent (it is the gold standard every stage is tested on)."""

import json
import re
from collections import Counter

import pytest

from ko_radiology.answer_kinds import QUESTION_TYPES, declines, yes_no_word
from ko_radiology.glossary import Glossary
from ko_radiology.prompts import TASK_TYPES
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_qa, load_gold_translations, read_jsonl
from ko_radiology.sections import parse_report
from ko_radiology.text_checks import is_mostly_korean

REPORT_PATH = re.compile(r"files/p(\d{2})/p\1\d{6}/s5\d{7}\.txt")
REPORTS = sorted(SAMPLE_DIR.glob("files/p*/p*/s*.txt"))
TRANSLATIONS = load_gold_translations(SAMPLE_DIR)
QA = load_gold_qa(SAMPLE_DIR)
SPLITS = json.loads((SAMPLE_DIR / "splits.json").read_text())
SENTENCE_END = re.compile(r"[.?!](?=\s|$)")


def trigrams(text: str) -> set[str]:
    compact = re.sub(r"[\s.,()]+", "", text)
    return {compact[i : i + 3] for i in range(max(1, len(compact) - 2))}


def test_enough_reports_in_the_mimic_tree_layout():
    assert len(REPORTS) >= 60
    for path in REPORTS:
        assert REPORT_PATH.fullmatch(path.relative_to(SAMPLE_DIR).as_posix()), path


@pytest.mark.parametrize("path", REPORTS, ids=lambda p: p.stem)
def test_report_parses_with_its_headers_and_has_translation_and_four_tasks(path):
    text = path.read_text(encoding="utf-8")
    assert text.splitlines()[0].strip() == "FINAL REPORT"
    parsed = parse_report(text)
    assert parsed.sections, "no section found"
    assert not parsed.other_sections
    assert set(TRANSLATIONS[path.stem]) == set(parsed.sections)
    assert {record["task"] for record in QA[path.stem]} == set(TASK_TYPES)


def test_layouts_vary_like_mimic():
    parsed = [parse_report(path.read_text(encoding="utf-8")) for path in REPORTS]
    assert sum("impression_only" in report.flags for report in parsed) >= 3
    assert sum("history" in report.sections for report in parsed) >= 5
    assert sum("technique" not in report.sections for report in parsed) >= 5
    for extra in ("recommendations", "notification", "addendum"):
        assert sum(extra in report.sections for report in parsed) >= 1, extra
    assert sum("___" in path.read_text() for path in REPORTS) >= 50
    texts = [path.read_text() for path in REPORTS]
    assert sum("FINDINGS AND IMPRESSION:" in text for text in texts) >= 1
    assert sum(re.search(r"^ (LUNGS|PLEURA|HEART|BONES|MEDIASTINUM):", text, re.M) is not None for text in texts) >= 2


def test_translations_are_mostly_korean():
    for study_id, sections in TRANSLATIONS.items():
        for name, korean in sections.items():
            if name != "examination":  # exam names stay English: "CHEST (PA AND LAT)"
                assert is_mostly_korean(korean), (study_id, name, korean)


def test_qa_records_are_korean_grounded_and_short():
    records = [record for records in QA.values() for record in records]
    ids = [record["id"] for record in records]
    assert len(ids) == len(set(ids))
    assert set(QA) == set(TRANSLATIONS) == {path.stem for path in REPORTS}
    for record in records:
        assert is_mostly_korean(record["instruction"]) and is_mostly_korean(record["answer"]), record["id"]
        assert len(SENTENCE_END.findall(record["answer"])) <= 3, record["id"]
    assert Counter(record["answerable"] for record in records)[False] >= 5


def test_every_pair_has_a_question_type_its_answer_follows():
    """The gold rules: a yes/no answer starts with 네 or 아니요, an unanswerable question is declined, and no
    answerable one is (so `eval.check`'s decline detector reads these answers right)."""
    for record in (record for records in QA.values() for record in records):
        kind = record["question_type"]
        assert kind in QUESTION_TYPES, record["id"]
        assert (kind == "unanswerable") == (not record["answerable"]), record["id"]
        assert kind == "open" or record["task"] == "질문 답변", record["id"]
        assert (kind == "yes_no") == bool(re.match(r"(네|아니요), ", record["answer"])), record["id"]
        assert declines(record["answer"]) == (kind == "unanswerable"), record["id"]


def test_a_yes_answer_affirms_what_the_korean_report_says():
    """The first sentence of a 네 answer is in the report's own words: most of its character trigrams are the
    report's (a finding the report does not state would not be)."""
    weak = []
    for study_id, records in QA.items():
        report = trigrams(" ".join(TRANSLATIONS[study_id].values()))
        for record in records:
            if record["answer"].startswith("네, "):
                first = trigrams(record["answer"][3:].split(". ")[0])
                if len(first & report) / len(first) < 0.5:
                    weak.append(record["id"])
    assert not weak, f"네 answers not in the report's words: {weak}"


def test_splits_measure_yes_no_and_unanswerable_questions():
    by_split = {split: Counter() for split in SPLITS}
    split_of = {study: split for split, studies in SPLITS.items() for study in studies}
    for study_id, records in QA.items():
        for record in records:
            counts = by_split[split_of[study_id]]
            counts[record["question_type"]] += 1
            counts[yes_no_word(record["answer"]) if record["question_type"] == "yes_no" else ""] += 1
    assert by_split["test"]["yes_no"] >= 40 and by_split["test"]["unanswerable"] >= 20, by_split["test"]
    for counts in by_split.values():
        assert 0.4 <= counts["네"] / counts["yes_no"] <= 0.6, counts
        assert counts["unanswerable"] >= counts["yes_no"] / 3, counts


def test_splits_are_disjoint_cover_every_report_and_hold_out_a_test_set():
    assigned = [study for split in ("train", "validation", "test") for study in SPLITS[split]]
    assert len(assigned) == len(set(assigned))
    assert set(assigned) == {path.stem for path in REPORTS}
    assert len(SPLITS["test"]) >= 15
    patients = {path.stem: path.parent.name for path in REPORTS}
    by_split = {split: {patients[study] for study in SPLITS[split]} for split in SPLITS}
    assert not by_split["train"] & by_split["test"], "a patient's studies straddle train and test"


def test_glossary_is_large_and_covers_every_expanded_abbreviation():
    glossary = Glossary.from_tsv()
    assert len(glossary) >= 200
    assert sum(entry.expansion != "" for entry in glossary.entries.values()) >= 40
    for study_id, records in QA.items():
        for record in records:
            for abbreviation in record["expanded_abbreviations"]:
                assert abbreviation in glossary, (study_id, abbreviation)
                assert abbreviation in record["answer"]


def test_sample_is_labelled_synthetic_and_licensed():
    readme = (SAMPLE_DIR / "README.md").read_text()
    assert "synthetic" in readme.lower() and "CC BY 4.0" in readme
    assert (SAMPLE_DIR / "LICENSE").is_file()
    assert read_jsonl(SAMPLE_DIR / "gold" / "qa.jsonl")


def test_abbreviation_questions_name_only_abbreviations_their_korean_report_shows():
    """The model is told to answer only from the report, so every abbreviation an 축약어 확장 question names or its
    answer expands must appear in the Korean report it is shown (as a whole word: `AP` is not in `CAP`)."""
    missing = []
    for study_id, records in QA.items():
        report = " ".join(TRANSLATIONS[study_id].values())
        for record in (record for record in records if record["task"] == "축약어 확장"):
            named = {word for word in re.findall(r"[A-Za-z]+(?:/[A-Za-z]+)*", record["instruction"]) if len(word) > 1}
            for abbreviation in sorted(named | set(record["expanded_abbreviations"])):
                if not re.search(rf"(?<![A-Za-z]){re.escape(abbreviation)}(?![A-Za-z])", report):
                    missing.append(f"{record['id']}: {abbreviation}")
    assert not missing, f"abbreviations absent from the Korean report: {missing}"
