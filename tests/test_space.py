"""The Space against real servers: `transformers serve` of the tiny model, a fault-injecting proxy in front of it,
the assembled Space folder run as the Hub runs it, and the terminal chat."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import gradio
import pytest
import yaml
from gradio_client.utils import QueueError, Status

import ko_radiology
from ko_radiology.llm import DataUseError, estimate_tokens
from ko_radiology.processes import free_port
from ko_radiology.prompts import SYSTEM_PROMPT, build_messages, format_user_turn
from ko_radiology.sample_corpus import SAMPLE_DIR
from ko_radiology.sections import join_sections
from space import chat as terminal_chat
from space import deploy, translation
from space.app import build_demo
from space.backends import EndpointBackend
from space.config import SpaceConfig
from space.conversation import BACKEND_FAILED, TRANSLATED, TRANSLATION_FAILED, ReportChat
from space.examples import sample_examples
from space.feedback import FeedbackStore
from space.report import CUT_MARK, fit_to_context, read_report
from space.translation import ReportTranslator
from space.visitors import answers, ask, client, visitors_in_queue
from tests.space_apps import app_process, running_app
from tests.standins import PROXY_VARIABLES, ChatReplyServer, ConnectionCounter, Fault, FaultProxy, Reply

REPO_ROOT = Path(__file__).resolve().parents[1]
REPORT = sample_examples()[0].report
LONG_TECHNIQUE = "이동형 전후면(AP) 흉부 방사선 촬영, 반좌위, 호기 시 촬영. " * 400
"""About 9,000 tokens by the endpoint estimate: far past the default 4,096-token context."""


# ---- the prompt format and the report ------------------------------------------------------------------------------


def test_single_turn_prompt_is_the_training_format():
    assert build_messages("R", "Q") == [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": "[판독문]\nR\n\n[요청]\nQ"},
    ]
    assert build_messages("R", "Q", "A")[-1] == {"role": "assistant", "content": "A"}


def test_follow_up_turns_carry_the_history_and_the_report_once():
    messages = build_messages("R", "Q3", history=[("Q1", "A1"), ("Q2", "A2")])
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == format_user_turn("R", "Q1")
    assert [m["content"] for m in messages[2:]] == ["A1", "Q2", "A2", "Q3"]


def test_reports_are_read_in_korean_english_and_free_text():
    korean = read_report(REPORT)
    assert korean.language == "ko" and {"findings", "impression", "technique"} <= set(korean.sections)
    assert korean.render() == REPORT
    english = read_report((SAMPLE_DIR / "files/p10/p10000101/s50000101.txt").read_text())
    assert english.language == "en" and {"findings", "impression"} <= set(english.sections)
    assert read_report("폐는 깨끗함. 급성 소견 없음.").sections is None


def test_too_long_report_loses_least_important_sections_first():
    report = read_report(REPORT.replace("촬영 방법: ", f"촬영 방법: {LONG_TECHNIQUE}"))
    fitted = fit_to_context(report, "질문", [], SYSTEM_PROMPT, 4096 - 256, estimate_tokens)
    assert estimate_tokens(fitted.messages) <= 4096 - 256
    assert "촬영 방법" not in fitted.report and "소견:" in fitted.report and "결론:" in fitted.report
    assert fitted.report.endswith(read_report(REPORT).sections["impression"])
    assert "촬영 방법" in fitted.notices[0] and "검사" not in fitted.notices[0].split(":")[-1]


def test_findings_are_cut_last_and_impression_never():
    sections = read_report(REPORT).sections | {"findings": "소견 문장. " * 3000}
    report = read_report(join_sections(sections, "ko"))
    fitted = fit_to_context(report, "질문", [("이전 질문", "이전 답")], SYSTEM_PROMPT, 1500, estimate_tokens)
    assert estimate_tokens(fitted.messages) <= 1500
    assert CUT_MARK in fitted.report and fitted.report.endswith(sections["impression"])
    assert len(fitted.messages) == 2, "the older turn goes before the findings are cut"
    assert len(fitted.notices) == 3


def test_settings_come_from_the_environment_with_clear_errors(monkeypatch):
    def settings(**variables: str) -> SpaceConfig:
        for name, value in variables.items():
            monkeypatch.setenv(f"KO_RADIOLOGY_{name}", value)
        return SpaceConfig.from_env()

    config = settings(BACKEND="endpoint", TIMEOUT_S="2.5")
    assert config.timeout_s == 2.5 and config.feedback_dir is None
    assert SpaceConfig.from_env(timeout_s=7.0, model=None).timeout_s == 7.0, "a flag wins; an unset one is ignored"
    assert SpaceConfig.from_values({}).timeout_s == 60.0, "from_values reads no environment"
    with pytest.raises(ValueError, match="KO_RADIOLOGY_QUEUE_SIZE='many': Input should be a valid integer"):
        settings(QUEUE_SIZE="many")
    monkeypatch.delenv("KO_RADIOLOGY_QUEUE_SIZE")
    with pytest.raises(ValueError, match="KO_RADIOLOGY_MODEL"):
        settings(BACKEND="local")
    assert settings(BACKEND="endpoint", ALLOW_REMOTE_ENDPOINT="Yes", MODEL="").model is None
    with pytest.raises(ValueError) as raised:  # every bad variable named, on one line; a zero timeout is no timeout
        settings(TIMEOUT_S="0", NO_RETENTION_CONFIRMED="maybe")
    assert "\n" not in str(raised.value) and "KO_RADIOLOGY_TIMEOUT_S='0': Input should be greater than 0" in str(
        raised.value
    ), raised.value
    assert "KO_RADIOLOGY_NO_RETENTION_CONFIRMED='maybe': Input should be a valid boolean" in str(raised.value)


def test_feedback_is_one_json_line_per_rating(tmp_path):
    store = FeedbackStore(tmp_path / "feedback")
    store.record("의학적 오류", "결론: 정상.", "질문", "답")
    store.record("좋아요", "결론: 정상.", "질문", "답")
    lines = [json.loads(line) for line in store.path.read_text().splitlines()]
    assert [line["rating"] for line in lines] == ["의학적 오류", "좋아요"]
    assert set(lines[0]) == {"time", "rating", "report", "question", "answer"}, "no IP, no session id"


# ---- the deployed Space folder, run as the Hub runs it -------------------------------------------------------------


@pytest.fixture(scope="module")
def space_folder(tmp_path_factory, tiny_server):
    out = tmp_path_factory.mktemp("deploy") / "space"
    argv = ["--repo-id", "org/ko-radiology-gpt", "--endpoint", tiny_server.base_url, "--model", tiny_server.model]
    argv += ["--adapter", "org/ko-radiology-lora", "--dataset", "org/ko-cxr-qa", "--dry-run", "--out", str(out)]
    assert deploy.main(argv) == 0
    return out


@pytest.fixture(scope="module")
def deployed_app(space_folder, tiny_server, installed_wheel):
    """The folder's `app.py` as the Hub runs it: on the project installed from its wheel (what the folder's
    requirements.txt installs there), with no checkout or editable install on the path."""
    env = {"KO_RADIOLOGY_ENDPOINT": tiny_server.base_url, "KO_RADIOLOGY_MODEL": tiny_server.model}
    env["KO_RADIOLOGY_CONCURRENCY_LIMIT"] = "1"
    with app_process(space_folder, env, installed=installed_wheel) as url:
        yield url


def test_space_folder_is_what_the_hub_needs(space_folder):
    front_matter = yaml.safe_load((space_folder / "README.md").read_text().split("---\n")[1])
    assert front_matter["sdk"] == "gradio" and front_matter["sdk_version"] == gradio.__version__
    assert front_matter["app_file"] == "app.py" and front_matter["license"] == "apache-2.0"
    assert front_matter["models"] == ["org/ko-radiology-lora"] and front_matter["datasets"] == ["org/ko-cxr-qa"]
    assert sorted(path.name for path in space_folder.iterdir()) == ["README.md", "app.py", "requirements.txt"]
    assert (space_folder / "app.py").read_bytes() == (REPO_ROOT / "space" / "app.py").read_bytes()
    tag = f"@v{ko_radiology.__version__}"
    requirement = f"ko-radiology-gpt[space] @ git+https://github.com/ko-radiology-gpt/ko-radiology-gpt{tag}"
    assert (space_folder / "requirements.txt").read_text() == requirement + "\n", "the [space] extra: no torch"


def test_space_folder_installs_what_its_backend_needs(tmp_path, capsys):
    deploying = ["--repo-id", "org/space", "--backend", "local", "--model", "embedded:base", "--dry-run"]
    fork = "git+https://github.com/someone/ko-radiology-gpt@0123abc"
    assert deploy.main([*deploying, "--out", str(tmp_path / "local"), "--package-url", fork]) == 0
    assert (tmp_path / "local" / "requirements.txt").read_text() == f"ko-radiology-gpt[space,local] @ {fork}\n"
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "app.py").write_text("# a folder deployed before")
    for url in ("git+https://user:hf_secret@github.com/org/private@v1", "./dist/ko_radiology_gpt.whl"):
        capsys.readouterr()
        assert deploy.main([*deploying, "--out", str(tmp_path / "kept"), "--package-url", url]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and "--package-url" in error and "hf_secret" not in error, error
    assert (tmp_path / "kept" / "app.py").read_text() == "# a folder deployed before", "bad input loses nothing"


def test_answers_stream_in_order_from_the_deployed_space(deployed_app):
    job = ask(client(deployed_app), "긴장성 기흉이 있나요?", REPORT, max_new_tokens=32)
    arrivals = [(time.monotonic(), answers(output[0])[-1]) for output in job if answers(output[0])]
    texts = [text for _, text in arrivals]
    assert len(set(texts)) >= 5, f"only {len(set(texts))} distinct partial answers: not streamed"
    assert all(later.startswith(earlier) for earlier, later in zip(texts, texts[1:], strict=False))
    assert arrivals[-1][0] - arrivals[0][0] > 0.05, "every piece arrived at once: a replay, not a stream"
    assert job.outputs()[-1][1] == REPORT, "the Korean report the model read is shown"


def test_oversized_report_is_shortened_with_a_warning(deployed_app):
    report = REPORT.replace("촬영 방법: ", f"촬영 방법: {LONG_TECHNIQUE}")
    chat, sent_report, notices, _ = ask(client(deployed_app), "결론이 뭔가요?", report, max_new_tokens=8).result()
    assert "촬영 방법" in notices and "결론" not in notices.split(":")[-1]
    assert "소견:" in sent_report and "결론:" in sent_report and "촬영 방법" not in sent_report
    assert answers(chat)[-1] and BACKEND_FAILED not in answers(chat)[-1]


def test_four_visitors_are_all_served_in_queue_order(deployed_app):
    visits = visitors_in_queue(deployed_app, 4, REPORT, max_new_tokens=24)
    assert all(visit.done_at is not None and visit.answer for visit in visits), "a visitor was dropped"
    assert sorted(range(4), key=lambda index: visits[index].first_token_at) == [0, 1, 2, 3], "out of queue order"


def test_full_queue_says_so_and_stop_frees_the_slot(tiny_server):
    config = SpaceConfig(endpoint=tiny_server.base_url, model=tiny_server.model, concurrency_limit=1, queue_size=1)
    with running_app(config) as url:
        long_answer = ask(client(url), "길게 답해 주세요.", REPORT, max_new_tokens=1000)
        while not long_answer.outputs():
            time.sleep(0.02)
        waiting = ask(client(url), "짧은 질문", REPORT, max_new_tokens=4)
        while waiting.status().code in (Status.STARTING, Status.JOINING_QUEUE):
            time.sleep(0.02)
        with pytest.raises(QueueError, match="Queue is full"):
            ask(client(url), "세 번째 질문", REPORT, max_new_tokens=4).result()
        long_answer.cancel()  # what 멈추기 does
        chat = waiting.result(timeout=60)[0]
    assert answers(chat)[-1], "the waiting visitor is served once the stopped answer frees the slot"
    assert len(answers(long_answer.outputs()[-1][0])[-1]) < 1000 * 3, "the stopped answer did not run to the end"


# ---- history, failures and the empty question, seen at the server --------------------------------------------------


@pytest.fixture(scope="module")
def proxied(tiny_server):
    with FaultProxy(tiny_server.base_url) as proxy:
        config = SpaceConfig(endpoint=proxy.base_url, model=tiny_server.model, timeout_s=2.0)
        with running_app(config) as url:
            yield proxy, url


def test_second_turn_carries_the_first(proxied, tiny_server):
    proxy, url = proxied
    proxy.reset()
    visitor = client(url)
    first_chat = ask(visitor, "첫 질문", REPORT).result()[0]
    ask(visitor, "두 번째 질문", REPORT).result()
    first, second = proxy.forwarded
    assert len(first["messages"]) == 2 and first["model"] == tiny_server.model
    assert second["messages"][:2] == first["messages"]
    assert second["messages"][2:] == [
        {"role": "assistant", "content": answers(first_chat)[-1].strip()},
        {"role": "user", "content": "두 번째 질문"},
    ]


def test_new_report_starts_a_new_conversation(proxied):
    proxy, url = proxied
    proxy.reset()
    visitor = client(url)
    ask(visitor, "첫 질문", REPORT).result()
    chat = ask(visitor, "다른 판독문 질문", sample_examples()[1].report).result()[0]
    assert len(answers(chat)) == 1 and len(proxy.forwarded[-1]["messages"]) == 2


@pytest.mark.parametrize("fault", [Fault.http_status(503), Fault.drop(), Fault.timeout(4.0)], ids=str)
def test_failing_endpoint_gets_a_korean_message_and_the_app_keeps_serving(proxied, fault):
    proxy, url = proxied
    proxy.reset()
    visitor = client(url)
    proxy.script(fault)
    failed_chat = ask(visitor, "실패할 질문", REPORT).result()[0]
    assert answers(failed_chat) == [BACKEND_FAILED]
    chat = ask(visitor, "다시 묻는 질문", REPORT).result()[0]
    assert answers(chat)[0] == BACKEND_FAILED and answers(chat)[1] and BACKEND_FAILED not in answers(chat)[1]
    assert "실패할 질문" not in json.dumps(proxy.forwarded[-1], ensure_ascii=False), "a failed turn is not history"


def test_empty_question_does_nothing(proxied):
    proxy, url = proxied
    proxy.reset()
    visitor = client(url)
    ask(visitor, "질문", REPORT).result()
    sent = len(proxy.requests)
    outputs = ask(visitor, "   ", REPORT).result()
    assert all(output == {"__type__": "update"} for output in outputs), "an empty question changed the page"
    assert len(proxy.requests) == sent
    assert len(answers(ask(visitor, "다음 질문", REPORT).result()[0])) == 2, "the conversation is unchanged"


def test_english_report_is_translated_with_the_builders_translator(tiny_server, monkeypatch):
    monkeypatch.setattr(translation, "TRANSLATION_MAX_TOKENS", 4)  # the tiny model never stops by itself
    backend = EndpointBackend(SpaceConfig(endpoint=tiny_server.base_url, model=tiny_server.model))
    english = (SAMPLE_DIR / "files/p10/p10000101/s50000101.txt").read_text()
    conversation = ReportChat(backend, ReportTranslator(tiny_server.base_url, tiny_server.model, 60)).start(english)
    assert conversation.report.language == "ko" and conversation.report_notices == [TRANSLATED]
    assert set(conversation.report.sections) == set(read_report(english).sections)
    down = ReportChat(backend, ReportTranslator(f"http://127.0.0.1:{free_port()}/v1", "x", 2)).start(english)
    assert down.report.language == "en" and down.report_notices == [TRANSLATION_FAILED]
    remote = ReportTranslator("http://10.255.255.1:8000/v1", "x", 2)  # not loopback, not allowed: never contacted
    assert ReportChat(backend, remote).start(english).report_notices == [TRANSLATION_FAILED]


# ---- the local backend and the terminal chat -----------------------------------------------------------------------


def test_local_backend_streams():
    with running_app(SpaceConfig(backend="local", model="embedded:tiny")) as url:
        job = ask(client(url), "결론을 설명해 주세요.", REPORT, max_new_tokens=24)
        texts = [answers(output[0])[-1] for output in job if answers(output[0])]
    assert len(set(texts)) >= 5 and all(b.startswith(a) for a, b in zip(texts, texts[1:], strict=False))


def test_terminal_chat_keeps_the_conversation(tmp_path, tiny_server):
    report = tmp_path / "report.txt"
    report.write_text(REPORT, encoding="utf-8")
    with FaultProxy(tiny_server.base_url) as proxy:
        command = [sys.executable, "-m", "space.chat", "--report", str(report), "--endpoint", proxy.base_url]
        command += ["--model", tiny_server.model, "--max-new-tokens", "8", "--temperature", "0"]
        done = subprocess.run(command, input="첫 질문\n\n두 번째 질문\n", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert len(proxy.forwarded) == 2 and len(proxy.forwarded[1]["messages"]) == 4
    assert proxy.forwarded[1]["messages"][3]["content"] == "두 번째 질문"


# ---- every model call through ko_radiology.llm: one data-use guard, one proxy policy -------------------------------


def app_function(config: SpaceConfig):
    """The generator Gradio runs for 보내기, taken from the built app and called without a web server, so this
    process's environment (its proxies) is the app's."""
    return next(function.fn for function in build_demo(config).fns.values() if function.api_name == "ask")


def test_environment_proxies_never_see_a_chat(tiny_server, tmp_path, monkeypatch):
    """A proxy in the environment would receive the report and the question: the Space's calls, like the builder's,
    go straight to the endpoint the guard checked."""
    report = tmp_path / "report.txt"
    report.write_text(REPORT, encoding="utf-8")
    command = [sys.executable, "-m", "space.chat", "--report", str(report), "--endpoint", tiny_server.base_url]
    command += ["--model", tiny_server.model, "--max-new-tokens", "8", "--temperature", "0"]
    with ConnectionCounter() as counter:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, f"http://127.0.0.1:{counter.port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        respond = app_function(SpaceConfig(endpoint=tiny_server.base_url, model=tiny_server.model))
        *_, (chat, *_) = respond("결론이 뭔가요?", REPORT, None, SYSTEM_PROMPT, 8, 0.0, 0.9, 1.0)
        done = subprocess.run(command, input="결론이 뭔가요?\n", capture_output=True, text=True, timeout=120)
    assert counter.connections == 0
    assert answers(chat)[-1] and BACKEND_FAILED not in answers(chat)[-1]
    assert done.returncode == 0 and BACKEND_FAILED not in done.stdout, done.stdout + done.stderr
    assert done.stdout.split("질문> ")[1].strip(), "the terminal chat printed no answer"


@pytest.mark.parametrize("endpoint", ["http://10.255.255.1:8000/v1", "https://remote.example/v1"])
def test_a_remote_endpoint_needs_both_acknowledgements(endpoint, tmp_path, monkeypatch, capsys):
    """Visitors may paste MIMIC-CXR text, so the builder's PhysioNet guard decides where it may go, at start-up,
    before anything connects: loopback, a host the operator runs, or a remote one with both acknowledgements."""
    monkeypatch.delenv("HF_TOKEN", raising=False)
    settings = {"KO_RADIOLOGY_ENDPOINT": endpoint, "KO_RADIOLOGY_MODEL": "ko-radiology"}

    def demo_with(variables: dict) -> None:
        with monkeypatch.context() as scoped:
            for name, value in variables.items():
                scoped.setenv(name, value)
            build_demo(SpaceConfig.from_env())

    with pytest.raises(DataUseError, match="PhysioNet"):
        demo_with(settings)
    acknowledged = settings | {"KO_RADIOLOGY_ALLOW_REMOTE_ENDPOINT": "true"}
    acknowledged |= {"KO_RADIOLOGY_NO_RETENTION_CONFIRMED": "1"}
    with pytest.raises(ValueError, match="HF_TOKEN"):  # a remote endpoint gets the token secret; none is set
        demo_with(acknowledged)
    demo_with(acknowledged | {"HF_TOKEN": "hf_test"})
    run_by_you = f"gpu-box, {urlsplit(endpoint).hostname}"  # no key needed: the operator's own server
    demo_with(settings | {"KO_RADIOLOGY_ALLOWED_HOSTS": run_by_you})

    started = subprocess.run(
        [sys.executable, "space/app.py"],
        cwd=REPO_ROOT,
        env=os.environ | settings,
        capture_output=True,
        text=True,
        timeout=120,
    )  # as the Hub starts it
    assert started.returncode == 2 and "Traceback" not in started.stderr, started.stderr
    assert "PhysioNet" in started.stderr and "KO_RADIOLOGY_ALLOW_REMOTE_ENDPOINT=true" in started.stderr
    report = tmp_path / "report.txt"
    report.write_text(REPORT, encoding="utf-8")
    assert terminal_chat.main(["--report", str(report), "--endpoint", endpoint, "--model", "ko-radiology"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--allow-remote-endpoint" in error and "PhysioNet" in error
    deploying = ["--repo-id", "org/space", "--endpoint", endpoint, "--model", "m", "--dry-run", "--out"]
    assert deploy.main([*deploying, str(tmp_path / "refused")]) == 2, "a Space that would refuse to start"
    assert not (tmp_path / "refused").exists()
    acknowledging = ["--allow-remote-endpoint", "--no-retention-confirmed"]
    assert deploy.main([*deploying, str(tmp_path / "space"), *acknowledging]) == 0
    assert "KO_RADIOLOGY_NO_RETENTION_CONFIRMED=True" in capsys.readouterr().out


@pytest.fixture(scope="module")
def reply_app():
    with ChatReplyServer() as server, running_app(SpaceConfig(endpoint=server.base_url, model="m")) as url:
        yield server, url


@pytest.mark.parametrize(
    "reply",
    [Reply.completion("폐는 깨끗합니다."), Reply.html(), Reply.stream(), Reply("text/event-stream")],
    ids=["json-completion", "html", "stream-without-text", "empty-body"],
)
def test_a_reply_that_is_not_a_stream_is_a_failed_turn(reply_app, reply):
    server, url = reply_app
    visitor = client(url)
    server.script(reply)
    failed_chat = ask(visitor, "실패할 질문", REPORT).result()[0]
    assert answers(failed_chat) == [BACKEND_FAILED]
    chat = ask(visitor, "다시 묻는 질문", REPORT).result()[0]
    assert answers(chat) == [BACKEND_FAILED, "답변"]
    assert "실패할 질문" not in json.dumps(server.bodies[-1], ensure_ascii=False), "a failed turn is not history"
