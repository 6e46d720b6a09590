"""`Features` of every config, in one place: the builder declares them, the exporter writes them, tests compare."""

import datasets

from ko_radiology.sections import SECTION_NAMES

MESSAGE = {"role": datasets.Value("string"), "content": datasets.Value("string")}

NOTES = datasets.Features(
    {
        "study_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "source_path": datasets.Value("string"),
        "text": datasets.Value("string"),
        **{name: datasets.Value("string") for name in SECTION_NAMES},
        "other_sections": datasets.List({"name": datasets.Value("string"), "text": datasets.Value("string")}),
        "parse_flags": datasets.List(datasets.Value("string")),
    }
)

TRANSLATION = datasets.Features(
    {
        "study_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "sections": datasets.List(
            {"name": datasets.Value("string"), "en": datasets.Value("string"), "ko": datasets.Value("string")}
        ),
        "report_en": datasets.Value("string"),
        "report_ko": datasets.Value("string"),
        "translator_backend": datasets.Value("string"),
        "translator_model": datasets.Value("string"),
        "hangul_ratio": datasets.Value("float32"),
        "quality_flags": datasets.List(datasets.Value("string")),
    }
)

QA = datasets.Features(
    {
        "id": datasets.Value("string"),
        "study_id": datasets.Value("string"),
        "patient_id": datasets.Value("string"),
        "report_ko": datasets.Value("string"),
        "task": datasets.Value("string"),
        "instruction": datasets.Value("string"),
        "answer": datasets.Value("string"),
        "answerable": datasets.Value("bool"),
        "question_type": datasets.Value("string"),
        "expanded_abbreviations": datasets.List(datasets.Value("string")),
        "messages": datasets.List(MESSAGE),
        "generator_model": datasets.Value("string"),
        "split": datasets.Value("string"),
        "translation_flags": datasets.List(datasets.Value("string")),
    }
)
"""`question_type`: `yes_no` (the answer starts with 네/아니요), `open`, or `unanswerable` (`answerable` false: the
answer says the report does not say it); `expanded_abbreviations`: the abbreviations an 축약어 확장 answer expands;
`translation_flags`: the `quality_flags` of the translation whose `report_ko` the pair was built from."""

FEATURES = {"notes": NOTES, "translation": TRANSLATION, "qa": QA}
