"""Answers of local models are generated once per model, settings and question, and a changed model is a new one."""

import os
import shutil

from ko_radiology.answer_cache import cached_answers
from ko_radiology.embedded_models import prepare_tiny_model

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
