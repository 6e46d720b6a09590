"""How one judge call is asked: the report, the question, (the reference,) the answers under numbered markers, and
the JSON shape the reply must take. Rationale comes before score in that shape, so a judge explains, then scores."""

from collections.abc import Sequence
from typing import Any

from ko_radiology.judge.rubrics import SCORE_MAX, SCORE_MIN, Criterion

ANSWER_MARKER = "[답변 {number}]"
"""Numbered from 1 in the order shown; `ordering` maps shown numbers back to the caller's answers."""

SYSTEM_PROMPT = (
    "당신은 흉부 X선 판독문에 대한 한국어 답변을 평가하는 엄격하고 공정한 심사자입니다. "
    "판독문만을 사실의 근거로 삼고, 답변의 길이나 제시 순서에 영향을 받지 말고, 각 답변을 서로 독립적으로 "
    "평가 기준에 따라 채점하세요."
)


def format_judge_request(
    criterion: Criterion, report: str, question: str, answers: Sequence[str], reference: str | None = None
) -> str:
    """The user turn: context first, then each answer under its marker, then the rubric and the reply format."""
    parts = [f"[판독문]\n{report.strip()}", f"[질문]\n{question.strip()}"]
    if criterion.needs_reference:
        if not reference or not reference.strip():
            raise ValueError(f"The {criterion.name} criterion needs a reference answer for every sample.")
        parts.append(f"[참조 답변]\n{reference.strip()}")
    parts += [f"{ANSWER_MARKER.format(number=n)}\n{answer.strip()}" for n, answer in enumerate(answers, start=1)]
    parts.append(f"[평가 기준: {criterion.title}]\n{criterion.rubric}")
    parts.append(
        f"각 답변에 대해 한 문장의 근거(rationale)를 먼저 쓰고 {SCORE_MIN}~{SCORE_MAX}점의 정수 점수(score)를 "
        'JSON으로만 답하세요. 형식: {"judgements": [{"answer": 1, "rationale": "...", "score": 3}, ...]} '
        f"— 답변 {len(answers)}개 모두, 번호 순서대로."
    )
    return "\n\n".join(parts)


def build_judge_messages(
    criterion: Criterion, report: str, question: str, answers: Sequence[str], reference: str | None = None
) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": format_judge_request(criterion, report, question, answers, reference)},
    ]


def judgement_schema(num_answers: int) -> dict[str, Any]:
    """OpenAI `response_format` with a strict JSON schema for `num_answers` judgements."""
    item = {
        "type": "object",
        "properties": {
            "answer": {"type": "integer", "enum": list(range(1, num_answers + 1))},
            "rationale": {"type": "string"},
            "score": {"type": "integer", "enum": list(range(SCORE_MIN, SCORE_MAX + 1))},
        },
        "required": ["answer", "rationale", "score"],
        "additionalProperties": False,
    }
    schema = {
        "type": "object",
        "properties": {
            "judgements": {"type": "array", "items": item, "minItems": num_answers, "maxItems": num_answers}
        },
        "required": ["judgements"],
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "judgements", "strict": True, "schema": schema}}
