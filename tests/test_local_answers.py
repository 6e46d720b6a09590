"""Local answers through llama.cpp's llama-server (where it is built, `python -m ko_radiology.llama_cpp build`): the
tiny model exported to GGUF once per model, its answers cached apart from transformers' answers, a retrained model
exported again; and the one-line error or the fallback where llama-server is not built."""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eval import check, compare
from eval.local_answers import gguf_exports_dir, local_generator
from ko_radiology import llama_cpp
from ko_radiology.answer_cache import BATCH_SIZE, TransformersGenerator, answers_store_path, cached_answers
from ko_radiology.cli import EXIT_FAILED, run_cli
from ko_radiology.embedded_models import prepare_tiny_model
from ko_radiology.hardware import default_dtype
from ko_radiology.llama_cpp_answers import LlamaCppGenerator
from ko_radiology.llm import ResponseStore

QUESTIONS = [("[판독문] 우측 소량 흉수.", "흉수가 있나요?"), ("[판독문] 심장 크기 정상.", "심장은 어떤가요?")]
SERVER = llama_cpp.binary("llama-server")


@pytest.fixture
def tiny_model(tmp_path) -> Path:
    model = tmp_path / "model"
    shutil.copytree(prepare_tiny_model(), model)
    return model


@pytest.fixture
def cache_with_llama_cpp(tmp_path, monkeypatch) -> Path:
    """An empty cache folder that shares this machine's llama.cpp build and sources (the converter)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "llama.cpp").symlink_to(llama_cpp.llama_cpp_cache())
    monkeypatch.setenv("KO_RADIOLOGY_CACHE", str(cache))
    return cache


def stored_settings() -> list[tuple]:
    """(backend, gguf_type, dtype) of every stored answer's request."""
    store = ResponseStore(answers_store_path(), run_id="reader")
    try:
        bodies = [json.loads(request) for (request,) in store.db.execute("SELECT request FROM responses")]
    finally:
        store.close()
    return sorted((body.get("backend", ""), body.get("gguf_type", ""), body.get("dtype", "")) for body in bodies)


@pytest.mark.skipif(SERVER.path is None, reason=SERVER.reason or "")
def test_llama_cpp_answers_are_cached_apart_from_transformers_and_follow_the_model(
    tiny_model, cache_with_llama_cpp, capsys
):
    generator = local_generator(str(tiny_model), "llama.cpp", "f32", slots=2)
    answers = cached_answers(str(tiny_model), QUESTIONS, 8, generator)
    out = capsys.readouterr().out
    assert "Exporting" in out and "Started llama-server" in out and "Stopped llama-server" in out
    assert all(answer.num_tokens == 8 and not answer.stopped or answer.stopped for answer in answers)

    assert cached_answers(str(tiny_model), QUESTIONS, 8, generator) == answers
    out = capsys.readouterr().out
    assert "from the cache" in out and "Exporting" not in out and "llama-server" not in out

    cached_answers(str(tiny_model), QUESTIONS, 8, TransformersGenerator("float32"))  # never served llama.cpp's
    assert "Answering 2 of 2 questions" in capsys.readouterr().out
    assert stored_settings() == [("", "", "float32")] * 2 + [("llama.cpp", "f32", "")] * 2

    for weights in tiny_model.glob("*.safetensors"):  # retrained into the same folder: exported again
        os.utime(weights, ns=(0, 0))
    cached_answers(str(tiny_model), QUESTIONS, 8, generator)
    assert "Exporting" in capsys.readouterr().out
    (exports,) = gguf_exports_dir().iterdir()
    assert len(list(exports.iterdir())) == 1  # the earlier model's GGUF is gone


def test_llama_cpp_without_a_build_is_one_line_and_auto_falls_back(tiny_model, tmp_path, monkeypatch, capsys):
    """A cache folder where llama.cpp was never built: asking for it stops at once, saying how to build it; auto
    answers with transformers and says why."""
    monkeypatch.setenv("KO_RADIOLOGY_CACHE", str(tmp_path / "cache"))
    assert check.main([str(tiny_model), "--backend", "llama.cpp"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--backend llama.cpp needs llama-server" in err and "llama_cpp build" in err

    questions = tmp_path / "q.csv"
    questions.write_text("report,question\n[판독문] 우측 소량 흉수.,흉수가 있나요?\n", encoding="utf-8")
    argv = ["--input", str(questions), "--model", f"tiny={tiny_model}", "--max_new_tokens", "3"]
    assert compare.main([*argv, "--out", str(tmp_path / "a.csv"), "--backend", "llama.cpp"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert compare.main([*argv, "--out", str(tmp_path / "a.csv"), "--batch_size", "0"]) == 2
    assert "--batch_size 0" in capsys.readouterr().err and not (tmp_path / "a.csv").exists()
    assert compare.main([*argv, "--out", str(tmp_path / "b.csv")]) == 0
    said = f"transformers ({default_dtype('check')}, batches of {BATCH_SIZE}): llama.cpp is not available"
    assert said in capsys.readouterr().out


@pytest.mark.skipif(SERVER.path is None, reason=SERVER.reason or "")
def test_llama_cpp_prefills_a_report_once_for_all_its_questions(tiny_model, cache_with_llama_cpp, capsys):
    """Questions about one report go to one slot in a row, whose KV cache still holds the system prompt and report:
    llama-server's log shows each report's prompt prefilled once, and its other questions with their few tokens."""
    reports = [
        "[판독문] 우측 소량 흉수가 있으며 심장 크기는 정상이다. 기흉은 없다.",
        "[판독문] 좌하엽 무기폐. 삽관 튜브 끝은 기관분기부 위 4 cm.",
    ]
    asked = ["흉수가 있나요?", "기흉이 있나요?", "심장 크기는 어떤가요?"]
    questions = [(report, question) for question in asked for report in reports]  # interleaved, as a cache sends them
    cached_answers(str(tiny_model), questions, 4, local_generator(str(tiny_model), "llama.cpp", "f32", slots=2))
    log = Path(re.search(r"Started llama-server \(pid \d+, log (.+)\)\.", capsys.readouterr().out).group(1))
    prefilled = sorted(int(tokens) for tokens in re.findall(r"prompt eval time = .* / +(\d+) tokens", log.read_text()))
    assert len(prefilled) == 6 and all(tokens < prefilled[-2] / 3 for tokens in prefilled[:4]), prefilled


@pytest.mark.skipif(SERVER.path is None, reason=SERVER.reason or "")
def test_a_llama_server_that_dies_is_an_error_with_its_log_and_exit_status_1(
    tiny_model, cache_with_llama_cpp, tmp_path, capsys
):
    """A GGUF llama-server cannot load: the command ends with `error:` and the end of the server's log, status 1,
    and no server is left running."""
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    generator = LlamaCppGenerator(lambda path, gguf_type: broken, "f32", slots=1)
    assert run_cli(lambda argv: cached_answers(str(tiny_model), QUESTIONS, 4, generator)) == EXIT_FAILED
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "llama-server" in err and str(broken) in err
    assert subprocess.run(["pgrep", "-f", str(broken)], capture_output=True).returncode == 1
