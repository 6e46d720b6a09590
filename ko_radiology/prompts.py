"""The one prompt format: how a Korean report and an instruction become chat messages.

The dataset builder writes `messages` with it, training learns from it, the Space and eval ask with it. Changing it
here changes it everywhere, which is the point: a model is only as good as the agreement between the format it was
trained on and the one it is served with.
"""

from collections.abc import Sequence

TASK_TYPES = ("질문 답변", "축약어 확장", "바꾸어 말하기", "요약")
"""The four instruction types of the original project: question answering, abbreviation expansion, paraphrase for
a patient, summarization."""

SYSTEM_PROMPT = (
    "당신은 흉부 X선 판독문을 설명하는 한국어 의료 보조 AI입니다. "
    "주어진 판독문에 적힌 내용만 근거로 정확하게, 세 문장 이내로, "
    "의료인이 아닌 사람도 이해할 수 있게 한국어로 답하세요. "
    "판독문으로 답할 수 없는 질문에는 판독문에 해당 정보가 없다고 답하세요. "
    "이 답변은 연구용이며 의학적 진단을 대신하지 않습니다."
)

PLAIN_SYSTEM_PROMPT = (
    "당신은 한국어 의료 보조 AI입니다. "
    "질문에 정확하게, 의료인이 아닌 사람도 이해할 수 있게 한국어로 답하세요. "
    "이 답변은 연구용이며 의학적 진단을 대신하지 않습니다."
)
"""The system turn of a question asked without a report (plain medical instruction data mixed into training,
`training/mixture.py`): the report prompt would tell the model to answer from a report that is not there."""


def format_user_turn(report: str, instruction: str) -> str:
    """The user turn: the report first, so that several questions about one report share a prompt prefix."""
    return f"[판독문]\n{report.strip()}\n\n[요청]\n{instruction.strip()}"


def build_messages(
    report: str | None,
    instruction: str,
    answer: str | None = None,
    history: Sequence[tuple[str, str]] = (),
    system_prompt: str | None = None,
) -> list[dict[str, str]]:
    """Chat messages for one example; with `answer` for training, without it for generation.

    The report travels in the first user turn only; follow-up questions are plain user turns after the earlier
    answers, so a conversation is the single-turn training format continued, and its prefix stays cacheable. Without
    a report (an empty or absent one) it is a plain instruction chat: the question alone, under a system prompt that
    names no report.

    Args:
        report: The Korean radiology report (sections joined by blank lines); empty or None for none.
        instruction: The question or task in Korean.
        answer: The reference answer; omitted when asking a model.
        history: Earlier (question, answer) turns about the same report, oldest first (the Space's follow-ups).
        system_prompt: The system turn; the Space lets an operator edit it. None: `SYSTEM_PROMPT` with a report,
            `PLAIN_SYSTEM_PROMPT` without one.
    """
    has_report = bool(report and report.strip())
    if system_prompt is None:
        system_prompt = SYSTEM_PROMPT if has_report else PLAIN_SYSTEM_PROMPT
    messages = [{"role": "system", "content": system_prompt}]
    for index, (question, reply) in enumerate([*history, (instruction, answer)]):
        content = format_user_turn(report, question) if index == 0 and has_report else question.strip()
        messages.append({"role": "user", "content": content})
        if reply is not None:
            messages.append({"role": "assistant", "content": reply.strip()})
    return messages
