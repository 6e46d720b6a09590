"""Reading a judge's reply: strict JSON when the server honoured the schema, tolerant otherwise.

Servers that ignore `response_format` (`transformers serve`, many proxies) wrap the JSON in prose or code fences,
or answer in prose outright. Whatever cannot be read as a score in range is a failure with its reason, never a 0:
the original scored every unparseable reply 0, which reads as "the worst answer" rather than "no judgement".
"""

import json
import re
from dataclasses import dataclass
from typing import Any

from ko_radiology.judge.rubrics import SCORE_MAX, SCORE_MIN

RATIONALE_CHARS = 300
"""Rationales are kept short in results and CSVs; the full reply stays in the cache."""

_SCORE = rf"([{SCORE_MIN}-{SCORE_MAX}])(?![0-9.])"
_NUMBERED_PROSE = re.compile(
    rf"(?:답변|answer)\s*#?\s*(\d+)\s*[\]):：-]?[^\n]{{0,60}}?(?:점수|score)\s*[:：=]?\s*{_SCORE}", re.IGNORECASE
)
_NUMBERED_PROSE_POINTS = re.compile(rf"(?:답변|answer)\s*#?\s*(\d+)\s*[\]):：-]?[^\n\d]{{0,60}}?{_SCORE}\s*점")
_SINGLE_PROSE = re.compile(rf"(?:점수|score)\s*[:：=]?\s*{_SCORE}|{_SCORE}\s*점", re.IGNORECASE)


@dataclass(frozen=True)
class ParsedJudgement:
    """One answer's judgement as shown (`number` 1-based in shown order); `error` set means no usable score."""

    number: int
    score: int | None
    rationale: str
    error: str | None = None


def _json_candidates(text: str):
    """The whole reply, the inside of a code fence, then every balanced-looking `{...}`/`[...]` span."""
    yield text
    yield from re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)
    decoder = json.JSONDecoder()
    for start, char in enumerate(text):
        if char in "{[":
            try:
                yield decoder.raw_decode(text[start:])[0]
            except ValueError:
                continue


def _json_items(data: Any) -> list[dict] | None:
    """`{"judgements": [...]}`, a bare list, or one `{"score": ...}` object."""
    if isinstance(data, dict) and isinstance(data.get("judgements"), list):
        data = data["judgements"]
    elif isinstance(data, dict) and "score" in data:
        data = [data]
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return data
    return None


def _load_items(text: str) -> list[dict] | None:
    """The first candidate that decodes to judgements (a stray `[1]` in prose is skipped)."""
    for candidate in _json_candidates(text.strip()):
        if isinstance(candidate, str):
            try:
                candidate = json.loads(candidate)
            except ValueError:
                continue
        if (items := _json_items(candidate)) is not None:
            return items
    return None


def _score_of(value: Any) -> int | None:
    """3, 3.0, "3" and "3점" read as 3; anything else (or out of range) as None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float) and float(value).is_integer():
        value = int(value)
    elif isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+)\s*(?:점)?\s*", value)):
        value = int(match.group(1))
    else:
        return None
    return value if SCORE_MIN <= value <= SCORE_MAX else None


def _from_items(items: list[dict], num_answers: int) -> dict[int, ParsedJudgement]:
    found: dict[int, ParsedJudgement] = {}
    for position, item in enumerate(items, start=1):
        number = item.get("answer", position)
        number = number if isinstance(number, int) and not isinstance(number, bool) else position
        if not 1 <= number <= num_answers or number in found:
            continue
        rationale = str(item.get("rationale") or item.get("reason") or "")[:RATIONALE_CHARS]
        score = _score_of(item.get("score"))
        error = None if score is not None else f"score {item.get('score')!r} is not an integer {SCORE_MIN}-{SCORE_MAX}"
        found[number] = ParsedJudgement(number, score, rationale, error)
    return found


def _from_prose(text: str, num_answers: int) -> dict[int, ParsedJudgement]:
    snippet = " ".join(text.split())[:RATIONALE_CHARS]
    found: dict[int, ParsedJudgement] = {}
    for pattern in (_NUMBERED_PROSE, _NUMBERED_PROSE_POINTS):
        for match in pattern.finditer(text):
            number, score = int(match.group(1)), int(match.group(2))
            if 1 <= number <= num_answers and number not in found:
                found[number] = ParsedJudgement(number, score, snippet)
    if not found and num_answers == 1:
        scores = {int(next(g for g in match.groups() if g)) for match in _SINGLE_PROSE.finditer(text)}
        if len(scores) == 1:  # two different numbers in prose about one answer: no way to tell which is the score
            found[1] = ParsedJudgement(1, scores.pop(), snippet)
    return found


def parse_judgements(text: str, num_answers: int) -> list[ParsedJudgement]:
    """One `ParsedJudgement` per shown answer, in shown order; unreadable ones carry the reason in `error`."""
    items = _load_items(text)
    found = _from_items(items, num_answers) if items is not None else _from_prose(text, num_answers)
    reason = "no judgement for this answer" if found else f"no score found in the reply: {text[:120]!r}"
    return [found.get(number) or ParsedJudgement(number, None, "", reason) for number in range(1, num_answers + 1)]
