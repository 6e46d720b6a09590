"""Answers of local models are generated once per model, settings and question, and a changed model is a new one."""

import os
import shutil

import pytest

from ko_radiology.answer_cache import TransformersGenerator, cached_answers
from ko_radiology.embedded_models import prepare_tiny_model
from ko_radiology.generation import generate_answers
from ko_radiology.hardware import default_dtype

QUESTIONS = [("[판독문] 우측 소량 흉수.", "흉수가 있나요?"), ("[판독문] 심장 크기 정상.", "심장은 어떤가요?")]


def test_answers_are_generated_once_and_a_changed_model_answers_again(tmp_path, monkeypatch, capsys):
    model = tmp_path / "model"
    shutil.copytree(prepare_tiny_model(), model)
    monkeypatch.setenv("KO_RADIOLOGY_CACHE", str(tmp_path / "cache"))

    first = cached_answers(str(model), QUESTIONS[:1], max_new_tokens=8)
    assert "Answering 1 of 1 questions" in capsys.readouterr().out
    both = cached_answers(str(model), QUESTIONS, max_new_tokens=8)
    assert "Answering 1 of 2 questions" in capsys.readouterr().out and both[0] == first[0]
    assert cached_answers(str(model), QUESTIONS[::-1], max_new_tokens=8) == both[::-1]
    assert "from the cache" in capsys.readouterr().out

    cached_answers(str(model), QUESTIONS, max_new_tokens=4)  # other settings, other answers
    assert "Answering 2 of 2 questions" in capsys.readouterr().out
    for weights in model.glob("*.safetensors"):  # re-exported into the same folder
        os.utime(weights, ns=(0, 0))
    cached_answers(str(model), QUESTIONS, max_new_tokens=8)
    assert "Answering 2 of 2 questions" in capsys.readouterr().out


def test_answers_live_in_the_response_store_and_an_interrupted_run_resumes(tmp_path, monkeypatch, capsys):
    """Local answers are stored batch by batch in the LLM client's SQLite store, with a ledger row each, like an
    endpoint's; a run stopped by Ctrl-C after its first batch keeps that batch, and the rerun answers the rest."""
    from ko_radiology import answer_cache
    from ko_radiology.llm import ResponseStore

    model = tmp_path / "model"
    shutil.copytree(prepare_tiny_model(), model)
    monkeypatch.setenv("KO_RADIOLOGY_CACHE", str(tmp_path / "cache"))
    batches = []

    def interrupted_after_one_batch(*args, **kwargs):
        if batches:
            raise KeyboardInterrupt
        batches.append(generate_answers(*args, **kwargs))
        return batches[-1]

    monkeypatch.setattr(answer_cache, "generate_answers", interrupted_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        cached_answers(str(model), QUESTIONS, max_new_tokens=8, generator=TransformersGenerator(batch_size=1))
    monkeypatch.setattr(answer_cache, "generate_answers", generate_answers)
    capsys.readouterr()
    answers = cached_answers(str(model), QUESTIONS, max_new_tokens=8, generator=TransformersGenerator(batch_size=1))
    assert "Answering 1 of 2 questions" in capsys.readouterr().out and batches[0][0] in answers

    store = ResponseStore(tmp_path / "cache" / "answers.sqlite", run_id="reader")
    try:
        (row,) = store.ledger().rows
        assert row.model == str(model.resolve()) and (row.sent, row.cached) == (2, 1) and row.cost_usd == 0
        texts = {text for (text,) in store.db.execute("SELECT text FROM responses")}
        assert texts == {answer.text for answer in answers}
    finally:
        store.close()


def test_eval_check_and_eval_compare_ask_for_answers_in_one_dtype(tmp_path):
    """eval.compare takes the transformers generator's default dtype, eval.check its `--dtype` default: were they to
    differ (as float32 against bf16 did on a CPU with native bf16), the judge would score other answers than the check
    reports and the base's 256-token answers would be generated twice. Their llama.cpp GGUF type is one default too."""
    from eval.check import parse_args
    from eval.compare import CompareOptions

    check = parse_args([str(tmp_path)])
    assert TransformersGenerator().dtype == check.dtype == default_dtype("check")
    assert CompareOptions.__dataclass_fields__["gguf_type"].default == check.gguf_type
