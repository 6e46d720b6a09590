"""Each translation check catches its problem and passes a faithful translation."""

import pytest

from dataset_builder.translation_checks import check_section
from ko_radiology.glossary import Glossary

GLOSSARY = Glossary.from_tsv()
ENGLISH = "Small right pleural effusion. A 1.2 cm nodule in the left upper lobe."
FAITHFUL = "소량의 우측 흉막삼출이 있음. 좌상엽에 1.2 cm 결절이 있음."


def test_a_faithful_translation_passes():
    assert check_section("findings", ENGLISH, FAITHFUL, GLOSSARY) == []


@pytest.mark.parametrize(
    "korean, flag",
    [
        ("", "findings:empty"),
        ("Small right pleural effusion. 1.2 cm nodule.", "findings:not_korean"),
        (FAITHFUL.replace("1.2", "2.1"), "findings:numbers_changed"),
        (FAITHFUL.replace("cm", "mm"), "findings:units_changed"),
        (FAITHFUL.replace("우측 ", ""), "findings:laterality_lost:right"),
        (FAITHFUL.replace("좌상엽", "상엽"), "findings:laterality_lost:left"),
        (FAITHFUL.replace("흉막삼출", "물"), "findings:glossary_terms_missing:pleural effusion"),
    ],
)
def test_each_problem_is_flagged(korean, flag):
    assert flag in check_section("findings", ENGLISH, korean, GLOSSARY)


def test_exam_names_may_stay_english():
    assert check_section("examination", "CHEST (PA AND LAT)", "CHEST (PA AND LAT)", GLOSSARY) == []
