"""Split a MIMIC-CXR free-text report into its sections.

    from dataset_builder.sections import parse_report
    parse_report(open("s50414267.txt").read()).sections["impression"]

MIMIC-CXR reports are hard-wrapped free text under uppercase headers (`FINDINGS:`). Headers vary between sites and
years (`HISTORY` or `INDICATION`, `RECOMMENDATION(S)`, `CONCLUSION`), some reports hold only an impression, and some
carry addenda. Known headers map to the canonical names in `schemas.SECTION_NAMES`; any other uppercase header is
kept in `other_sections` rather than lost. One compiled regex pass keeps this fast enough for the full corpus
(see `bench/bench_sections.py`).
"""

import re
from dataclasses import dataclass, field

from dataset_builder.schemas import SECTION_NAMES

HEADER_ALIASES = {
    "EXAMINATION": "examination",
    "EXAM": "examination",
    "TYPE OF EXAMINATION": "examination",
    "INDICATION": "indication",
    "INDICATIONS": "indication",
    "CLINICAL INDICATION": "indication",
    "REASON FOR EXAM": "indication",
    "REASON FOR EXAMINATION": "indication",
    "HISTORY": "history",
    "CLINICAL HISTORY": "history",
    "TECHNIQUE": "technique",
    "COMPARISON": "comparison",
    "COMPARISONS": "comparison",
    "FINDINGS": "findings",
    "FINDING": "findings",
    "IMPRESSION": "impression",
    "IMPRESSIONS": "impression",
    "CONCLUSION": "impression",
    "RECOMMENDATION": "recommendations",
    "RECOMMENDATIONS": "recommendations",
    "RECOMMENDATION(S)": "recommendations",
    "NOTIFICATION": "notification",
    "ADDENDUM": "addendum",
}

# A header is an uppercase phrase at the start of a line followed by a colon: "FINDINGS:", "RECOMMENDATION(S):".
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z()/&]*(?: [A-Z()/&]+){0,5}):", re.MULTILINE)
_FINAL_REPORT = re.compile(r"^[ \t]*FINAL REPORT[ \t]*$", re.MULTILINE)
_NUMBERED_ITEM = re.compile(r"^\d{1,2}\.\s")
_SPACES = re.compile(r"[ \t]+")


@dataclass
class ParsedReport:
    """Sections of one report. `flags` name anything a reader should know (e.g. `no_sections_found`)."""

    sections: dict[str, str] = field(default_factory=dict)
    other_sections: list[dict[str, str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def unwrap(text: str) -> str:
    """Join hard-wrapped lines into paragraphs; blank lines and numbered items (`2.  ...`) start new lines."""
    paragraphs, current = [], []
    for raw_line in text.splitlines():
        line = _SPACES.sub(" ", raw_line).strip()
        if not line or _NUMBERED_ITEM.match(line):
            if current:
                paragraphs.append(" ".join(current))
            current = [line] if line else []
        else:
            current.append(line)
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(paragraphs)


def _is_header(name: str) -> bool:
    # Unknown all-caps words at a line start count as headers only when long enough to not be an abbreviation.
    return name in HEADER_ALIASES or len(name) >= 6


def parse_report(text: str) -> ParsedReport:
    """Split one report into canonical sections, other sections and flags.

    Args:
        text: The report as found in `files/pNN/pNNNNNNNN/sNNNNNNNN.txt` (already decoded).
    """
    parsed = ParsedReport()
    final_report = _FINAL_REPORT.search(text)
    if final_report is None:
        parsed.flags.append("no_final_report_header")
    headers = [match for match in _HEADER.finditer(text) if _is_header(match.group(1))]
    preamble_end = headers[0].start() if headers else len(text)
    preamble = unwrap(_FINAL_REPORT.sub("", text[:preamble_end]))
    if preamble:
        parsed.other_sections.append({"name": "preamble", "text": preamble})
    ends = [match.start() for match in headers[1:]] + [len(text)] if headers else []
    for match, end in zip(headers, ends, strict=True):
        _add_section(parsed, match.group(1), unwrap(text[match.end() : end]))
    if not headers:
        parsed.flags.append("no_sections_found")
    elif set(parsed.sections) == {"impression"}:
        parsed.flags.append("impression_only")
    return parsed


def _add_section(parsed: ParsedReport, header: str, body: str) -> None:
    name = HEADER_ALIASES.get(header)
    if name is None:
        parsed.other_sections.append({"name": header, "text": body})
    elif name in parsed.sections:
        parsed.flags.append(f"repeated_section:{name}")
        parsed.sections[name] = f"{parsed.sections[name]}\n{body}".strip()
    else:
        parsed.sections[name] = body


SECTION_LABELS = {
    "en": {name: name.upper() for name in SECTION_NAMES},
    "ko": {
        "examination": "검사",
        "indication": "검사 사유",
        "history": "병력",
        "technique": "촬영 방법",
        "comparison": "비교",
        "findings": "소견",
        "impression": "결론",
        "recommendations": "권고",
        "notification": "통보",
        "addendum": "추가 소견",
    },
}


def join_sections(sections: dict[str, str], language: str) -> str:
    """A report's sections in canonical order as one labelled text ("소견: ...", blank line between sections), so a
    reader (or a model) can tell the impression from the comparison."""
    labels = SECTION_LABELS[language]
    return "\n\n".join(f"{labels[name]}: {sections[name]}" for name in SECTION_NAMES if sections.get(name))
