"""A pasted report as the model reads it: its sections, in Korean, cut to fit the model's context.

Reports come as the dataset writes them (`소견: ...` blocks, `ko_radiology.sections.join_sections`), as English
MIMIC-style text (`FINDINGS:`), or as free text. Labelled sections let a report that is too long lose its least
important parts first, never FINDINGS or IMPRESSION.
"""

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ko_radiology.prompts import build_messages
from ko_radiology.sections import SECTION_LABELS, join_sections, parse_report
from ko_radiology.text_checks import is_mostly_korean

KEPT_SECTIONS = ("impression", "findings")
DROP_ORDER = (
    "technique",
    "examination",
    "comparison",
    "notification",
    "addendum",
    "history",
    "indication",
    "recommendations",
)
"""Sections dropped first to last when a report does not fit: how it was taken before why, never what was found."""
KOREAN_LABEL_NAMES = {label: name for name, label in SECTION_LABELS["ko"].items()}
_KOREAN_HEADER = re.compile(
    r"^[ \t]*(" + "|".join(sorted(map(re.escape, KOREAN_LABEL_NAMES), key=len, reverse=True)) + r")[ \t]*:",
    re.MULTILINE,
)
CUT_MARK = " …(이하 생략)"


@dataclass
class Report:
    """`sections` (canonical name → text) when the report is labelled, else only `text`."""

    text: str
    language: str
    sections: dict[str, str] | None = None

    def render(self) -> str:
        return join_sections(self.sections, self.language) if self.sections else self.text.strip()

    def label(self, name: str) -> str:
        return SECTION_LABELS[self.language][name]


def read_report(text: str) -> Report:
    """Korean (by the share of Hangul, since Korean reports keep English abbreviations) or English, with sections
    when every part of the text sits under a known header."""
    if is_mostly_korean(text, threshold=0.3):
        return Report(text, "ko", _korean_sections(text))
    parsed = parse_report(text)
    return Report(text, "en", None if parsed.other_sections or not parsed.sections else parsed.sections)


def _korean_sections(text: str) -> dict[str, str] | None:
    preamble, *pairs = _KOREAN_HEADER.split(text)
    if preamble.strip() or not pairs:
        return None
    sections: dict[str, str] = {}
    for label, body in zip(pairs[::2], pairs[1::2], strict=True):
        name = KOREAN_LABEL_NAMES[label]
        sections[name] = f"{sections.get(name, '')}\n{body.strip()}".strip()
    return sections


@dataclass
class FittedPrompt:
    """The messages to send, the report inside them, and what was cut to get there (Korean, for the visitor)."""

    messages: list[dict[str, str]]
    report: str
    notices: list[str] = field(default_factory=list)


def fit_to_context(
    report: Report,
    question: str,
    history: Sequence[tuple[str, str]],
    system_prompt: str,
    budget_tokens: int,
    count_tokens: Callable[[list[dict]], int],
) -> FittedPrompt:
    """Fit the prompt into `budget_tokens`: drop the least important sections, then the oldest turns, then cut the
    end of the findings (or of an unlabelled report). IMPRESSION is never cut.

    Raises:
        ValueError: If even the impression and the question alone do not fit.
    """
    sections = dict(report.sections) if report.sections else {"findings": report.text.strip()}
    turns = list(history)

    def rendered() -> str:
        return join_sections(sections, report.language) if report.sections else sections["findings"]

    def messages() -> list[dict[str, str]]:
        return build_messages(rendered(), question, history=turns, system_prompt=system_prompt)

    def fits() -> bool:
        return count_tokens(messages()) <= budget_tokens

    dropped = []
    for name in DROP_ORDER:
        if name in sections and not fits():
            del sections[name]
            dropped.append(name)
    dropped_turns = 0
    while turns and not fits():
        turns.pop(0)
        dropped_turns += 1
    cut = not fits()
    if cut:
        findings = sections.get("findings", "")
        sections["findings"] = _longest_prefix(findings, lambda prefix: _fits_with(sections, prefix, fits))
        sections["findings"] += CUT_MARK
        if not fits():
            raise ValueError("질문과 판독문 결론만으로도 모델의 문맥 길이를 넘습니다. 질문을 줄여 주세요.")
    return FittedPrompt(messages(), rendered(), _notices(report, dropped, dropped_turns, cut, budget_tokens))


def _fits_with(sections: dict[str, str], findings: str, fits: Callable[[], bool]) -> bool:
    sections["findings"] = findings + CUT_MARK
    return fits()


def _longest_prefix(text: str, fits: Callable[[str], bool]) -> str:
    """The longest prefix of `text` that fits (binary search: a few dozen token counts at most)."""
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if fits(text[:middle]):
            low = middle
        else:
            high = middle - 1
    return text[:low].rstrip()


def _notices(report: Report, dropped: list[str], dropped_turns: int, cut: bool, budget_tokens: int) -> list[str]:
    notices = []
    if dropped:
        labels = ", ".join(report.label(name) for name in dropped)
        notices.append(
            f"판독문이 모델의 문맥 길이({budget_tokens} 토큰)를 넘어 덜 중요한 섹션을 빼고 보냈습니다: {labels}."
        )
    if dropped_turns:
        notices.append(f"대화가 길어 가장 오래된 질문 {dropped_turns}개를 모델에 보내지 않았습니다.")
    if cut:
        part = "소견" if report.sections else "판독문"
        notices.append(f"{part}의 뒷부분을 잘라 보냈습니다. 결론은 그대로입니다.")
    return notices
