"""Ko-Radiology-GPT Space: paste a chest X-ray report, ask about it in Korean, read the answer as it streams.

```bash
KO_RADIOLOGY_ENDPOINT=http://127.0.0.1:8000/v1 KO_RADIOLOGY_MODEL=out/merged python space/app.py   # a local server
KO_RADIOLOGY_BACKEND=local KO_RADIOLOGY_MODEL=embedded:base python space/app.py                     # no server
```

Every setting is a `KO_RADIOLOGY_*` variable (`space/config.py`); `GRADIO_SERVER_PORT` picks the port. Each visitor has
their own conversation (`gr.State`); the queue bounds how many answers are generated at once. No analytics, no
flagging storage, and nothing a visitor types reaches a disk or a log unless the operator turns feedback on.
"""

import os
import sys

os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"  # before gradio is imported: it reads this at import time

import gradio as gr  # noqa: E402

from ko_radiology.cli import run_cli  # noqa: E402
from ko_radiology.processes import loopback_without_proxy  # noqa: E402
from ko_radiology.prompts import SYSTEM_PROMPT  # noqa: E402
from space.backends import build_backend  # noqa: E402
from space.config import GenerationSettings, SpaceConfig  # noqa: E402
from space.conversation import Conversation, ReportChat  # noqa: E402
from space.examples import sample_examples  # noqa: E402
from space.feedback import FeedbackStore  # noqa: E402
from space.translation import ReportTranslator  # noqa: E402

TITLE = "Ko-Radiology-GPT: 흉부 X선 판독문 질의응답"
NOTICE = (
    "⚠️ **연구용 도구입니다.** 답변은 틀릴 수 있으며 임상 판단이나 진단에 쓰면 안 됩니다. "
    "환자를 식별할 수 있는 정보(이름, 등록번호, 날짜 등)는 붙여 넣지 마세요."
)
FEEDBACK_NOTICE = "피드백 버튼을 누르면 그 질문과 답변, 판독문이 연구 개선을 위해 저장됩니다."
NO_REPORT = "먼저 왼쪽에 판독문을 붙여 넣어 주세요."
LIKE, DISLIKE, MEDICAL_ERROR = "Like", "Dislike", "의학적 오류"
"""Gradio draws "Like" and "Dislike" as thumbs; other options sit under its flag icon."""
RATINGS = {True: "좋아요", False: "싫어요", MEDICAL_ERROR: "의학적 오류"}


def chat_messages(conversation: Conversation | None) -> list[dict[str, str]]:
    if conversation is None:
        return []
    return [
        message
        for turn in conversation.turns
        for message in ({"role": "user", "content": turn.question}, {"role": "assistant", "content": turn.answer})
    ]


def notice_markdown(conversation: Conversation | None) -> str:
    return "\n".join(f"- ⚠️ {notice}" for notice in conversation.notices) if conversation else ""


def everything(conversation: Conversation) -> tuple:
    """Values for respond's outputs: chat, state, the report the model read, notices, and an emptied question box."""
    return chat_messages(conversation), conversation, conversation.sent_report, notice_markdown(conversation), ""


def build_demo(config: SpaceConfig) -> gr.Blocks:
    """The whole UI for one backend; tests build it in-process, the Hub runs it through `python app.py`."""
    translator = (
        ReportTranslator(config.translate_endpoint, config.translate_model, config.timeout_s, config.translate_hosts)
        if config.translate_endpoint
        else None
    )
    chat = ReportChat(build_backend(config), translator)
    feedback = FeedbackStore(config.feedback_dir) if config.feedback_dir else None
    defaults = GenerationSettings()

    def respond(question, report_text, conversation, system_prompt, max_new_tokens, temperature, top_p, penalty):
        """Stream one answer. An empty question changes nothing; a new report starts a new conversation."""
        if not question.strip():
            yield (gr.skip(),) * 5
            return
        if not report_text.strip():
            gr.Warning(NO_REPORT)
            yield (gr.skip(),) * 5
            return
        if conversation is None or conversation.source != report_text:
            conversation = chat.start(report_text)
        settings = GenerationSettings(int(max_new_tokens), float(temperature), float(top_p), float(penalty))
        pieces = chat.ask(conversation, question, settings, system_prompt or SYSTEM_PROMPT)
        # The first and last updates carry every output; in between only the chat changes (`conversation` is one
        # object, updated in place), which keeps Gradio's work per streamed token small.
        for index, _ in enumerate(pieces):
            yield everything(conversation) if index == 0 else (chat_messages(conversation), *(gr.skip(),) * 4)
        yield everything(conversation)

    def on_feedback(conversation: Conversation | None, like: gr.LikeData):
        if feedback is None or conversation is None or not (0 <= like.index // 2 < len(conversation.turns)):
            return
        turn = conversation.turns[like.index // 2]
        feedback.record(RATINGS[like.liked], conversation.sent_report, turn.question, turn.answer)
        gr.Info("피드백이 저장되었습니다. 감사합니다.")

    with gr.Blocks(title=TITLE, analytics_enabled=False) as demo:
        conversation = gr.State(None)
        gr.Markdown(f"# {TITLE}\n\n{NOTICE}" + (f"\n\n{FEEDBACK_NOTICE}" if feedback else ""))
        with gr.Row():
            with gr.Column(scale=2):
                report = gr.Textbox(
                    label="판독문 (한국어 또는 영어)",
                    lines=12,
                    max_lines=30,
                    placeholder="소견: ...\n\n결론: ...",
                    elem_id="report",
                )
                sent_report = gr.Textbox(
                    label="모델이 읽은 한국어 판독문", lines=6, max_lines=20, interactive=False, elem_id="sent-report"
                )
                notices = gr.Markdown(elem_id="notices")
            with gr.Column(scale=3):
                chatbot = gr.Chatbot(
                    label="대화",
                    height=480,
                    feedback_options=(LIKE, DISLIKE, MEDICAL_ERROR)
                    if feedback
                    else (),  # None breaks gradio 6.31's chat UI
                    elem_id="chat",
                )
                question = gr.Textbox(
                    label="질문", placeholder="판독문에 대해 한국어로 질문하세요.", elem_id="question"
                )
                with gr.Row():
                    send = gr.Button("보내기", variant="primary", elem_id="send")
                    stop = gr.Button("멈추기", variant="stop", elem_id="stop")
                    clear = gr.Button("새 대화", elem_id="clear")
        examples = sample_examples()
        gr.Examples(
            [[example.report, example.question] for example in examples],
            inputs=[report, question],
            example_labels=[f"{example.label}: {example.question}" for example in examples],
            label="예시 (샘플 데이터의 테스트 분할)",
        )
        with gr.Accordion("시스템 프롬프트와 생성 설정", open=False):
            system_prompt = gr.Textbox(SYSTEM_PROMPT, label="시스템 프롬프트", lines=4)
            max_new_tokens = gr.Slider(
                1, 1024, defaults.max_new_tokens, step=1, label="최대 생성 토큰 수", elem_id="max-new-tokens"
            )
            temperature = gr.Slider(0.0, 1.5, defaults.temperature, step=0.05, label="온도 (temperature)")
            top_p = gr.Slider(0.05, 1.0, defaults.top_p, step=0.05, label="top-p")
            penalty = gr.Slider(
                1.0, 2.0, defaults.repetition_penalty, step=0.05, label="반복 억제 (repetition penalty)"
            )

        inputs = [question, report, conversation, system_prompt, max_new_tokens, temperature, top_p, penalty]
        outputs = [chatbot, conversation, sent_report, notices, question]
        asked = send.click(respond, inputs, outputs, api_name="ask")
        submitted = question.submit(respond, inputs, outputs, api_name=False)
        stop.click(None, cancels=[asked, submitted])
        # A changed report starts a new conversation at the next question (`respond`), not while an answer streams.
        clear.click(lambda: ([], None, "", ""), None, [chatbot, conversation, sent_report, notices], api_name=False)
        chatbot.like(on_feedback, [conversation], None, queue=False, api_name=False)
    return demo.queue(default_concurrency_limit=config.concurrency_limit, max_size=config.queue_size)


def launch(argv: list[str]) -> None:
    """Build the app from the `KO_RADIOLOGY_*` variables (a setting to fix is one line in the Space's log, exit 2)."""
    app = build_demo(SpaceConfig.from_env())
    os.environ.update(loopback_without_proxy(os.environ))  # Gradio checks its own page through any env proxy
    app.launch()


if __name__ == "__main__":
    sys.exit(run_cli(launch))
