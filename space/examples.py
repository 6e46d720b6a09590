"""Examples for the app: one report and question per kind of question, from the shipped sample's test split (never a
report the model was trained on): an open question, a yes/no one, one the report cannot answer, and one request of
each other task type."""

from dataclasses import dataclass

from ko_radiology.prompts import TASK_TYPES
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_qa, load_gold_translations
from ko_radiology.sections import join_sections
from ko_radiology.splits import load_split_assignments

QA_KINDS = {"open": "", "yes_no": " (네/아니요)", "unanswerable": " (판독문에 없는 내용)"}
"""The question types an example is shown for (`question_type`), and how its label names them."""


@dataclass(frozen=True)
class Example:
    task: str
    report: str
    question: str
    label: str


def sample_examples() -> list[Example]:
    """One test-split question per kind (`QA_KINDS` of 질문 답변, then the other task types in `TASK_TYPES` order),
    each from a different report where possible."""
    splits = load_split_assignments(SAMPLE_DIR).by_study
    translations = load_gold_translations(SAMPLE_DIR)
    test_qa = {study: records for study, records in load_gold_qa(SAMPLE_DIR).items() if splits.get(study) == "test"}
    kinds = [(TASK_TYPES[0], kind) for kind in QA_KINDS] + [(task, None) for task in TASK_TYPES[1:]]
    examples: list[Example] = []
    for task, kind in kinds:
        used = {example.report for example in examples}
        candidates = [
            Example(
                task, join_sections(translations[study], "ko"), record["instruction"], task + QA_KINDS.get(kind, "")
            )
            for study, records in test_qa.items()
            for record in records
            if record["task"] == task and kind in (None, record.get("question_type", "open"))
        ]
        fresh = [example for example in candidates if example.report not in used]
        examples += (fresh or candidates)[:1]
    return examples
