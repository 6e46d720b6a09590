"""Reading a judge's reply: strict JSON when the server honoured the schema, tolerant of its wrapping otherwise.

Servers that ignore `response_format` (`transformers serve`, many proxies) wrap the JSON in prose or code fences,
or answer in prose outright ("답변 1: ... 점수: 3", "3점", "Answer 1: score 3"). Tolerant of the wrapping, strict on
the score: an answer is scored only when the reply states exactly one score in range for it. A refusal, a range
("2-3"), a fraction or another scale ("4/10", "3/4"), an out-of-range number or two different scores is a failure
with its reason and the raw reply, never a score and never a 0: the original scored every unparseable reply 0, which
reads as "the worst answer" rather than "no judgement", and a lax reading turned "1~4점 중 어느 것도 아님" into a 4.
"""

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ko_radiology.judge.rubrics import SCORE_MAX, SCORE_MIN

RATIONALE_CHARS = 300
"""Rationales are kept short in results and CSVs; the full reply stays in the cache and in each failure's error."""

_NUMBER = r"(?<![\d.])\d+(?:\.\d+)?"
_SPAN = rf"{_NUMBER}(?:\s*(?:[-~–〜/,]|to|or|and|out of|또는|내지|및)\s*\d+(?:\.\d+)?)*"
"""A number with what follows it: "3", or a range, fraction or list ("2-3", "4/10", "2, 3") that is no one score."""
_MENTION = re.compile(
    rf"(?:점수|score[sd]?)[\s*_#:：=]*(?:는|은|is|of)?[\s*_#:：=]*({_SPAN})|({_SPAN})\s*점(?!수)", re.IGNORECASE
)
"""Where a prose reply states a score: "점수: 3", "**Score:** 3", "점수는 3", "3점"."""
_MARKER = re.compile(r"(?:답변|answer)\s*#?\s*(\d+)(?!\d|\s*점(?!수))", re.IGNORECASE)
"""Where a prose reply turns to one answer: "답변 1", "[답변 2]", "Answer 3" (not "답변 3점")."""
_RUBRIC_LABEL = re.compile(r"(?<![\d.])(\d+)\s*점[\s*]*[:：]")
"""A rubric item's label ("4점: 판독문과 완전히 일치..."); labels of two different scores are the rubric echoed."""
_JSON_START = re.compile(r"[{\[]")


@dataclass(frozen=True)
class ParsedJudgement:
    """One answer's judgement as shown (`number` 1-based in shown order); `error` set means no usable score."""

    number: int
    score: int | None
    rationale: str
    error: str | None = None


def _score_of(value: Any) -> int | None:
    """3, 3.0, "3" and "3점" read as 3; anything else ("2-3", "4/10", 3.5, 5, True) as None."""
    if isinstance(value, str) and (match := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:점)?\s*", value)):
        value = float(match.group(1))
    if isinstance(value, bool) or not isinstance(value, int | float) or not float(value).is_integer():
        return None
    return int(value) if SCORE_MIN <= value <= SCORE_MAX else None


def _judgement(number: int, values: list[Any], rationale: str) -> ParsedJudgement:
    """Exactly one score in range among what the reply stated for one answer, or a failure saying what was wrong."""
    scores = [_score_of(value) for value in values]
    if None in scores:
        bad = values[scores.index(None)]
        return ParsedJudgement(number, None, "", f"{bad!r} is not one integer score {SCORE_MIN}-{SCORE_MAX}")
    if len(distinct := sorted(set(scores))) > 1:
        return ParsedJudgement(number, None, "", f"several scores ({', '.join(map(str, distinct))}) for one answer")
    return ParsedJudgement(number, scores[0], rationale)


def _json_values(text: str) -> Iterator[Any]:
    """The whole reply, each code fence's inside, then each `{...}`/`[...]` value in the text (a value that holds
    judgements is read whole; its inner objects are not read again)."""
    for candidate in (text, *re.findall(r"```(?:json)?\s*(.*?)```", text, flags=re.DOTALL)):
        try:
            yield json.loads(candidate)
        except ValueError:
            continue
    decoder, start = json.JSONDecoder(), 0
    while match := _JSON_START.search(text, start):
        try:
            value, end = decoder.raw_decode(text, match.start())
        except ValueError:
            start = match.start() + 1
            continue
        yield value
        start = end if _json_items(value) is not None else match.start() + 1


def _json_items(data: Any) -> list[dict] | None:
    """`{"judgements": [...]}`, a bare list, or one `{"score": ...}` object."""
    if isinstance(data, dict) and isinstance(data.get("judgements"), list):
        data = data["judgements"]
    elif isinstance(data, dict) and "score" in data:
        data = [data]
    if isinstance(data, list) and data and all(isinstance(item, dict) for item in data):
        return data
    return None


def _from_json(lists: list[list[dict]], num_answers: int) -> dict[int, ParsedJudgement]:
    """Every judgement object the reply holds, by answer; objects that disagree on an answer's score are a failure."""
    values: dict[int, list[Any]] = {}
    rationales: dict[int, str] = {}
    for items in lists:
        for position, item in enumerate(items, start=1):
            number = item.get("answer", position)
            number = number if isinstance(number, int) and not isinstance(number, bool) else position
            if 1 <= number <= num_answers:
                values.setdefault(number, []).append(item.get("score"))
                rationale = str(item.get("rationale") or item.get("reason") or "")[:RATIONALE_CHARS]
                rationales.setdefault(number, rationale)
    return {number: _judgement(number, found, rationales[number]) for number, found in values.items()}


def _prose_parts(text: str, num_answers: int) -> dict[int, str]:
    """The prose about each answer: from its marker to the next; with one answer, also what no marker claims."""
    markers = list(_MARKER.finditer(text))
    parts: dict[int, list[str]] = {1: [text[: markers[0].start()] if markers else text]} if num_answers == 1 else {}
    for index, marker in enumerate(markers):
        end = markers[index + 1].start() if index + 1 < len(markers) else len(text)
        parts.setdefault(int(marker.group(1)), []).append(text[marker.end() : end])
    return {number: "\n".join(parts[number]) for number in range(1, num_answers + 1) if number in parts}


def _from_prose(text: str, num_answers: int) -> dict[int, ParsedJudgement]:
    snippet = " ".join(text.split())[:RATIONALE_CHARS]
    found = {}
    for number, part in _prose_parts(text, num_answers).items():
        if len(set(_RUBRIC_LABEL.findall(part))) > 1:  # one "3점: 대체로 정확" is a verdict, "1점: ... 4점: ..." not
            part = _RUBRIC_LABEL.sub(" ", part)
        mentions = [first or second for first, second in _MENTION.findall(part)]
        if mentions:
            found[number] = _judgement(number, mentions, snippet)
    return found


def parse_judgements(text: str, num_answers: int) -> list[ParsedJudgement]:
    """One `ParsedJudgement` per shown answer, in shown order; unreadable ones carry the reason and the raw reply in
    `error`."""
    lists = [items for value in _json_values(text.strip()) if (items := _json_items(value)) is not None]
    found = _from_json(lists, num_answers) if lists else _from_prose(text, num_answers)
    parsed = []
    for number in range(1, num_answers + 1):
        judgement = found.get(number) or ParsedJudgement(number, None, "", "no score found for this answer")
        if judgement.error:
            judgement = ParsedJudgement(number, None, "", f"{judgement.error} in the reply {text!r}")
        parsed.append(judgement)
    return parsed
