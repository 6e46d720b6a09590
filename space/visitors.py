"""The app as a visitor's browser tab uses it, through `gradio_client`: ask on `/ask` (the inputs `app.py` declares),
read the answers, queue several visitors at once. For the tests and `bench/bench_space.py`; the Space never imports it.
"""

import time
from dataclasses import dataclass

from gradio_client import Client
from gradio_client.utils import Status

from ko_radiology.prompts import SYSTEM_PROMPT


def client(url: str) -> Client:
    """One visitor: a gradio_client session has its own `gr.State`, as a browser tab does."""
    return Client(url, verbose=False, analytics_enabled=False, download_files=False)


def ask(visitor: Client, question: str, report: str, max_new_tokens: int = 16, temperature: float = 0.0):
    """Submit one question (greedy by default, so answers repeat); returns the gradio_client Job."""
    return visitor.submit(question, report, SYSTEM_PROMPT, max_new_tokens, temperature, 0.9, 1.0, api_name="/ask")


def answers(chat: list[dict]) -> list[str]:
    """The assistant texts of a Chatbot value (messages format, content as a list of text parts)."""
    return [_text(message["content"]) for message in chat if message["role"] == "assistant"]


def _text(content) -> str:
    if isinstance(content, str):
        return content
    return "".join(part.get("text", "") for part in content if isinstance(part, dict))


@dataclass
class Visit:
    """One visitor's answer and when it began and ended (monotonic seconds)."""

    index: int
    first_token_at: float | None = None
    done_at: float | None = None
    answer: str = ""


def visitors_in_queue(url: str, count: int, report: str, max_new_tokens: int, timeout_s: float = 300) -> list[Visit]:
    """`count` visitors ask at once: each joins the queue after the one before (their queue order is their index),
    then all are watched until done. Returns the visits in index order."""
    jobs = []
    for index in range(count):
        jobs.append(ask(client(url), f"질문 {index}", report, max_new_tokens))
        while jobs[-1].status().code in (Status.STARTING, Status.JOINING_QUEUE):
            time.sleep(0.005)
    visits = [Visit(index) for index in range(count)]
    deadline = time.monotonic() + timeout_s
    while any(visit.done_at is None for visit in visits) and time.monotonic() < deadline:
        for job, visit in zip(jobs, visits, strict=True):
            outputs = job.outputs()
            if visit.first_token_at is None and outputs and any(answers(outputs[-1][0])):
                visit.first_token_at = time.monotonic()
            if visit.done_at is None and job.done():
                visit.done_at, visit.answer = time.monotonic(), answers(job.outputs()[-1][0])[-1]
        time.sleep(0.005)
    return visits
