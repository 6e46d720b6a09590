"""The embedded base model: prepared once, loads fast, speaks Korean, and its chat template marks the answer."""

import json
import re

import pytest
import torch

from ko_radiology.embedded_models import PREPARED_MARKER, model_path, prepare_base_model, prepare_tiny_model
from ko_radiology.model_loading import load_model_and_tokenizer
from ko_radiology.prompts import SYSTEM_PROMPT, build_messages
from ko_radiology.text_checks import hangul_ratio

REPORT = "우하엽에 새로운 경화 소견이 보임. 흉막삼출이나 기흉은 없음."
QUESTION = "이 판독문의 주요 소견은 무엇인가요?"
ANSWER = "우하엽에 새로 생긴 경화가 주요 소견입니다."


@pytest.fixture(scope="module")
def base():
    return load_model_and_tokenizer(prepare_base_model())


def test_prepared_folder_is_plain_safetensors_without_quantization():
    folder = prepare_base_model()
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "gemma3_text"
    assert (folder / "model.safetensors").is_file()
    assert json.loads((folder / PREPARED_MARKER).read_text())["sha256"]


def test_prepare_is_idempotent():
    marker = prepare_base_model() / PREPARED_MARKER
    before = marker.stat().st_mtime_ns
    assert prepare_base_model() == marker.parent
    assert marker.stat().st_mtime_ns == before


def test_base_model_generates_korean(base):
    model, tokenizer = base
    inputs = tokenizer.apply_chat_template(
        build_messages(REPORT, QUESTION), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    output = model.generate(**inputs, max_new_tokens=24, do_sample=False)
    text = tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert hangul_ratio(text) > 0.5, text


def parse_rendered_conversation(rendered: str) -> list[dict[str, str]]:
    """Inverse of the chat template: Gemma turns back into messages."""
    turns = re.findall(r"<start_of_turn>(user|model)\n(.*?)<end_of_turn>\n", rendered, flags=re.DOTALL)
    return [{"role": "assistant" if role == "model" else "user", "content": content} for role, content in turns]


def test_chat_template_round_trips_a_conversation(base):
    _, tokenizer = base
    messages = build_messages(REPORT, QUESTION, ANSWER) + [
        {"role": "user", "content": "더 쉽게 설명해 주세요."},
        {"role": "assistant", "content": "오른쪽 아래 폐에 염증 같은 그림자가 보입니다."},
    ]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    assert rendered.startswith("<bos>")
    expected = [{"role": "user", "content": f"{SYSTEM_PROMPT}\n\n{messages[1]['content']}"}] + messages[2:]
    assert parse_rendered_conversation(rendered) == expected


def test_chat_template_marks_exactly_the_assistant_span(base):
    _, tokenizer = base
    encoded = tokenizer.apply_chat_template(
        build_messages(REPORT, QUESTION, ANSWER), tokenize=True, return_dict=True, return_assistant_tokens_mask=True
    )
    ids, mask = encoded["input_ids"], encoded["assistant_masks"]
    assert tokenizer.decode([i for i, m in zip(ids, mask, strict=True) if m]) == ANSWER + "<end_of_turn>\n"
    first_answer_token = mask.index(1)
    assert tokenizer.decode(ids[:first_answer_token]).endswith("<start_of_turn>model\n")


def test_tiny_model_shares_the_tokenizer_and_is_small(base):
    _, base_tokenizer = base
    model, tokenizer = load_model_and_tokenizer(prepare_tiny_model())
    assert tokenizer.get_vocab() == base_tokenizer.get_vocab()
    assert tokenizer.chat_template == base_tokenizer.chat_template
    assert model.config.num_hidden_layers == 2
    logits = model(torch.tensor([[tokenizer.bos_token_id, 100, 200]])).logits
    assert logits.shape == (1, 3, len(tokenizer))


def test_unknown_model_name_is_refused():
    with pytest.raises(ValueError, match="choose one of"):
        model_path("llama")
