"""Training on the tiny random Gemma: the loss, the labels, the CLI, QLoRA, saving, resuming and the merged export."""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml
from huggingface_hub.utils import filter_repo_objects
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer

from eval.check import loops
from eval.check import main as check
from eval.compare import read_questions
from ko_radiology.answer_kinds import QUESTION_TYPES
from ko_radiology.dataset_folders import load_qa_splits
from ko_radiology.embedded_models import EMBEDDED_HUB_IDS, prepare_tiny_model
from ko_radiology.generation import load_for_generation, stop_token_ids, to_answer
from ko_radiology.prompts import TASK_TYPES, build_messages
from training.data import (
    group_by_report,
    prepare_qa_split,
    tokenize_conversation,
    tokenize_example,
)
from training.export import merge_adapter
from training.sft import HUB_FILES, cli, main, parse_args
from training.trainer import answer_only_loss, answer_starts, earlier_answer_tokens, repeat_unlikelihood

TINY_HUB_ID = "org/tiny-gemma3"
"""Stands in for `google/gemma-3-270m`: the Hub id the tiny model's adapters name as their base in these tests."""

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
    """Two steps from a YAML recipe whose max_steps (5) a flag overrides, with the validation loss before and after
    and the repeat unlikelihood in the loss, pushed to a Hub whose upload calls are recorded instead of sent."""
    tmp = tmp_path_factory.mktemp("run")
    recipe = write_recipe(tmp / "tiny.yaml")
    flags = ["--max_steps", "2", "--eval_strategy", "steps", "--eval_steps", "2", "--eval_on_start", "true"]
    flags += ["--push_to_hub", "--hub_model_id", "org/ko-radiology-tiny", "--unlikelihood_weight", "1.0"]
    hub_calls = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(EMBEDDED_HUB_IDS, "embedded:tiny", TINY_HUB_ID)
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


def test_token_metrics_are_logged_without_trls_private_bookkeeping(trained):
    """Token accuracy and tokens seen are logged as `SFTTrainer` logs them, through the public `log` hook: TRL's
    private counters stay as TRL left them."""
    trainer, _, _ = trained
    train_logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    tokens = [entry["num_tokens"] for entry in train_logs]
    assert all(0 <= entry["mean_token_accuracy"] <= 1 for entry in train_logs)
    assert 0 < tokens[0] < tokens[1] <= 2 * TINY_RECIPE["max_length"]  # one packed row of at most max_length a step
    eval_logs = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert [entry["eval_num_tokens"] for entry in eval_logs] == [0, tokens[1]]  # before training, after step 2
    assert all(0 <= entry["eval_mean_token_accuracy"] <= 1 for entry in eval_logs)
    assert vars(trainer).get("_total_train_tokens", 0) == 0 and not any(vars(trainer).get("_metrics", {}).values())


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


def test_two_folders_of_the_same_name_load_their_own_rows(gold_hub_folder, tmp_path):
    """`datasets` caches a local folder by its name: a second export called `ko-cxr-qa` (fewer rows here) must not be
    read as the first one, by training (`load_qa_splits`) or by eval (`read_questions`)."""
    full, cut = tmp_path / "full" / gold_hub_folder.name, tmp_path / "cut" / gold_hub_folder.name
    shutil.copytree(gold_hub_folder, full)
    shutil.copytree(gold_hub_folder, cut)
    (train_file,) = (cut / "qa").glob("train-*.parquet")
    pq.write_table(pq.read_table(train_file).slice(0, 5), train_file)
    rows = {folder: load_qa_splits(str(folder), "qa", ["train"])["train"].num_rows for folder in (full, cut, full)}
    assert rows[cut] == 5 < rows[full]
    assert len(read_questions(str(cut), "train")) == 5
    table = pq.read_table(train_file)  # re-exported in place with a column more, as a newer builder writes it
    pq.write_table(table.append_column("new_column", pa.array(["x"] * table.num_rows)), train_file)
    assert "new_column" in load_qa_splits(str(cut), "qa", ["train"])["train"].column_names


def test_conversation_per_report_labels_every_answer_and_reads_the_report_once(gold_hub_folder, tokenizer):
    split = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"]
    grouped = prepare_qa_split(split, tokenizer, None, "drop", "train", conversations=True)
    single = prepare_qa_split(split, tokenizer, None, "drop", "train")
    reports = len(set(split["report_ko"]))
    assert len(grouped) == reports < len(single)
    supervised = [sum(label != -100 for label in labels) for labels in grouped["labels"]]
    assert sum(supervised) == sum(sum(label != -100 for label in labels) for labels in single["labels"])
    assert sum(map(len, grouped["input_ids"])) < 0.5 * sum(map(len, single["input_ids"]))

    report = split[0]["report_ko"]
    turns = [(row["instruction"], row["answer"]) for row in split if row["report_ko"] == report][:3]
    tokens = tokenize_conversation(report, turns, tokenizer)
    learned = tokenizer.decode(
        [token for token, label in zip(tokens["input_ids"], tokens["labels"], strict=True) if label != -100]
    )
    for question, answer in turns:
        assert answer.strip() in learned and question.strip() not in learned
    assert learned.count("<end_of_turn>") == 3 and tokenizer.decode(tokens["input_ids"]).count(report.strip()) == 1


def test_conversation_turns_are_shuffled_per_report_so_every_task_is_sometimes_the_first_question(gold_hub_folder):
    split = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"]
    task_of = dict(zip(split["instruction"], split["task"], strict=True))
    in_order, shuffled = group_by_report(split), group_by_report(split, seed=42)
    assert shuffled == group_by_report(split, seed=42)
    assert [report for report, _ in shuffled] == [report for report, _ in in_order]
    assert all(sorted(a) == sorted(b) for (_, a), (_, b) in zip(in_order, shuffled, strict=True))
    assert {task_of[turns[0][0]] for _, turns in in_order} == {"질문 답변"}  # the dataset lists questions first
    assert {task_of[turns[0][0]] for _, turns in shuffled} == set(split["task"])


def test_conversations_longer_than_max_length_are_split_by_turns(gold_hub_folder, tokenizer):
    split = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"]
    grouped = prepare_qa_split(split, tokenizer, None, "drop", "train", conversations=True)
    max_length = sorted(map(len, grouped["input_ids"]))[len(grouped) // 2]
    fitted = prepare_qa_split(split, tokenizer, max_length, "drop", "train", conversations=True)
    assert len(fitted) > len(grouped) and all(len(ids) <= max_length for ids in fitted["input_ids"])


def test_loss_is_taken_on_answer_positions_only(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    input_ids = torch.randint(10, 1000, (2, 12))
    labels = torch.full_like(input_ids, -100)
    labels[0, 8:] = input_ids[0, 8:]
    labels[1, 5:9] = input_ids[1, 5:9]
    loss, outputs, _ = answer_only_loss(model, {"input_ids": input_ids, "labels": labels})
    assert outputs.logits.shape[1] == 7  # positions 4..10: 4..7 predict row 1's labels, 7..10 row 0's
    assert torch.allclose(loss, model(input_ids=input_ids, labels=labels).loss, atol=1e-5)


def test_unlikelihood_candidates_are_earlier_distinct_tokens_of_the_same_answer():
    # Two answers (positions 3-6 and 10-11) and a position kept for another row of the batch (8, label -100 here)
    positions = torch.tensor([3, 4, 5, 6, 8, 10, 11])
    targets = torch.tensor([7, 8, 7, 9, -100, 8, 5])
    candidates = {(i, j) for i, j in earlier_answer_tokens(targets, positions).nonzero().tolist()}
    # 7 at index 2 is its own label; at index 3 the second 7 is not counted again; answer 2 starts afresh
    assert candidates == {(1, 0), (2, 1), (3, 0), (3, 1), (6, 5)}


def test_unlikelihood_is_minus_log_one_minus_p_of_each_candidate(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    input_ids = torch.tensor([[2, 50, 60, 70, 60, 80, 90]])
    labels = torch.full_like(input_ids, -100)
    labels[0, 2:] = input_ids[0, 2:]  # the answer 60 70 60 80 90
    plain, outputs, _ = answer_only_loss(model, {"input_ids": input_ids, "labels": labels})
    weighted, _, _ = answer_only_loss(model, {"input_ids": input_ids, "labels": labels}, unlikelihood_weight=0.5)
    probs = outputs.logits[0].float().softmax(dim=-1)  # rows predict 60 70 60 80 90: each earlier other token
    candidates = [(1, 60), (2, 70), (3, 60), (3, 70), (4, 60), (4, 70), (4, 80)]
    expected = -sum(torch.log1p(-probs[i, token]) for i, token in candidates)
    assert weighted.item() == pytest.approx(plain.item() + 0.5 * expected.item() / 5, rel=1e-4)
    logprobs, keep = outputs.logits.float().log_softmax(dim=-1), torch.arange(1, 6)
    assert repeat_unlikelihood(logprobs, labels[:, 1:][:, keep], keep).item() == pytest.approx(expected.item(), 1e-4)


def test_answer_start_weight_counts_each_answers_first_token_that_many_times(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    input_ids = torch.tensor([[2, 50, 60, 70, 80, 51, 90, 91]])
    labels = torch.full_like(input_ids, -100)
    labels[0, [2, 3, 4]] = input_ids[0, [2, 3, 4]]  # two answers: 60 70 80, and 90 91 after an unlabelled 51
    labels[0, [6, 7]] = input_ids[0, [6, 7]]
    plain, outputs, _ = answer_only_loss(model, {"input_ids": input_ids, "labels": labels})
    weighted, _, _ = answer_only_loss(model, {"input_ids": input_ids, "labels": labels}, answer_start_weight=4.0)
    logprobs = outputs.logits[0].float().log_softmax(dim=-1)  # kept positions 1, 2, 3, 5, 6
    starts = -(logprobs[0, 60] + logprobs[3, 90])  # the first tokens of the two answers
    assert answer_starts(labels[0, 1:][[1, 2, 3, 5, 6]], torch.tensor([1, 2, 3, 5, 6])).tolist() == [
        True,
        False,
        False,
        True,
        False,
    ]
    assert weighted.item() == pytest.approx(plain.item() + 3.0 * starts.item() / 5, rel=1e-4)


def test_overlong_examples_dropped_or_truncated_with_count(gold_hub_folder, tokenizer, capsys):
    split = load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"].select(range(20))
    max_length = sorted(len(tokenize_example(row, tokenizer)["input_ids"]) for row in split)[10]
    dropped = prepare_qa_split(split, tokenizer, max_length, "drop", "train")
    assert all(len(ids) <= max_length for ids in dropped["input_ids"]) and 0 < len(dropped) < 20
    assert f"dropped {20 - len(dropped)} of 20" in capsys.readouterr().out
    truncated = prepare_qa_split(split, tokenizer, max_length, "truncate", "train")
    assert all(len(ids) <= max_length for ids in truncated["input_ids"]) and len(truncated) >= len(dropped)
    assert "truncated" in capsys.readouterr().out


def test_saved_adapter_loads_and_generates(trained, tiny_model_dir, monkeypatch):
    _, output_dir, _ = trained
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "chat_template.jinja"} <= {
        path.name for path in output_dir.iterdir()
    }
    card = (output_dir / "README.md").read_text()
    assert "Not a medical device" in card and "Validation loss, untuned base" in card and "| n/a |" not in card
    assert "trained with Ko-Radiology-GPT's `training/sft.py` on the synthetic sample" in card
    assert "machine-translated" not in card and "eval.check" in card  # quality not measured yet: says how
    assert "plus 1.0 x\n  token-level unlikelihood" in card and "with the unlikelihood term" in card
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "peft" and "datasets" not in metadata  # trained on a local folder
    assert metadata["base_model"] == TINY_HUB_ID and metadata["base_model_relation"] == "adapter"
    # The adapter names its base by Hub id, never by a path here; loading maps that id back to the prepared copy
    assert json.loads((output_dir / "adapter_config.json").read_text())["base_model_name_or_path"] == TINY_HUB_ID
    monkeypatch.setitem(EMBEDDED_HUB_IDS, "embedded:tiny", TINY_HUB_ID)
    model, tokenizer = load_for_generation(output_dir)
    inputs = tokenizer.apply_chat_template(
        build_messages("폐는 깨끗함.", "폐렴 소견이 있나요?"),
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**inputs, max_new_tokens=5, min_new_tokens=5, do_sample=False)
    assert output.shape[1] == inputs["input_ids"].shape[1] + 5


def test_merged_export_matches_base_plus_adapter(trained, tmp_path, tiny_model_dir, monkeypatch):
    _, output_dir, _ = trained
    monkeypatch.setitem(EMBEDDED_HUB_IDS, "embedded:tiny", TINY_HUB_ID)
    merged_dir = merge_adapter(output_dir, tmp_path / "merged", dtype="float32")
    # What a user with only transformers + peft does, given the base explicitly (the Hub id is offline here)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = PeftModel.from_pretrained(base, output_dir)
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    input_ids = torch.randint(10, 1000, (1, 16))
    with torch.no_grad():
        expected, actual = peft_model(input_ids).logits, merged(input_ids).logits
    assert torch.allclose(expected, actual, atol=1e-4)
    assert AutoTokenizer.from_pretrained(merged_dir).chat_template
    card = (merged_dir / "README.md").read_text()
    metadata = yaml.safe_load(card.split("---")[1])
    assert metadata["library_name"] == "transformers" and metadata["base_model_relation"] == "merge"
    assert f'AutoModelForCausalLM.from_pretrained("{merged_dir}")' in card and "peft" not in card.split("```")[1]


def test_export_of_a_bad_path_is_one_line(tmp_path, capsys):
    from training.export import main as export

    assert export([str(tmp_path / "no-adapter"), "--out", str(tmp_path / "merged")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has no adapter_config.json" in err and not (tmp_path / "merged").exists()


def test_export_never_replaces_a_folder_that_is_not_a_model(trained, tmp_path, capsys):
    from training.export import main as export

    _, output_dir, _ = trained
    users_folder = tmp_path / "home"
    users_folder.mkdir()
    (users_folder / "thesis.tex").write_text("years of work")
    assert export([str(output_dir), "--out", str(users_folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a model folder" in err
    assert (users_folder / "thesis.tex").read_text() == "years of work"


def test_quality_check_writes_its_numbers_and_the_card_shows_them(trained, gold_hub_folder, monkeypatch, capsys):
    _, output_dir, _ = trained
    monkeypatch.setitem(EMBEDDED_HUB_IDS, "embedded:tiny", TINY_HUB_ID)
    args = [str(output_dir), "--split", "test", "--dataset", str(gold_hub_folder), "--limit", "4"]
    args += ["--max-new-tokens", "6", "--batch-size", "3", "--backend", "transformers"]  # the same where llama.cpp is
    assert check(args) == 0
    printed = capsys.readouterr().out
    quality = json.loads((output_dir / "quality.json").read_text())
    assert quality["examples"] == 4 and quality["split"] == "test" and quality["max_new_tokens"] == 6
    assert quality["dataset"] == "the synthetic sample"  # named as the card names it, not by a path on this machine
    assert f"Stop rate: {quality['stop_rate']:.0%}" in printed and "chrf_pp:" in printed and "95% CI" in printed
    low, high = quality["rouge_l_chars_difference_ci95"]
    assert low <= quality["rouge_l_chars_difference"] <= high
    answers = [json.loads(line) for line in (output_dir / "quality_answers.jsonl").read_text().splitlines()]
    assert len(answers) == 4 and all(a["question_type"] in QUESTION_TYPES and a["task"] in TASK_TYPES for a in answers)
    assert set(quality["targets"]) >= {"yes_no_accuracy", "unanswerable_declined", "answerable_declined"}
    assert "yes_no_accuracy, yes/no questions answered with the gold's 네/아니요: " in printed
    card = (output_dir / "README.md").read_text()
    assert "Answers that end by themselves" in card and "| chrF++ vs gold |" in card
    assert "| False refusals: answerable questions declined (" in card
    assert f"generated by transformers in {quality['generation']['dtype']}" in card
    assert check(args) == 0  # greedy answers are a function of the model files and the questions: cached
    assert capsys.readouterr().out.count("All 4 answers of") == 2


@pytest.mark.parametrize(
    ("quality_file", "shown", "absent"),
    [
        ("tests/fixtures/quality-before-issue-19.json", "| chrF++ vs gold | 0.296 | 0.127 |", "Yes/no questions"),
        ("docs/results/quality.json", "(73) | 68% (57–78%) | 0% (0–5%) | | >= 0.85: **not met** |", "not measured"),
        ("tests/fixtures/quality.json", "(9) | 44% (19–73%) | 11% (2–43%) | | >= 0.85: **not met** |", "not measured"),
    ],
)
def test_the_card_shows_a_quality_file_of_any_age(trained, tmp_path, quality_file, shown, absent):
    from training.model_card import render_saved_card

    _, output_dir, _ = trained
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(output_dir / "model_card.json", folder)
    shutil.copy(Path(__file__).parents[1] / quality_file, folder / "quality.json")
    card = render_saved_card(folder, merged=False).read_text()
    assert shown in card and absent not in card


def test_card_command_renders_a_folder_with_saved_values_and_says_why_not_otherwise(trained, tmp_path, capsys):
    from training.__main__ import main as training

    _, output_dir, _ = trained
    (output_dir / "README.md").unlink()
    assert (
        training(["card", str(output_dir)]) == 0 and "Not a medical device" in (output_dir / "README.md").read_text()
    )
    assert training(["card", str(tmp_path)]) == 0
    assert (
        capsys.readouterr().out == f"{tmp_path} has no model_card.json (training.sft writes it): no card to render.\n"
    )
    assert not (tmp_path / "README.md").exists()
    assert training(["card", str(tmp_path / "missing")]) == 2
    assert (
        capsys.readouterr().err
        == f"error: {tmp_path / 'missing'} is not a folder. Pass the output_dir of training.sft or training.export.\n"
    )


def test_answer_is_cut_at_the_first_stop_token(tokenizer, tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    stops = stop_token_ids(model, tokenizer)
    assert tokenizer.convert_tokens_to_ids("<end_of_turn>") in stops and tokenizer.eos_token_id in stops
    ids = tokenizer.encode("폐는 깨끗합니다.", add_special_tokens=False)
    stopped = to_answer([*ids, stops[-1], tokenizer.pad_token_id], stops, tokenizer)
    assert stopped.text == "폐는 깨끗합니다." and stopped.stopped and stopped.num_tokens == len(ids)
    assert stopped.stop_token == tokenizer.convert_ids_to_tokens(stops[-1])
    assert not to_answer(ids, stops, tokenizer).stopped


def test_loop_is_a_word_4gram_three_times():
    assert loops("폐는 깨끗합니다 그리고 심장은 " * 3)
    assert not loops("폐는 깨끗합니다 그리고 심장은 " * 2)


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
    # Which files of the real output folder the upload selects (the same filter upload_folder applies)
    files = [str(path.relative_to(output_dir)) for path in output_dir.rglob("*") if path.is_file()]
    assert any(name.startswith("checkpoint-") for name in files)  # the run saved checkpoints ...
    selected = set(filter_repo_objects(files, allow_patterns=hub_calls["upload"]["allow_patterns"]))
    assert not any(name.startswith("checkpoint-") for name in selected)  # ... that are never uploaded
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer.json"} <= selected
    assert hub_calls["upload"]["allow_patterns"] == list(HUB_FILES)


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


def test_unknown_recipe_key_is_refused(tmp_path, gold_hub_folder, capsys):
    recipe = write_recipe(tmp_path / "tiny.yaml", lora_rank=8)
    assert cli(["--config", str(recipe), "--dataset_name", str(gold_hub_folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "'lora_rank' (did you mean local_rank or lora_r?)" in err
    assert "fix its spelling" in err
    assert "fail_with_unknown_args" not in err


def test_missing_recipe_is_one_line(tmp_path, capsys):
    assert cli(["--config", str(tmp_path / "gemma.yml")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist. Pick one of training/recipes/*.yaml" in err


def test_full_fine_tuning_is_refused_before_training(tmp_path, gold_hub_folder, capsys):
    """Without the refusal, `--use_peft false` trained for minutes and then failed writing the adapter's card."""
    args = ["--config", str(write_recipe(tmp_path / "tiny.yaml")), "--dataset_name", str(gold_hub_folder)]
    assert cli([*args, "--output_dir", str(tmp_path / "out"), "--use_peft", "false"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "use_peft is false" in err and "set use_peft: true" in err
    assert not (tmp_path / "out").exists()


def test_negative_unlikelihood_weight_is_one_line(tmp_path, gold_hub_folder, capsys):
    args = ["--config", str(write_recipe(tmp_path / "tiny.yaml")), "--dataset_name", str(gold_hub_folder)]
    assert cli([*args, "--unlikelihood_weight", "-1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unlikelihood_weight must be 0 or more" in err


def test_mistyped_local_dataset_fails_at_once(tmp_path, gold_hub_folder, capsys, monkeypatch):
    """`out/hbu` for `out/hub`: a Hub id in form, but `out/` exists here, so it is a typo, not a Hub dataset."""
    monkeypatch.chdir(gold_hub_folder.parent)
    recipe = write_recipe(tmp_path / "tiny.yaml")
    typo = f"{gold_hub_folder.name}/hbu"
    started = time.monotonic()
    assert cli(["--config", str(recipe), "--dataset_name", typo, "--output_dir", str(tmp_path / "out")]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"dataset_name {typo} looks like a local folder but does not exist" in err


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


def test_accelerate_launch_trains_on_two_cpu_processes(gold_hub_folder, tmp_path):
    """The multi-process path the GPU recipes use, run as gloo DDP on two CPU processes (2 steps)."""
    recipe = write_recipe(tmp_path / "tiny.yaml", max_steps=2, save_strategy="no")
    accelerate = Path(sys.executable).parent / "accelerate"
    # `--cpu` alone runs one process (accelerate's simple launcher); `--multi_gpu` without GPUs is torchrun + gloo
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    command += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "training.sft", "--config", str(recipe)]
    command += ["--dataset_name", str(gold_hub_folder), "--output_dir", str(tmp_path / "out")]
    command += ["--gradient_accumulation_steps", "2", "--log_level", "info"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    root = Path(__file__).parent.parent
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, cwd=root)
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    # per-device batch 1 x accumulation 2 x 2 processes, as the run prints it and as the Trainer logs it
    assert "Effective batch: 1 per device x 2 accumulation x 2 processes = 4" in output, output[-3000:]
    logged = re.search(r"Total train batch size \(w\. parallel, distributed & accumulation\) = (\d+)", output)
    assert logged and logged.group(1) == "4", output[-3000:]
    assert (tmp_path / "out" / "adapter_model.safetensors").is_file()
