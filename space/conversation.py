"""One visitor's conversation about one report, and the engine that answers it; the app and the terminal chat share
both, so they send the same prompt (`ko_radiology.prompts.build_messages`) with the same history.

Nothing here writes to disk or logs what a visitor typed: a failed request is logged by its error type only.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from ko_radiology.prompts import SYSTEM_PROMPT
from space.backends import BackendError, EndpointBackend, LocalBackend
from space.config import GenerationSettings
from space.report import Report, fit_to_context, read_report
from space.translation import ReportTranslator

logger = logging.getLogger(__name__)

BACKEND_FAILED = (
    "⚠️ 모델 서버가 응답하지 않거나 오류를 돌려주었습니다. 잠시 후 다시 질문해 주세요. "
    "(이 답변은 대화 기록에 포함되지 않습니다.)"
)
NOT_TRANSLATED = "번역 엔드포인트가 설정되지 않아 영어 판독문을 그대로 모델에 보냅니다."
TRANSLATION_FAILED = "번역에 실패해 영어 판독문을 그대로 모델에 보냅니다."
TRANSLATED = "영어 판독문을 한국어로 번역해 모델에 보냈습니다."


@dataclass
class Turn:
    """A question and its answer; `failed` turns are shown to the visitor but never sent back to the model."""

    question: str
    answer: str = ""
    failed: bool = False


@dataclass
class Conversation:
    """Per-session state: the report as pasted (`source`), as the model reads it, and the turns so far."""

    source: str
    report: Report
    report_notices: list[str] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    sent_report: str = ""
    """The report text of the latest request (shortened when it did not fit)."""
    fit_notices: list[str] = field(default_factory=list)

    @property
    def history(self) -> list[tuple[str, str]]:
        return [(turn.question, turn.answer) for turn in self.turns if not turn.failed]

    @property
    def notices(self) -> list[str]:
        return self.report_notices + self.fit_notices


class ReportChat:
    """Starts conversations (translating English reports when it can) and streams answers into them."""

    def __init__(self, backend: EndpointBackend | LocalBackend, translator: ReportTranslator | None = None):
        self.backend = backend
        self.translator = translator

    def start(self, text: str) -> Conversation:
        """A new conversation about `text`; an English report is translated first when a translator is set."""
        report = read_report(text)
        if report.language == "ko":
            return Conversation(text, report)
        if self.translator is None:
            return Conversation(text, report, [NOT_TRANSLATED])
        try:
            return Conversation(text, self.translator.translate(report), [TRANSLATED])
        except BackendError as error:
            logger.warning("translation failed: %s", type(error.__cause__).__name__)
            return Conversation(text, report, [TRANSLATION_FAILED])

    def ask(
        self,
        conversation: Conversation,
        question: str,
        settings: GenerationSettings,
        system_prompt: str = SYSTEM_PROMPT,
    ) -> Iterator[str]:
        """Append a turn and yield its growing answer, piece by piece as the backend streams it.

        A prompt that cannot fit, or a backend that fails, ends the turn with a Korean message instead of an error.
        """
        history = conversation.history
        turn = Turn(question.strip())
        conversation.turns.append(turn)
        budget = self.backend.context_tokens - settings.max_new_tokens
        try:
            fitted = fit_to_context(
                conversation.report, turn.question, history, system_prompt, budget, self.backend.count_tokens
            )
        except ValueError as error:
            turn.answer, turn.failed = f"⚠️ {error}", True
            yield turn.answer
            return
        conversation.sent_report, conversation.fit_notices = fitted.report, fitted.notices
        try:
            for piece in self.backend.stream(fitted.messages, settings):
                turn.answer += piece
                yield turn.answer
            if not turn.answer.strip():  # an answer of nothing would enter the history as one
                raise BackendError("the answer has no text")
        except BackendError as error:
            logger.warning("generation failed: %s", type(error.__cause__ or error).__name__)
            turn.answer, turn.failed = BACKEND_FAILED, True
            yield turn.answer
