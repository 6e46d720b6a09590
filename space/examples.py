"""Examples for the app: one report and question per task type, from the shipped sample's test split (never a
report the model was trained on)."""

from dataclasses import dataclass

from ko_radiology.prompts import TASK_TYPES
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_qa, load_gold_translations
from ko_radiology.sections import join_sections
from ko_radiology.splits import load_split_assignments


@dataclass(frozen=True)
class Example:
    task: str
    report: str
    question: str


def sample_examples() -> list[Example]:
    """One test-split question per task type, in `TASK_TYPES` order, each from a different report where possible."""
    splits = load_split_assignments(SAMPLE_DIR).by_study
    translations = load_gold_translations(SAMPLE_DIR)
    test_qa = {study: records for study, records in load_gold_qa(SAMPLE_DIR).items() if splits.get(study) == "test"}
    examples: list[Example] = []
    for task in TASK_TYPES:
        used = {example.report for example in examples}
        candidates = [
            Example(task, join_sections(translations[study], "ko"), record["instruction"])
            for study, records in test_qa.items()
            for record in records
            if record["task"] == task
        ]
        fresh = [example for example in candidates if example.report not in used]
        examples += (fresh or candidates)[:1]
    return examples
