"""`space.demo`'s local server: llama.cpp's `llama-server` on the model's GGUF where it is built (exported once beside
the model, then reused), else `transformers serve`, with the reason printed either way.

The tiny random-weight model stands in for the merged one (its files linked into a folder of the test's own, so the
GGUF lands there). The llama-server test skips with the reason where llama.cpp is not built (CI); the fallback test
hides the build behind an empty cache folder, so it runs everywhere.
"""

import os
import sys
import time
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from transformers import AutoTokenizer

from ko_radiology import llama_cpp
from ko_radiology.embedded_models import model_path
from ko_radiology.processes import free_port
from ko_radiology.prompts import build_messages
from space.conversation import BACKEND_FAILED
from space.demo import parse_args
from space.local_server import fresh_gguf
from space.visitors import answers, ask, client
from tests.foreground_run import ForegroundRun

REPORT = "소견: 우하엽에 경화가 있음. 흉막삼출이나 기흉은 없음.\n\n결론: 우하엽 폐렴."
START_TIMEOUT_S = 300
ANSWER_SCRIPT = """
import sys, httpx
body = {"model": sys.argv[2], "messages": [{"role": "user", "content": "폐렴이 있나요?"}], "max_tokens": 4}
answer = httpx.post(sys.argv[1] + "/chat/completions", json=body, timeout=120, trust_env=False)
answer.raise_for_status()
print("ANSWER", repr(answer.json()["choices"][0]["message"]["content"]))
"""
"""Run by `space.demo --run` with {endpoint} and {model} filled in: one answer through the OpenAI API."""


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    """The tiny model's files, linked into a folder of this test's own: its `-gguf` folder lands beside it."""
    folder = tmp_path / "tiny-merged"
    folder.mkdir()
    for path in model_path("tiny").iterdir():
        (folder / path.name).symlink_to(path)
    return folder


def demo(model: Path, *flags: str, env: dict[str, str] | None = None) -> ForegroundRun:
    command = [sys.executable, "-m", "space.demo", "--model", str(model), "--log-dir", str(model.parent / "logs")]
    command += ["--port", str(free_port()), "--server-port", str(free_port()), *flags]
    return ForegroundRun(command, env={**os.environ, **(env or {})})


def test_demo_serves_the_gguf_with_llama_server_and_the_space_answers(tiny_model):
    if (server := llama_cpp.binary("llama-server")).path is None:
        pytest.skip(server.reason)
    run = demo(tiny_model)
    try:
        running = run.wait_for(r"Ko-Radiology-GPT is running: (\S+)\n  model: (\S+) via (\S+)", START_TIMEOUT_S)
        url, model, endpoint = running.groups()
        gguf = tiny_model.resolve().parent / "tiny-merged-gguf" / "tiny-merged-Q8_0.gguf"
        assert f"Serving with llama.cpp's llama-server (4 parallel slots) on {gguf} (exported now)." in run.output
        assert model == str(gguf) and gguf.is_file()

        chat = ask(client(url), "폐렴이 있나요?", REPORT, max_new_tokens=8).result()[0]
        assert answers(chat)[-1] and BACKEND_FAILED not in answers(chat)[-1], "the Space's model name is accepted"

        openai = OpenAI(base_url=endpoint, api_key="none", http_client=httpx.Client(trust_env=False))
        messages = build_messages(REPORT, "폐렴이 있나요?")
        greedy = {"model": model, "messages": messages, "max_tokens": 8, "temperature": 0}
        chunks = [chunk for chunk in openai.chat.completions.create(**greedy, stream=True) if chunk.choices]
        assert len(chunks) > 2 and chunks[-1].choices[0].finish_reason == "length"
        # The tiny model's random weights never pick <end_of_turn>: a bias makes it the first token, which must end
        # the answer unseen, as the fine-tuned model's own <end_of_turn> does
        end_of_turn = AutoTokenizer.from_pretrained(tiny_model).convert_tokens_to_ids("<end_of_turn>")
        stopped = openai.chat.completions.create(**greedy, logit_bias={str(end_of_turn): 100})
        assert (stopped.choices[0].finish_reason, stopped.choices[0].message.content) == ("stop", "")
    finally:
        returncode = run.interrupt()
    assert returncode is not None and "Stopped llama-server." in run.output and "Stopped Space." in run.output

    again = demo(tiny_model, "--run", "--", sys.executable, "-c", ANSWER_SCRIPT, "{endpoint}", "{model}")
    output = again.finish(START_TIMEOUT_S)
    assert f"on {gguf} (exported before)." in output and "Exporting" not in output
    assert "ANSWER '" in output


def test_demo_asked_for_a_missing_llama_server_serves_with_transformers_saying_why(tiny_model):
    empty_cache = tiny_model.parent / "cache-without-llama-cpp"
    run = demo(
        tiny_model,
        "--server",
        "llama.cpp",
        "--run",
        "--",
        sys.executable,
        "-c",
        ANSWER_SCRIPT,
        "{endpoint}",
        "{model}",
        env={"KO_RADIOLOGY_CACHE": str(empty_cache)},
    )
    output = run.finish(START_TIMEOUT_S)
    reason = next(line for line in output.splitlines() if line.startswith("Serving with "))
    assert reason.startswith(
        "Serving with transformers serve instead of llama-server, asked for with --server llama.cpp: "
        f"llama-server is not built for {llama_cpp.default_isa()} in {empty_cache}"
    )
    assert "`python -m ko_radiology.llama_cpp build`" in reason
    assert "ANSWER '" in output and "Stopped model server." in output
    assert not (tiny_model.parent / "tiny-merged-gguf").exists(), "no GGUF is made for a server that is not there"


def test_a_gguf_is_served_until_the_model_it_was_made_from_changes(tmp_path):
    model, gguf_dir = tmp_path / "merged", tmp_path / "merged-gguf"
    model.mkdir()
    gguf_dir.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md"):
        (model / name).write_text("{}")
    gguf = gguf_dir / "merged-Q8_0.gguf"
    gguf.write_bytes(b"GGUF")
    now = time.time()
    os.utime(gguf, (now, now))
    assert fresh_gguf(gguf_dir, model) == gguf
    os.utime(model / "README.md", (now + 60, now + 60))
    assert fresh_gguf(gguf_dir, model) == gguf, "a card rendered again changes no weights"
    os.utime(model / "model.safetensors", (now + 60, now + 60))
    assert fresh_gguf(gguf_dir, model) is None
    os.utime(gguf, (now + 120, now + 120))
    (gguf_dir / "merged-Q4_K_M.gguf").write_bytes(b"GGUF")
    assert fresh_gguf(gguf_dir, model) is None, "two GGUFs: which one is the model's is not known"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--endpoint", "http://h:8080/v1", "--endpoint-model", "m", "--server", "llama.cpp"], "pass --model"),
        (["--stand-in-judge", "--gguf-dir", "x", "--run", "--", "true"], "pass --model"),
        (["--model", "embedded:base", "--slots", "0"], "--slots 0: pass 1 or more"),
    ],
)
def test_server_options_are_refused_where_they_mean_nothing(argv, error, capsys):
    with pytest.raises(SystemExit) as exit_:
        parse_args(argv)
    assert exit_.value.code == 2 and error in capsys.readouterr().err
