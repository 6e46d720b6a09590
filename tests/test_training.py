"""Training on the tiny random Gemma: the loss, the labels, the CLI, QLoRA, saving, resuming and the merged export."""

import json
from pathlib import Path

import datasets
import pytest
import torch
import yaml
from peft import AutoPeftModelForCausalLM
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from ko_radiology.models import prepare_tiny_model
from ko_radiology.prompts import build_messages
from training.data import load_qa_splits, prepare_qa_split, tokenize_example
from training.export import merge_adapter
from training.sft import main, parse_args
from training.trainer import answer_only_loss

# A few short examples, two steps, no evaluation except where a test needs it: the whole file runs in about a minute.
TINY_RECIPE = {
    "model_name_or_path": "embedded:tiny",
    "dtype": "float32",
    "use_peft": True,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_target_modules": ["q_proj", "v_proj"],
    "dataset_config": "qa",
    "use_cpu": True,
    "bf16": False,
    "max_length": 384,
    "packing": True,
    "gradient_checkpointing": False,
    "per_device_train_batch_size": 1,
    "learning_rate": 1.0e-2,
    "max_steps": 5,
    "eval_strategy": "no",
    "logging_steps": 1,
    "save_strategy": "steps",
    "save_steps": 2,
    "report_to": "none",
    "seed": 0,
}


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    return prepare_tiny_model()


@pytest.fixture(scope="session")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def write_recipe(path: Path, **overrides) -> Path:
    path.write_text(yaml.safe_dump({**TINY_RECIPE, **overrides}))
    return path


def train(recipe: Path, dataset_dir: Path, output_dir: Path, *flags: str):
    args = ["--config", str(recipe), "--dataset_name", str(dataset_dir), "--output_dir", str(output_dir), *flags]
    return main(*parse_args(args))


@pytest.fixture(scope="module")
def trained(tmp_path_factory, gold_hub_folder, tiny_model_dir):
    """Two steps from a YAML recipe whose max_steps (5) a flag overrides, with the validation loss before and after,
    pushed to a Hub whose upload calls are recorded instead of sent."""
    tmp = tmp_path_factory.mktemp("run")
    recipe = write_recipe(tmp / "tiny.yaml")
    flags = ["--max_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2", "--eval_on_start", "true"]
    flags += ["--push_to_hub", "--hub_model_id", "org/ko-radiology-tiny"]
    hub_calls = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("huggingface_hub.HfApi.create_repo", lambda self, repo_id, **kw: hub_calls.update(repo=repo_id))
        patch.setattr("huggingface_hub.HfApi.upload_folder", lambda self, **kw: hub_calls.update(upload=kw))
        trainer = train(recipe, gold_hub_folder, tmp / "out", *flags)
    return trainer, tmp / "out", hub_calls


def test_cli_flag_overrides_recipe(trained):
    trainer, _, _ = trained
    assert trainer.args.max_steps == 2  # the recipe says 5
    assert trainer.args.learning_rate == TINY_RECIPE["learning_rate"]  # from the recipe
    assert trainer.state.global_step == 2


def test_loss_logged_and_validation_loss_before_and_after(trained):
    trainer, _, _ = trained
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    eval_steps = [entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry]
    assert losses and all(torch.isfinite(torch.tensor(losses)))
    assert eval_steps == [0, 2]


def test_lora_weights_change_and_base_weights_do_not(trained, tiny_model_dir):
    trainer, _, _ = trained
    base = load_file(tiny_model_dir / "model.safetensors")
    lora_b = {name: p for name, p in trainer.model.named_parameters() if "lora_B" in name}
    assert lora_b and all(p.abs().sum() > 0 for p in lora_b.values())  # PEFT initializes lora_B to zero
    for name, param in trainer.model.get_base_model().named_parameters():
        if "lora_" not in name:
            assert not param.requires_grad
            assert torch.equal(param.detach(), base[name.replace(".base_layer", "")]), name


def test_labels_keep_only_the_answer(gold_hub_folder, tokenizer):
    row = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"][0]
    example = tokenize_example(row, tokenizer)
    input_ids, labels = torch.tensor(example["input_ids"]), torch.tensor(example["labels"])
    prompt = tokenizer.apply_chat_template(
        build_messages(row["report_ko"], row["instruction"]),
        add_generation_prompt=True,
        tokenize=True,
        return_dict=True,
    )["input_ids"]
    assert (labels[: len(prompt)] == -100).all()
    assert torch.equal(labels[len(prompt) :], input_ids[len(prompt) :])
    answer = tokenizer.encode(row["answer"] + "<end_of_turn>\n", add_special_tokens=False)
    assert labels[len(prompt) :].tolist() == answer


def test_loss_is_taken_on_answer_positions_only(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    input_ids = torch.randint(10, 1000, (2, 12))
    labels = torch.full_like(input_ids, -100)
    labels[0, 8:] = input_ids[0, 8:]
    labels[1, 5:9] = input_ids[1, 5:9]
    loss, outputs, _ = answer_only_loss(model, {"input_ids": input_ids, "labels": labels})
    assert outputs.logits.shape[1] == 7  # positions 4..10: 4..7 predict row 1's labels, 7..10 row 0's
    assert torch.allclose(loss, model(input_ids=input_ids, labels=labels).loss, atol=1e-5)


def test_overlong_examples_dropped_or_truncated_with_count(gold_hub_folder, tokenizer, capsys):
    split = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"].select(range(20))
    max_length = sorted(len(tokenize_example(row, tokenizer)["input_ids"]) for row in split)[10]
    dropped = prepare_qa_split(split, tokenizer, max_length, "drop", "train")
    assert all(len(ids) <= max_length for ids in dropped["input_ids"]) and 0 < len(dropped) < 20
    assert f"dropped {20 - len(dropped)} of 20" in capsys.readouterr().out
    truncated = prepare_qa_split(split, tokenizer, max_length, "truncate", "train")
    assert all(len(ids) <= max_length for ids in truncated["input_ids"]) and len(truncated) >= len(dropped)
    assert "truncated" in capsys.readouterr().out


def test_saved_adapter_loads_and_generates(trained):
    _, output_dir, _ = trained
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "chat_template.jinja"} <= {
        path.name for path in output_dir.iterdir()
    }
    card = (output_dir / "README.md").read_text()
    assert "Not a medical device" in card and "Validation loss, untuned base" in card and "| n/a |" not in card
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "peft" and "datasets" not in metadata  # trained on a local folder
    model = AutoPeftModelForCausalLM.from_pretrained(output_dir)
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    inputs = tokenizer.apply_chat_template(
        build_messages("폐는 깨끗함.", "폐렴 소견이 있나요?"),
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 5


def test_merged_export_matches_base_plus_adapter(trained, tmp_path):
    _, output_dir, _ = trained
    merged_dir = merge_adapter(output_dir, tmp_path / "merged", dtype="float32")
    peft_model = AutoPeftModelForCausalLM.from_pretrained(output_dir, dtype=torch.float32)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    input_ids = torch.randint(10, 1000, (1, 16))
    with torch.no_grad():
        expected, actual = peft_model(input_ids).logits, merged(input_ids).logits
    assert torch.allclose(expected, actual, atol=1e-4)
    assert AutoTokenizer.from_pretrained(merged_dir).chat_template


def test_resumes_from_last_checkpoint(trained, gold_hub_folder, tmp_path, capsys):
    _, output_dir, _ = trained
    recipe = write_recipe(tmp_path / "tiny.yaml")
    trainer = train(recipe, gold_hub_folder, output_dir, "--max_steps", "3")
    assert "Resuming from" in capsys.readouterr().out
    assert trainer.state.global_step == 3


def test_qlora_trains_in_4bit(gold_hub_folder, tmp_path):
    recipe = write_recipe(tmp_path / "qlora.yaml", load_in_4bit=True, bnb_4bit_quant_type="nf4", max_steps=1)
    trainer = train(recipe, gold_hub_folder, tmp_path / "out")
    assert trainer.model.get_base_model().is_loaded_in_4bit
    assert any("loss" in entry for entry in trainer.state.log_history)
    assert json.loads((tmp_path / "out" / "adapter_config.json").read_text())["r"] == TINY_RECIPE["lora_r"]


def test_push_to_hub_uploads_adapter_and_card(trained):
    _, output_dir, hub_calls = trained
    assert hub_calls["repo"] == "org/ko-radiology-tiny"
    assert hub_calls["upload"]["folder_path"] == str(output_dir)
    assert {"adapter_model.safetensors", "README.md"} <= set(hub_calls["upload"]["allow_patterns"])


def write_split(folder: Path, rows: dict[str, list], splits=("train", "validation")) -> Path:
    (folder / "qa").mkdir(parents=True)
    for split in splits:
        datasets.Dataset.from_dict(rows).to_parquet(folder / "qa" / f"{split}-00000-of-00001.parquet")
    blocks = "".join(f"  - split: {split}\n    path: qa/{split}-*.parquet\n" for split in splits)
    (folder / "README.md").write_text(f"---\nconfigs:\n- config_name: qa\n  data_files:\n{blocks}---\n")
    return folder


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"report_ko": ["폐는 깨끗함."], "question": ["질문"]}, r"has no column\(s\) instruction, answer"),
        ({"report_ko": [], "instruction": [], "answer": []}, "is empty"),
    ],
)
def test_bad_dataset_is_refused(tmp_path, monkeypatch, rows, message):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")  # same file names, new contents
    folder = write_split(tmp_path / "data", rows)
    recipe = write_recipe(tmp_path / "tiny.yaml")
    with pytest.raises(ValueError, match=message):
        train(recipe, folder, tmp_path / "out")


def test_unknown_recipe_key_is_refused(tmp_path, gold_hub_folder):
    recipe = write_recipe(tmp_path / "tiny.yaml", lora_rank=8)
    with pytest.raises(ValueError, match="lora_rank.*fix its spelling"):
        train(recipe, gold_hub_folder, tmp_path / "out")


def test_missing_base_model_is_refused(tmp_path, gold_hub_folder):
    recipe = write_recipe(tmp_path / "tiny.yaml", model_name_or_path=str(tmp_path / "no-such-model"))
    with pytest.raises(FileNotFoundError, match="does not exist. Pass --model_name_or_path"):
        train(recipe, gold_hub_folder, tmp_path / "out")


def test_base_model_without_chat_template_is_refused(tmp_path, gold_hub_folder, tiny_model_dir):
    model_dir = tmp_path / "no-template"
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    tokenizer.chat_template = None
    tokenizer.save_pretrained(model_dir)
    (model_dir / "chat_template.jinja").unlink(missing_ok=True)
    for name in ("config.json", "model.safetensors"):
        (model_dir / name).symlink_to(tiny_model_dir / name)
    recipe = write_recipe(tmp_path / "tiny.yaml", model_name_or_path=str(model_dir))
    with pytest.raises(ValueError, match="has no chat template.*--chat_template_path"):
        train(recipe, gold_hub_folder, tmp_path / "out")
