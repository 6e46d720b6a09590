"""The five judge criteria: the original project's four 1-4 rubrics, rewritten for Korean answers about a Korean
report, and `similarity` of an answer to a reference answer (the original asked it once for all models and then
parsed one score per model, so it always recorded 0; here each answer gets its own score)."""

from dataclasses import dataclass

SCORE_MIN, SCORE_MAX = 1, 4


@dataclass(frozen=True)
class Criterion:
    """One rubric: `name` is the `evaluate` config name, `code` the original `--type` flag."""

    name: str
    code: str
    title: str
    rubric: str
    needs_reference: bool = False


CRITERIA: dict[str, Criterion] = {
    criterion.name: criterion
    for criterion in (
        Criterion(
            "accuracy",
            "acc",
            "정확성",
            "답변이 판독문에 적힌 사실(소견의 유무, 위치와 좌우, 크기, 변화, 기구의 위치)을 정확하게 전달하는가?\n"
            "4점: 판독문과 완전히 일치하며 질문에 정확히 답한다.\n"
            "3점: 대체로 정확하나 사소한 부정확함이나 빠진 세부 사항이 있다.\n"
            "2점: 질문에 일부만 답하거나 중요한 사실 하나가 틀렸거나 빠졌다.\n"
            "1점: 판독문과 모순되거나(좌우, 유무 뒤바뀜 포함) 질문과 무관한 답이다.",
        ),
        Criterion(
            "conciseness",
            "coc",
            "간결성",
            "답변이 불필요한 반복이나 질문과 무관한 내용 없이 세 문장 이내로 핵심만 전달하는가?\n"
            "4점: 필요한 내용만 간결하게 담았다.\n"
            "3점: 약간의 군더더기가 있으나 읽는 데 방해되지 않는다.\n"
            "2점: 반복이나 무관한 내용이 많아 핵심이 흐려진다.\n"
            "1점: 장황하거나 대부분이 질문과 무관하다.",
        ),
        Criterion(
            "consistency",
            "cos",
            "일관성",
            "답변의 모든 내용이 판독문에 근거하며, 판독문에 없는 소견을 지어내거나 판독문과 모순되지 않는가?\n"
            "4점: 모든 진술이 판독문에 근거한다.\n"
            "3점: 판독문에서 합리적으로 추론되는 수준의 사소한 추가가 있다.\n"
            "2점: 판독문에 없는 소견이나 주장이 하나 있다.\n"
            "1점: 판독문과 모순되거나 지어낸 소견이 여러 개 있다.",
        ),
        Criterion(
            "understandability",
            "und",
            "이해 용이성",
            "의료인이 아닌 한국어 화자가 답변을 쉽게 이해할 수 있는가? (자연스러운 한국어, 전문 용어와 약어의 설명)\n"
            "4점: 자연스러운 한국어로, 전문 용어를 풀어 설명해 누구나 이해할 수 있다.\n"
            "3점: 대체로 이해할 수 있으나 설명 없는 전문 용어가 조금 있다.\n"
            "2점: 전문 용어, 영어 표현이나 어색한 문장 때문에 이해하기 어렵다.\n"
            "1점: 일반인이 이해할 수 없거나 한국어로 답하지 않았다.",
        ),
        Criterion(
            "similarity",
            "sim",
            "유사성",
            "답변이 참조 답변과 같은 의미(같은 소견, 같은 결론)를 전달하는가? 표현과 언어의 차이는 감점하지 않는다.\n"
            "4점: 참조 답변과 의미가 같다.\n"
            "3점: 핵심 의미는 같으나 세부 사항이 조금 다르거나 빠졌다.\n"
            "2점: 일부만 같고 중요한 내용이 다르거나 빠졌다.\n"
            "1점: 참조 답변과 의미가 다르거나 모순된다.",
            needs_reference=True,
        ),
    )
}
CODES = {criterion.code: criterion for criterion in CRITERIA.values()}


def get_criterion(name: str) -> Criterion:
    """Look a criterion up by config name (`accuracy`) or original `--type` code (`acc`)."""
    if found := CRITERIA.get(name) or CODES.get(name):
        return found
    choices = ", ".join(f"{c.name} ({c.code})" for c in CRITERIA.values())
    raise ValueError(f"Unknown judge criterion {name!r}; choose one of: {choices}.")
