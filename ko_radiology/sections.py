"""Split a MIMIC-CXR free-text report into its sections.

    from ko_radiology.sections import parse_report
    parse_report(open("s50414267.txt").read()).sections["impression"]

MIMIC-CXR reports are hard-wrapped free text under uppercase headers (`FINDINGS:`). Headers vary between sites and
years (`HISTORY` or `INDICATION`, `RECOMMENDATION(S)`, `CONCLUSION`), some reports hold only an impression, some merge
findings and impression under one header, some label organs inside FINDINGS (`LUNGS:`, `PLEURA:`), and some carry
addenda. Known headers map to the canonical names in `SECTION_NAMES`; organ labels stay in the section they
label; any other uppercase header is kept in `other_sections` rather than lost. One compiled regex pass keeps this
fast enough for the full corpus (see `bench/bench_sections.py`).
"""

import re
from dataclasses import dataclass, field

SECTION_NAMES = (
    "examination",
    "indication",
    "history",
    "technique",
    "comparison",
    "findings",
    "impression",
    "recommendations",
    "notification",
    "addendum",
)
"""Canonical section names, in report order. HISTORY stays its own section (MIMIC uses it instead of, or beside,
INDICATION); `RECOMMENDATION(S)` becomes `recommendations`."""

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
    "FINDINGS AND IMPRESSION": "impression",
    "FINDINGS/IMPRESSION": "impression",
    "RECOMMENDATION": "recommendations",
    "RECOMMENDATIONS": "recommendations",
    "RECOMMENDATION(S)": "recommendations",
    "NOTIFICATION": "notification",
    "ADDENDUM": "addendum",
}
"""Header → canonical section. A combined `FINDINGS AND IMPRESSION` goes to `impression`, as MIT-LCP's
`section_parser` (mimic-cxr repository) maps it: the radiologist's conclusion is in it."""

ORGAN_LABELS = frozenset(
    {
        "LUNGS",
        "LUNG",
        "PLEURA",
        "PLEURAL",
        "HEART",
        "HEART AND MEDIASTINUM",
        "MEDIASTINUM",
        "CARDIOMEDIASTINAL",
        "CARDIAC",
        "HILA",
        "AIRWAYS",
        "BONES",
        "OSSEOUS STRUCTURES",
        "SOFT TISSUES",
        "UPPER ABDOMEN",
        "TUBES AND LINES",
        "LINES AND TUBES",
        "SUPPORT DEVICES",
        "DEVICES",
    }
)
"""Organ labels some radiologists put inside FINDINGS, one per line; they structure the section, not end it."""
LABELLED_SECTIONS = ("findings", "impression")
"""Sections whose organ labels stay inside them (`impression` for a combined FINDINGS AND IMPRESSION)."""

# A header is an uppercase phrase at the start of a line followed by a colon: "FINDINGS:", "RECOMMENDATION(S):".
# Patterns start with a literal newline so the regex engine can skip ahead instead of trying every position.
_HEADER = re.compile(r"\n[ \t]*([A-Z][A-Z()/&]*(?: [A-Z()/&]+){0,5}):")
# A new paragraph starts after a blank line or before a numbered item ("2.  Small effusion").
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*(?:(?:\n[ \t]*)+|(?=\d{1,2}\.\s))")


@dataclass
class ParsedReport:
    """Sections of one report. `flags` name anything a reader should know (e.g. `no_sections_found`)."""

    sections: dict[str, str] = field(default_factory=dict)
    other_sections: list[dict[str, str]] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


def unwrap(text: str) -> str:
    """Join hard-wrapped lines into paragraphs; blank lines and numbered items (`2.  ...`) start new lines.

    One regex pass and C-level split/join rather than a loop over lines: this runs for every section of every report.
    """
    text = _PARAGRAPH_BREAK.sub("\x00", text.strip())
    if "\x00" not in text:  # most sections are one paragraph
        return " ".join(text.split())
    return "\n".join(filter(None, [" ".join(paragraph.split()) for paragraph in text.split("\x00")]))


def _is_header(name: str) -> bool:
    # Unknown all-caps words at a line start count as headers only when long enough to not be an abbreviation.
    return name in HEADER_ALIASES or len(name) >= 6


def parse_report(text: str) -> ParsedReport:
    """Split one report into canonical sections, other sections and flags.

    Args:
        text: The report as found in `files/pNN/pNNNNNNNN/sNNNNNNNN.txt` (already decoded).
    """
    parsed = ParsedReport()
    if "\r" in text:  # Windows (\r\n) and old Mac (\r) line ends: headers and paragraphs are found by \n
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if "FINAL REPORT" not in text:
        parsed.flags.append("no_final_report_header")
    # "\n" first, so a header on the first line also follows a newline. split() gives
    # [preamble, header, body, header, body, ...] in one C-level pass.
    preamble, *pairs = _HEADER.split("\n" + text)
    body_parts: list[str] = []
    header = None
    for name, body in zip(pairs[::2], pairs[1::2], strict=True):
        if name in ORGAN_LABELS and HEADER_ALIASES.get(header) in LABELLED_SECTIONS:
            body_parts.append(f"\n\n{name}:{body}")  # its own line: a blank line is a paragraph break for `unwrap`
        elif _is_header(name):
            if header is not None:
                _add_section(parsed, header, unwrap("".join(body_parts)))
            header, body_parts = name, [body]
        elif header is None:  # an abbreviation followed by a colon ("NG: in stomach") is text, not a header
            preamble += f"\n{name}:{body}"
        else:
            body_parts.append(f"\n{name}:{body}")
    if header is not None:
        _add_section(parsed, header, unwrap("".join(body_parts)))
    preamble = unwrap(preamble.replace("FINAL REPORT", "", 1))
    if preamble:
        parsed.other_sections.insert(0, {"name": "preamble", "text": preamble})
    if header is None:
        parsed.flags.append("no_sections_found")
    elif len(parsed.sections) == 1 and "impression" in parsed.sections:
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


def join_sections(sections: dict[str, str | None], language: str) -> str:
    """A report's sections in canonical order as one labelled text ("소견: ...", blank line between sections), so a
    reader (or a model) can tell the impression from the comparison."""
    labels = SECTION_LABELS[language]
    return "\n\n".join(f"{labels[name]}: {sections[name]}" for name in SECTION_NAMES if sections.get(name))
