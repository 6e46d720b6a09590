"""Launch the Space for tests and the bench: in this process (`build_demo`) or as the Hub does (`python app.py` in a
folder), and ask it through `gradio_client`, the same API a visitor's browser uses."""

import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from gradio_client import Client
from gradio_client.utils import Status

from ko_radiology.prompts import SYSTEM_PROMPT
from tests.conftest import free_port
from tests.installed_wheel import InstalledWheel

APP_START_TIMEOUT_S = 120


@contextmanager
def running_app(config):
    """`space.app.build_demo(config)` served on a free loopback port; yields its URL."""
    from space.app import build_demo

    demo = build_demo(config)
    demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True)
    try:
        yield demo.local_url
    finally:
        demo.close()


@contextmanager
def app_process(app_dir: Path, env: dict[str, str], installed: InstalledWheel | None = None):
    """`python app.py` run from `app_dir` with `env` added; yields its URL. With `installed`, as on the Hub: the
    project comes only from its installed wheel (`python -S`: not from the checkout or its editable install)."""
    port = free_port()
    env = {**(installed.env() if installed else os.environ), **env}
    env |= {"GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}
    command = [sys.executable, *(["-S"] if installed else []), "app.py"]
    log = Path(tempfile.mkdtemp(prefix="space_app-")) / "app.log"
    with log.open("w") as handle:
        process = subprocess.Popen(command, cwd=app_dir, env=env, stdout=handle, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/"
        _wait_for(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + APP_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app.py exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"app.py not serving {url} after {APP_START_TIMEOUT_S}s:\n{log.read_text()[-3000:]}")


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
