"""GGUF export of the tiny Gemma through llama.cpp's own converter: read back by `transformers` and by the `gguf`
reader, the Ollama Modelfile rendered by Go's template engine, the push to a Hub stand-in, and the file served by
llama.cpp's `llama-server` where that is built (`python -m ko_radiology.llama_cpp build`).

The tiny model has two layers, one sliding and one full; Gemma 3 in GGUF has no layer pattern but llama.cpp's (every
sixth layer full), so the read-back takes the merged model's config: the round trip checked is that of the weights,
the tokenizer and the chat metadata.
"""

import json
import shutil
import subprocess
from pathlib import Path

import gguf
import httpx
import huggingface_hub
import numpy as np
import pytest
import torch
import yaml
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ko_radiology import llama_cpp
from ko_radiology.embedded_models import CHAT_TEMPLATE
from ko_radiology.processes import free_port, start, stop, wait_ready
from ko_radiology.prompts import SYSTEM_PROMPT, build_messages
from tests.standins import HubStandin
from tests.test_training import train, write_recipe
from training.export import main as export
from training.export import merge_adapter
from training.gguf_export import GGUF_HUB_FILES, MODELFILE, OLLAMA_TEMPLATE

REPO = "org/ko-radiology-tiny-GGUF"
REPORT = "소견: 우하엽에 경화가 있음. 흉막삼출이나 기흉은 없음.\n\n결론: 우하엽 폐렴."
SERVER_START_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def adapter(tmp_path_factory, gold_hub_folder) -> Path:
    """A real adapter of the tiny model, with its card values: one training step."""
    tmp = tmp_path_factory.mktemp("gguf-run")
    train(write_recipe(tmp / "tiny.yaml", max_steps=1), gold_hub_folder, tmp / "adapter")
    return tmp / "adapter"


@pytest.fixture(scope="module")
def merged(adapter, tmp_path_factory) -> Path:
    return merge_adapter(adapter, tmp_path_factory.mktemp("merged") / "tiny-merged", dtype="float32")


@pytest.fixture(scope="module")
def f16_export(adapter, tmp_path_factory) -> Path:
    """The adapter exported through the CLI: merged in float32 first, then converted to f16."""
    out = tmp_path_factory.mktemp("f16") / "tiny-ko-radiology-gguf"
    assert (
        export([str(adapter), "--out", str(out), "--format", "gguf", "--gguf-type", "f16", "--dtype", "float32"]) == 0
    )
    return out


@pytest.fixture(scope="module")
def q8_export(merged, tmp_path_factory) -> tuple[Path, list]:
    """The merged folder exported to Q8_0 through the CLI and pushed to a Hub stand-in; returns the folder and the
    recorded Hub requests."""
    out = tmp_path_factory.mktemp("q8") / "tiny-ko-radiology-gguf"
    with pytest.MonkeyPatch.context() as patch, HubStandin() as hub:
        patch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the tests run with the Hub offline
        patch.setattr(huggingface_hub.constants, "ENDPOINT", hub.root)
        patch.setenv("HF_TOKEN", "hf_test_token")
        args = [str(merged), "--out", str(out), "--format", "gguf", "--gguf-type", "q8_0"]
        assert export([*args, "--push_to_hub", "--hub_model_id", REPO]) == 0
    return out, hub.requests


@pytest.fixture(scope="module")
def q8_reader(q8_export) -> gguf.GGUFReader:
    return gguf.GGUFReader(q8_export[0] / "tiny-ko-radiology-Q8_0.gguf")


def field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def test_f16_gguf_reads_back_in_transformers_with_the_merged_models_logits(f16_export, merged):
    tokenizer = AutoTokenizer.from_pretrained(merged)
    reference = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    config = AutoConfig.from_pretrained(merged)
    name = "tiny-ko-radiology-F16.gguf"
    assert sorted(path.name for path in f16_export.glob("*.gguf")) == [name]
    model = AutoModelForCausalLM.from_pretrained(f16_export, gguf_file=name, config=config, dtype=torch.float32)
    inputs = tokenizer.apply_chat_template(
        build_messages(REPORT, "폐렴이 있나요?"), add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        expected, actual = reference(**inputs).logits, model(**inputs).logits
    scale = expected.abs().max().item()
    assert (actual - expected).abs().max().item() < 1e-2 * scale  # float16 weights: ~1e-3 relative
    greedy = {"max_new_tokens": 8, "do_sample": False}
    assert torch.equal(model.generate(**inputs, **greedy), reference.generate(**inputs, **greedy))


def test_gguf_carries_the_chat_template_and_stops_at_the_end_of_turn(q8_reader, merged):
    tokenizer = AutoTokenizer.from_pretrained(merged)
    assert field(q8_reader, "tokenizer.chat_template") == CHAT_TEMPLATE
    end_of_turn = tokenizer.convert_tokens_to_ids("<end_of_turn>")
    assert field(q8_reader, "tokenizer.ggml.eos_token_id") == end_of_turn
    assert field(q8_reader, "tokenizer.ggml.tokens")[end_of_turn] == "<end_of_turn>"
    assert field(q8_reader, "tokenizer.ggml.bos_token_id") == tokenizer.bos_token_id
    assert field(q8_reader, "general.architecture") == "gemma3"
    assert field(q8_reader, "general.name") == "tiny-ko-radiology"


def test_q8_0_weights_are_the_merged_weights_within_quantization_error(q8_reader, merged):
    embedding = next(tensor for tensor in q8_reader.tensors if tensor.name == "token_embd.weight")
    assert embedding.tensor_type == gguf.GGMLQuantizationType.Q8_0
    values = gguf.quants.dequantize(embedding.data, embedding.tensor_type)
    model = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32)
    expected = model.get_input_embeddings().weight.detach().numpy()
    assert values.shape == expected.shape
    # Q8_0: blocks of 32 values sharing one scale, max/127: the error is at most half a step of each block
    assert np.abs(values - expected).max() <= np.abs(expected).max() / 127


def test_modelfile_names_the_file_the_stop_token_and_the_trained_system_prompt(q8_export):
    text = (q8_export[0] / MODELFILE).read_text()
    lines = text.splitlines()
    assert "FROM ./tiny-ko-radiology-Q8_0.gguf" in lines and (q8_export[0] / "tiny-ko-radiology-Q8_0.gguf").is_file()
    assert 'PARAMETER stop "<end_of_turn>"' in lines and "PARAMETER temperature 0" in lines
    assert f'SYSTEM """{SYSTEM_PROMPT}"""' in text and f'TEMPLATE """{OLLAMA_TEMPLATE}"""' in text


GO_RENDER = """package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type Message struct{ Role, Content string }

func main() {
	source, _ := os.ReadFile(os.Args[1])
	var messages []Message
	json.Unmarshal([]byte(os.Args[2]), &messages)
	tmpl := template.Must(template.New("t").Parse(string(source)))
	if err := tmpl.Execute(os.Stdout, map[string]any{"Messages": messages}); err != nil {
		panic(err)
	}
}
"""


@pytest.mark.skipif(shutil.which("go") is None, reason="Go is not installed (apt-get install golang-go)")
@pytest.mark.parametrize("turns", [1, 2])
def test_ollama_template_renders_what_the_chat_template_renders(tmp_path, merged, turns):
    """Ollama runs the Modelfile's TEMPLATE with Go's text/template and adds `<bos>` itself; the prompt it then sends
    must be the one the model was trained on."""
    tokenizer = AutoTokenizer.from_pretrained(merged)
    history = [("폐렴이 있나요?", "네, 우하엽 폐렴이 있습니다.")][: turns - 1]
    messages = build_messages(REPORT, "기흉이 있나요?", history=history)
    expected = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    (tmp_path / "render.go").write_text(GO_RENDER)
    (tmp_path / "template").write_text(OLLAMA_TEMPLATE)
    command = ["go", "run", str(tmp_path / "render.go"), str(tmp_path / "template"), json.dumps(messages)]
    rendered = subprocess.run(command, capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert tokenizer.bos_token + rendered == expected


def test_card_says_how_the_gguf_was_made_and_its_size(q8_export):
    out, _ = q8_export
    card = (out / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "gguf" and "gguf" in metadata["tags"]
    size_mb = (out / "tiny-ko-radiology-Q8_0.gguf").stat().st_size / 1e6
    assert "(GGUF Q8_0)" in card and f"Q8_0, {size_mb:.0f} MB" in card
    assert llama_cpp.converter_version() in card and "--outtype q8_0" in card
    assert "llama-server -m tiny-ko-radiology-Q8_0.gguf --jinja" in card


def test_push_uploads_the_gguf_modelfile_and_card_in_one_commit(q8_export):
    _, requests = q8_export
    assert [r.json["name"] for r in requests if r.path == "/api/repos/create"] == [REPO.split("/")[1]]
    commits = [r for r in requests if r.path.startswith(f"/api/models/{REPO}/commit/")]
    assert len(commits) == 1
    assert sorted(commits[0].files) == ["Modelfile", "README.md", "tiny-ko-radiology-Q8_0.gguf"]
    assert GGUF_HUB_FILES[0] == "*.gguf"


def test_q4_k_m_without_the_quantizer_says_how_to_build_it(tmp_path, merged, monkeypatch, capsys):
    """A cache folder where llama.cpp was never built: the export refuses at once, before converting anything."""
    monkeypatch.setenv("KO_RADIOLOGY_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "q4-gguf"
    assert export([str(merged), "--out", str(out), "--format", "gguf", "--gguf-type", "q4_k_m"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "python -m ko_radiology.llama_cpp build" in err and not out.exists()


def test_export_refuses_to_replace_the_model_it_exports(merged, capsys):
    assert export([str(merged), "--out", str(merged), "--format", "gguf"]) == 2
    assert "is the model being exported" in capsys.readouterr().err and (merged / "config.json").is_file()


@pytest.fixture(scope="module")
def served_q4_k_m(merged, tmp_path_factory):
    """The merged model as Q4_K_M (llama-quantize), served by llama-server on a free loopback port."""
    if (server := llama_cpp.binary("llama-server")).path is None:
        pytest.skip(server.reason)
    out = tmp_path_factory.mktemp("q4") / "tiny-ko-radiology-gguf"
    assert export([str(merged), "--out", str(out), "--format", "gguf", "--gguf-type", "q4_k_m"]) == 0
    service = llama_cpp.server_service(out / "tiny-ko-radiology-Q4_K_M.gguf", free_port(), out.parent, 2)
    start(service)
    try:
        wait_ready(service, SERVER_START_TIMEOUT_S)
        yield service
    finally:
        stop(service)


def test_llama_server_streams_the_gguf_through_the_openai_api(served_q4_k_m, merged):
    from openai import OpenAI

    base_url = served_q4_k_m.ready_url.removesuffix("/health")
    client = OpenAI(base_url=f"{base_url}/v1", api_key="none")
    stream = client.chat.completions.create(
        model="tiny",
        messages=build_messages(REPORT, "폐렴이 있나요?"),
        max_tokens=8,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert len(chunks) > 2 and text and chunks[-1].choices[0].finish_reason in ("length", "stop")
    # llama.cpp renders the chat template and tokenizes as transformers does, Korean included (its prompt leaves out
    # the `<bos>` that tokenization adds)
    tokenizer = AutoTokenizer.from_pretrained(merged)
    messages = build_messages(REPORT, "기흉이 있나요?", history=[("폐렴이 있나요?", "네, 우하엽 폐렴이 있습니다.")])
    rendered = httpx.post(f"{base_url}/apply-template", json={"messages": messages}, trust_env=False).json()["prompt"]
    assert tokenizer.bos_token + rendered == tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )
    tokens = httpx.post(f"{base_url}/tokenize", json={"content": rendered}, trust_env=False).json()["tokens"]
    assert tokens == tokenizer(rendered, add_special_tokens=False)["input_ids"]
