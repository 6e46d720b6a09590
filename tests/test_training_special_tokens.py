"""Untrained chat-template tokens: found in the real base, started from trained rows, frozen, saved, reloaded by peft.

The tiny model's rows are random, so a copy of it gets what pretraining leaves in Gemma 3 270M: `<start_of_turn>`,
`<end_of_turn>` and a few dozen unused tokens share one row (plus noise).
"""

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from peft import AutoPeftModelForCausalLM
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from ko_radiology.chat_tokens import untrained_rows
from ko_radiology.embedded_models import model_path, prepare_tiny_model
from training.sft import main, parse_args
from training.special_tokens import offset_row

START_OF_TURN, END_OF_TURN, BOS, EOS = 105, 106, 2, 1
RECIPE = {
    "dtype": "float32",
    "use_peft": True,
    "lora_r": 4,
    "lora_alpha": 8,
    "lora_target_modules": ["q_proj", "v_proj"],
    "use_cpu": True,
    "max_length": 384,
    "packing": True,
    "per_device_train_batch_size": 1,
    "learning_rate": 1.0e-2,
    "max_steps": 2,
    "eval_strategy": "no",
    "save_strategy": "no",
    "report_to": "none",
}


@pytest.fixture(scope="module")
def collapsed_model_dir(tmp_path_factory) -> Path:
    """The tiny model with `<start_of_turn>`, `<end_of_turn>` and 34 unused tokens on one shared row, plus noise."""
    folder = tmp_path_factory.mktemp("collapsed") / "tiny"
    shutil.copytree(prepare_tiny_model(), folder)
    weights = load_file(folder / "model.safetensors")
    embeddings = weights["model.embed_tokens.weight"]
    generator = torch.Generator().manual_seed(0)
    shared = torch.randn(embeddings.shape[1], generator=generator)
    for token_id in [START_OF_TURN, END_OF_TURN, *range(6, 40)]:
        embeddings[token_id] = shared + 0.05 * torch.randn(embeddings.shape[1], generator=generator)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    return folder


def test_the_real_base_never_learned_its_turn_tokens():
    with safe_open(model_path("base") / "model.safetensors", framework="pt") as weights:
        embeddings = weights.get_tensor("model.embed_tokens.weight")
    found = untrained_rows(embeddings, [EOS, BOS, START_OF_TURN, END_OF_TURN])
    assert set(found) == {START_OF_TURN, END_OF_TURN}
    assert found[END_OF_TURN] > 1000  # a near-copy of thousands of unused tokens


def test_untrained_rows_start_from_trained_ones_are_frozen_and_reload_with_plain_peft(
    collapsed_model_dir, gold_hub_folder, tmp_path, capsys
):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "model_name_or_path": str(collapsed_model_dir)}))
    out = tmp_path / "out"
    args = ["--config", str(recipe), "--dataset_name", str(gold_hub_folder), "--output_dir", str(out)]
    trainer = main(*parse_args(args))
    printed = capsys.readouterr().out
    expected = "<start_of_turn> (a near-copy of 35 other rows) <- <bos>, <end_of_turn> (a near-copy of 35 other rows)"
    assert f"Untrained chat-template tokens in the base: {expected} <- <eos>." in printed
    assert json.loads((out / "adapter_config.json").read_text())["trainable_token_indices"] == [
        START_OF_TURN,
        END_OF_TURN,
    ]
    assert not any(p.requires_grad for n, p in trainer.model.named_parameters() if "trainable_tokens" in n)

    original = load_file(collapsed_model_dir / "model.safetensors")["model.embed_tokens.weight"]
    merged = AutoPeftModelForCausalLM.from_pretrained(out, dtype=torch.float32).merge_and_unload()
    rows = merged.get_input_embeddings().weight.detach()
    assert torch.allclose(rows[END_OF_TURN], offset_row(original[EOS], END_OF_TURN))
    assert torch.allclose(rows[START_OF_TURN], offset_row(original[BOS], START_OF_TURN))
    assert merged.get_output_embeddings().weight is merged.get_input_embeddings().weight  # still tied
    assert untrained_rows(rows, [START_OF_TURN, END_OF_TURN]) == {}
    card = (out / "README.md").read_text()
    assert "Chat-template tokens the base never learned (<start_of_turn>, <end_of_turn>)" in card


def test_a_trained_base_is_left_alone(gold_hub_folder, tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({**RECIPE, "model_name_or_path": "embedded:tiny", "max_steps": 1}))
    main(*parse_args(["--config", str(recipe), "--dataset_name", str(gold_hub_folder), "--output_dir", str(tmp_path)]))
    assert "Chat-template tokens of the base are all trained" in capsys.readouterr().out
    assert json.loads((tmp_path / "adapter_config.json").read_text())["trainable_token_indices"] is None
