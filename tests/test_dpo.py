"""Preference pairs from the train split and the DPO stage after SFT, on the tiny random Gemma."""

import json
import re
from collections import Counter

import pytest
import torch
import trl.trainer.utils
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM
from trl import DPOConfig, ModelConfig, TrlParser

from ko_radiology.answer_kinds import declines, yes_no_word
from ko_radiology.dataset_folders import load_qa_splits
from ko_radiology.embedded_models import EMBEDDED_HUB_IDS, prepare_tiny_model
from training.dpo import PreferenceScriptArguments
from training.dpo import cli as dpo
from training.preference_pairs import DEFECTS, preference_pairs, swap_sides
from training.sft import main as sft
from training.sft import parse_args

TINY_HUB_ID = "org/tiny-gemma3"


@pytest.fixture(scope="module")
def train_rows(gold_hub_folder):
    return load_qa_splits(str(gold_hub_folder), "qa", ["train"])["train"]


def test_each_pair_is_the_gold_answer_against_one_defect(train_rows):
    pairs = preference_pairs(train_rows, ["질문 답변"])
    assert set(pairs["defect"]) == set(DEFECTS)
    train_answers = set(train_rows["answer"])
    for pair in pairs:
        chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
        assert chosen != rejected
        if pair["defect"] == "negation_flipped":
            assert {yes_no_word(chosen), yes_no_word(rejected)} == {"네", "아니요"}
            assert chosen.split(", ", 1)[1] == rejected.split(", ", 1)[1]
        elif pair["defect"] == "wrong_laterality":
            assert len(chosen) == len(rejected) and swap_sides(rejected) == chosen
        elif pair["defect"] == "finding_invented":
            assert rejected.startswith(chosen + " ")
        elif pair["defect"] == "answered_unanswerable":
            assert declines(chosen) and yes_no_word(rejected) in {"네", "아니요"} and not declines(rejected)
        else:
            assert not declines(chosen) and declines(rejected) and rejected in train_answers
        assert chosen in train_answers, "pairs come from the train split's gold answers only"


def test_pairs_push_as_much_against_declining_as_for_it_and_start_as_often_with_either_word(train_rows):
    pairs = preference_pairs(train_rows, ["질문 답변"])
    defects = Counter(pairs["defect"])
    assert defects["declined_answerable"] == defects["answered_unanswerable"] > 0
    rejected_words = Counter(yes_no_word(rejected[0]["content"]) for rejected in pairs["rejected"])
    assert abs(rejected_words["네"] - rejected_words["아니요"]) <= 0.1 * (
        rejected_words["네"] + rejected_words["아니요"]
    )


def test_sides_swap_in_terms_and_words_and_nothing_else():
    assert swap_sides("좌하엽 무기폐와 우측 흉막삼출, 왼쪽 쇄골") == "우하엽 무기폐와 좌측 흉막삼출, 오른쪽 쇄골"
    assert swap_sides("양측 폐는 깨끗합니다.") is None


@pytest.fixture(scope="module")
def sft_adapter(tmp_path_factory, gold_hub_folder):
    prepare_tiny_model()
    out = tmp_path_factory.mktemp("sft") / "adapter"
    args = ["--model_name_or_path", "embedded:tiny", "--dtype", "float32", "--use_peft", "--lora_r", "8"]
    args += ["--dataset_name", str(gold_hub_folder), "--output_dir", str(out), "--max_steps", "1", "--use_cpu"]
    args += ["--eval_strategy", "no", "--save_strategy", "no", "--report_to", "none", "--max_length", "384"]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(EMBEDDED_HUB_IDS, "embedded:tiny", TINY_HUB_ID)
        sft(*parse_args(args))
    return out


def run_dpo(sft_adapter, gold_hub_folder, out, *flags):
    args = ["--sft_adapter", str(sft_adapter), "--dataset_name", str(gold_hub_folder), "--output_dir", str(out)]
    args += ["--max_steps", "2", "--per_device_train_batch_size", "2", "--learning_rate", "1e-2", "--use_cpu"]
    args += ["--dtype", "float32", "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none", *flags]
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(EMBEDDED_HUB_IDS, "embedded:tiny", TINY_HUB_ID)
        return dpo(args)


def test_dpo_moves_the_sft_adapter_keeps_its_token_rows_and_adds_to_its_card(sft_adapter, gold_hub_folder, tmp_path):
    assert run_dpo(sft_adapter, gold_hub_folder, tmp_path / "dpo") == 0
    before, after = (
        load_file(sft_adapter / "adapter_model.safetensors"),
        load_file(tmp_path / "dpo" / "adapter_model.safetensors"),
    )
    assert before.keys() == after.keys()
    lora = [name for name in before if "lora_" in name]
    assert any(not torch.equal(before[name], after[name]) for name in lora), "DPO changed no LoRA weight"
    rows = [name for name in before if "trainable_tokens" in name]  # none where the base knows its template tokens
    assert all(torch.equal(before[name], after[name]) for name in rows), "the template tokens' rows moved"
    config = json.loads((tmp_path / "dpo" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == TINY_HUB_ID
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(EMBEDDED_HUB_IDS, "embedded:tiny", TINY_HUB_ID)
        base = AutoModelForCausalLM.from_pretrained(prepare_tiny_model())
        PeftModel.from_pretrained(base, tmp_path / "dpo")
    card = (tmp_path / "dpo" / "README.md").read_text()
    assert re.search(r"preference optimisation: DPO \(sigmoid\) with TRL .* 2 steps over 4 of \d+ pairs", card, re.S)
    assert "\n- dpo\n" in card.split("---")[1]
    assert "negation_flipped" in card and "answered_unanswerable" in card


def test_scoring_answer_positions_only_gives_the_same_loss(sft_adapter, gold_hub_folder, tmp_path, monkeypatch):
    """The one private name relied on (`training.dpo.score_answer_positions_only`) is there, and scoring only the
    answer positions changes the speed, not the loss."""
    assert callable(trl.trainer.utils._use_triton)
    losses = {}
    for compact in (True, False):
        if not compact:
            monkeypatch.setattr("training.dpo.score_answer_positions_only", lambda: None)
            monkeypatch.setattr(trl.trainer.utils, "_use_triton", lambda device: device.type == "cuda")
        out = tmp_path / str(compact)
        assert run_dpo(sft_adapter, gold_hub_folder, out, "--max_steps", "1") == 0
        losses[compact] = json.loads((out / "model_card.json").read_text())["preference"]["train_loss"]
    assert losses[True] == pytest.approx(losses[False], abs=1e-3)


def test_a_folder_that_is_no_adapter_is_one_line(tmp_path, capsys):
    assert (
        dpo(["--sft_adapter", str(tmp_path), "--dataset_name", str(tmp_path), "--output_dir", str(tmp_path / "o")])
        == 2
    )
    assert "is no adapter folder" in capsys.readouterr().err


def test_the_shipped_dpo_recipe_parses(sft_adapter, gold_hub_folder):
    parser = TrlParser((PreferenceScriptArguments, DPOConfig, ModelConfig))
    recipe = ["--config", "training/recipes/gemma3-270m-cpu-dpo.yaml", "--sft_adapter", str(sft_adapter)]
    script_args, training_args, _ = parser.parse_args_and_config([*recipe, "--dataset_name", str(gold_hub_folder)])
    assert script_args.pair_tasks == ["질문 답변"] and training_args.beta == 0.1
    assert training_args.save_strategy == "no", "YAML reads a bare no as False"
