"""Checks on one translated section. A failing record is flagged and counted, never dropped silently: a user
decides what to do with `quality_flags`, and the build summary says how many there are."""

import re

from ko_radiology.glossary import Glossary
from ko_radiology.text_checks import is_mostly_korean

_NUMBER = re.compile(r"\d+(?:\.\d+)?")
# Latin letters only around units: Korean particles glue to them ("2 cm에서"), and \b would treat them as letters.
_UNIT = re.compile(r"(?<![A-Za-z])(?:mm|cm|ml)(?![A-Za-z])|%|°", re.IGNORECASE)
LATERALITY = {
    "right": ("우", "오른"),
    "left": ("좌", "왼"),
    "bilateral": ("양측", "양쪽", "양 "),
}
CHECKED_CATEGORIES = ("finding", "disease", "device")
"""Glossary categories whose Korean term a translation must use; descriptors and anatomy vary legitimately."""
UNTRANSLATED_SECTIONS = ("examination",)
"""Exam names stay English in Korean reports ("CHEST (PA AND LAT)"), so they are not held to the Hangul check."""


def check_section(name: str, english: str, korean: str, glossary: Glossary) -> list[str]:
    """Flags for one section, each `<section>:<problem>`; empty when the translation passes."""
    problems = []
    if not korean.strip():
        problems.append("empty")
    elif name not in UNTRANSLATED_SECTIONS and not is_mostly_korean(korean):
        problems.append("not_korean")
    if sorted(_NUMBER.findall(english)) != sorted(_NUMBER.findall(korean)):
        problems.append("numbers_changed")
    if sorted(_units(english)) != sorted(_units(korean)):
        problems.append("units_changed")
    lowered = english.lower()
    for side, korean_markers in LATERALITY.items():
        if re.search(rf"\b{side}\b", lowered) and not any(marker in korean for marker in korean_markers):
            problems.append(f"laterality_lost:{side}")
    missing = [
        entry.english
        for entry in glossary.terms_in(english)
        if entry.category in CHECKED_CATEGORIES and entry.korean not in korean
    ]
    if missing:
        problems.append("glossary_terms_missing:" + "|".join(missing))
    return [f"{name}:{problem}" for problem in problems]


def _units(text: str) -> list[str]:
    return [unit.lower() for unit in _UNIT.findall(text)]
