"""What kind of answer a Korean text is: a yes/no answer's first word, or a decline to answer.

The gold answers follow the original project's rules (a yes/no answer starts with 네 or 아니요 and then gives the
report's words; an unanswerable question is answered by saying the report does not say it), so the same rules read a
model's answer: the builder rejects generated answers that refuse an answerable question, and `eval.check` counts
yes/no answers that start with the gold's word and unanswerable questions declined.
"""

import re
from typing import Literal

QuestionType = Literal["yes_no", "open", "unanswerable"]
QUESTION_TYPES: tuple[str, ...] = ("yes_no", "open", "unanswerable")

YES_NO_START = re.compile(r"\s*(네|예|아니요|아니오|아뇨)(?=[,.\s!]|$)")
NORMALISED_YES_NO = {"네": "네", "예": "네", "아니요": "아니요", "아니오": "아니요", "아뇨": "아니요"}
DECLINE = re.compile(
    r"정보(?:는|가|도) (?:없|포함되어 있지 않|나와 있지 않)|답변(?:할|드릴|하기) 수 없|알 수 없|확인할 수 없"
    r"|(?:나와|기술되어|언급되어|적혀|포함되어) 있지 않|언급(?:이|은) 없"
)
"""Phrases that say the report does not answer; matched anywhere, because a decline may follow a related fact."""


def yes_no_word(answer: str) -> str | None:
    """`네` or `아니요` when the answer starts with a yes/no word (예/아니오/아뇨 count as their standard forms)."""
    match = YES_NO_START.match(answer)
    return NORMALISED_YES_NO[match.group(1)] if match else None


def declines(answer: str) -> bool:
    """Whether the answer says the report cannot answer the question."""
    return DECLINE.search(answer) is not None


def question_type(answerable: bool, answer: str) -> QuestionType:
    """The type of a generated pair, read off its answer as the gold rules write it."""
    if not answerable:
        return "unanswerable"
    return "yes_no" if yes_no_word(answer) else "open"
