"""Preference pairs for DPO from the train split: the gold answer (chosen) against a variant with one known defect
(rejected), so the model learns what the gold answer gets right and not only what it says.

The defects are the known-answer set's kinds (`ko_radiology/sample/known_answers/`, which stays test-only for judge
calibration) that a 270M model actually makes, plus the failure that set cannot show because it holds only answerable
questions:

- `negation_flipped` (yes/no questions): the first word 네 ↔ 아니요, the rest unchanged, as in the model's "아니요, …
  흉막삼출이 있습니다";
- `wrong_laterality`: every 좌/우 (왼쪽/오른쪽) swapped;
- `finding_invented`: a sentence with a finding the report never mentions, appended;
- `answered_unanswerable` (unanswerable questions): a confident 네 or 아니요 (alternating) with the report's
  impression, instead of saying the report does not say it;
- `declined_answerable` (answerable questions): a decline, the one the same report's unanswerable question has as its
  gold answer, instead of the answer the report gives.

Every pair differs from its gold answer in one way only. Each row gives one pair, its defect the first that applies in
that order; and for each unanswerable row, one answerable row of the same report gives a second pair,
`declined_answerable`. The pairs are balanced where the model's prior could otherwise stand in for reading the report:
as many push away from declining as towards it, and the rejected variants start with 네 as often as with 아니요
(a first DPO run, whose 89 `answered_unanswerable` variants all started with 네, taught 아니요 and declining, not the
report: false refusals rose from 8% to 20%).
"""

import itertools
import re
from collections.abc import Iterator

from datasets import Dataset

from ko_radiology.prompts import build_messages

DEFECTS = ("negation_flipped", "wrong_laterality", "finding_invented", "answered_unanswerable", "declined_answerable")
SIDE_SWAPS = {"좌측": "우측", "우측": "좌측", "왼쪽": "오른쪽", "오른쪽": "왼쪽"}
SIDE_PREFIXED = re.compile(r"(?<![가-힣])([좌우])(?=[폐상중하반흉쇄주])")
"""좌/우 as the first syllable of a side-bearing term: 좌폐, 우하엽, 좌반횡격막, 우쇄골하, 좌주기관지."""
SIDES = re.compile("|".join(SIDE_SWAPS))
INVENTED_FINDINGS = (
    ("기흉", "우측에 새로운 기흉이 보입니다."),
    ("종괴", "좌상엽에 2 cm 크기의 종괴가 새로 보여 추가 검사가 필요합니다."),
    ("골절", "우측 제6늑골에 급성 골절이 있습니다."),
    ("흉막삼출", "좌측에 중등량의 흉막삼출이 새로 생겼습니다."),
)
"""(term, sentence): the first whose term the report does not contain is the invented finding."""


def flip_yes_no(answer: str) -> str | None:
    if answer.startswith("네, "):
        return "아니요, " + answer.removeprefix("네, ")
    if answer.startswith("아니요, "):
        return "네, " + answer.removeprefix("아니요, ")
    return None


def swap_sides(answer: str) -> str | None:
    swapped = SIDES.sub(lambda match: SIDE_SWAPS[match.group(0)], answer)
    swapped = SIDE_PREFIXED.sub(lambda match: "우" if match.group(1) == "좌" else "좌", swapped)
    return swapped if swapped != answer else None


def invent_finding(answer: str, report: str) -> str | None:
    sentence = next((sentence for term, sentence in INVENTED_FINDINGS if term not in report), None)
    return f"{answer} {sentence}" if sentence else None


def answer_from_report(report: str, yes_no: str) -> str:
    """What a model that never declines says: 네 or 아니요, and the report's last line (the impression, as the builder
    joins sections)."""
    last_line = [line for line in report.splitlines() if line.strip()][-1]
    return f"{yes_no}, " + last_line.split(": ", 1)[-1].strip()


def rejected_answer(row: dict, claims: Iterator[str]) -> tuple[str, str] | None:
    """(defect, rejected answer) for one qa row, or None when no defect applies; an answer to an unanswerable question
    starts with the next of `claims`."""
    if not row["answerable"]:
        return "answered_unanswerable", answer_from_report(row["report_ko"], next(claims))
    for defect, variant in (
        ("negation_flipped", flip_yes_no(row["answer"])),
        ("wrong_laterality", swap_sides(row["answer"])),
        ("finding_invented", invent_finding(row["answer"], row["report_ko"])),
    ):
        if variant is not None:
            return defect, variant
    return None


def declined_answerable(rows: list[dict]) -> list[tuple[dict, str]]:
    """(answerable row, decline) pairs: for each unanswerable row, the next answerable row of its report with that
    row's gold decline, so the pairs against declining match those for it in number and wording."""
    by_report: dict[str, list[dict]] = {}
    for row in rows:
        by_report.setdefault(row["report_ko"], []).append(row)
    made = []
    for report_rows in by_report.values():
        declines = [row["answer"] for row in report_rows if not row["answerable"]]
        answerable = [row for row in report_rows if row["answerable"]]
        # zip stops at the shorter: a report short of answerable rows gives fewer
        made.extend(zip(answerable, declines, strict=False))
    return made


def pair(row: dict, rejected: str, defect: str) -> dict:
    """One conversational DPO row in the project's one prompt format."""
    messages = build_messages(row["report_ko"], row["instruction"], row["answer"])
    return {
        "prompt": messages[:-1],
        "chosen": [messages[-1]],
        "rejected": [{"role": "assistant", "content": rejected}],
        "defect": defect,
    }


def preference_pairs(rows: Dataset, tasks: list[str]) -> Dataset:
    """Conversational DPO rows (`prompt`, `chosen`, `rejected`, `defect`) for the rows of `tasks`."""
    rows = [row for row in rows if row["task"] in tasks]
    claims = itertools.cycle(("네", "아니요"))
    pairs = []
    for row in rows:
        made = rejected_answer(row, claims)
        if made is not None:
            defect, rejected = made
            pairs.append(pair(row, rejected, defect))
    pairs += [pair(row, decline, "declined_answerable") for row, decline in declined_answerable(rows)]
    return Dataset.from_list(pairs)
