"""The Space in a real browser (Debian's Chromium, headless, driven by Playwright) against `transformers serve` of the
embedded Gemma 3 270M: the one place the tests use the real base model, so the answer is real Korean text.

Chromium comes from apt (`make setup` installs it as root); Playwright never downloads a browser here.
"""

import re
import time
from pathlib import Path

import pytest

from ko_radiology.embedded_models import is_prepared, model_path
from ko_radiology.processes import launch_model_server, openai_url, stop, wait_ready
from space.config import SpaceConfig
from space.examples import sample_examples
from space.visitors import answers, ask, client
from tests.conftest import SERVER_START_TIMEOUT_S
from tests.space_apps import running_app

CHROMIUM = Path("/usr/bin/chromium")
INSTALL = "make setup (as root), or: sudo apt-get install chromium fonts-noto-cjk"
CHROMIUM_FLAGS = [
    "--no-sandbox",  # tests run as root in CI containers
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HANGUL = re.compile(r"[\uac00-\ud7a3]")
EXAMPLE = sample_examples()[0]


@pytest.fixture(scope="module")
def base_server(tmp_path_factory):
    """`transformers serve` of the embedded base model, float32 (bf16 is emulated, hence slow, on AVX2-only CPUs)."""
    folder = model_path("base")
    if not is_prepared(folder):
        pytest.fail(f"The base model is not prepared at {folder}; run `make setup` first.")
    server = launch_model_server(folder, tmp_path_factory.mktemp("base_server"))
    try:
        wait_ready(server, SERVER_START_TIMEOUT_S)
        yield server
    finally:
        stop(server)


@pytest.fixture(scope="module")
def base_app(base_server):
    config = SpaceConfig(endpoint=openai_url(base_server), model=str(model_path("base")), timeout_s=120)
    with running_app(config) as url:
        yield url


def test_embedded_model_answers_in_korean(base_app):
    chat = ask(client(base_app), EXAMPLE.question, EXAMPLE.report, max_new_tokens=12).result()[0]
    assert HANGUL.search(answers(chat)[-1]), f"no Korean in {answers(chat)[-1]!r}"


def test_browser_shows_a_streamed_korean_answer(base_app, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}: {INSTALL}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000}, locale="ko-KR")
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(base_app)
            page.locator("#report textarea").fill(EXAMPLE.report)
            page.locator("#question textarea").fill("이 판독문의 결론을 쉽게 설명해 주세요.")
            page.get_by_text("시스템 프롬프트와 생성 설정").click()  # the settings accordion
            page.locator("#max-new-tokens input[type=number]").fill("16")
            page.locator("#max-new-tokens input[type=number]").press("Enter")
            page.locator("#send").click()
            seen = _watch_answer(page, timeout_s=120)
            page.screenshot(path=str(tmp_path / "space.png"), full_page=True)
        finally:
            browser.close()
    assert not errors, f"the page raised: {errors}"
    assert len(seen) >= 2 and all(b.startswith(a) for a, b in zip(seen, seen[1:], strict=False)), seen
    assert HANGUL.search(seen[-1]), f"no Korean in the answer {seen[-1]!r}"


def _watch_answer(page, timeout_s: float) -> list[str]:
    """Every distinct text of the latest bot message until the send button's event is done."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        bot = page.locator("#chat .bot").last
        text = bot.inner_text().strip() if page.locator("#chat .bot").count() else ""
        if text and (not seen or text != seen[-1]):
            seen.append(text)
        if seen and page.locator("[data-testid=status-tracker].generating").count() == 0:
            return seen
        time.sleep(0.05)
    return seen
