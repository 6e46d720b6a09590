"""`make gpu-check GPU_CHECK_FLAGS=--cpu-dry-run`: the GPU check's commands run on CPU, so they cannot rot between GPU
loans. The dry run (about 2 minutes on 2 cores) runs once, as the command `make` prints for it."""

import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from ko_radiology.embedded_models import model_path
from training.gpu_check import DDP_CONFIG, DRY_RUN_FLAGS, RECIPE, SHAPES

ROOT = Path(__file__).parent.parent
STEPS = ["sample", "sample export", "model", "sft", "export", "check", "sft ddp"]


def make_command(target: str, out: Path, flags: str) -> list[str]:
    """The command `make TARGET` runs, as `make -n` prints it (without running `make setup` here)."""
    venv = Path(sys.executable).parent.parent
    printed = subprocess.run(
        ["make", "-n", target, f"VENV={venv}", f"OUT={out}", f"GPU_CHECK_FLAGS={flags}"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.splitlines()
    return shlex.split(next(line for line in printed if "-m training.gpu_check" in line))


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    command = make_command("gpu-check", out, "--cpu-dry-run")
    assert command[1:] == ["-m", "training.gpu_check", "--out", f"{out}/gpu-check", "--cpu-dry-run"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    summary_path = out / "gpu-check" / "cpu-dry-run" / "summary.json"
    return run, json.loads(summary_path.read_text()) if summary_path.is_file() else None, out / "gpu-check"


def test_dry_run_passes_and_prints_one_table(dry_run):
    run, summary, _ = dry_run
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert summary["mode"] == "cpu-dry-run" and summary["passed"] is True
    assert summary["table"] in run.stdout
    assert run.stdout.count("step ") == 1  # one table
    assert [step["name"] for step in summary["steps"]] == STEPS
    assert [step["status"] for step in summary["steps"]] == ["ok"] * 6 + ["skipped"]
    assert summary["steps"][-1]["result"] == "CPU dry run: no GPUs"


def test_training_runs_the_shipped_recipe_with_only_the_named_overrides(dry_run):
    _, summary, out = dry_run
    steps = {step["name"]: step for step in summary["steps"]}
    command = steps["sft"]["command"]
    assert command[1:5] == ["-m", "training.sft", "--config", str(RECIPE)]
    flags = dict(zip(command[5::2], command[6::2], strict=True))
    lora_only = summary["quantization"].startswith("LoRA")
    expected = {"--model_name_or_path", "--dataset_name", "--max_steps", "--output_dir", *DRY_RUN_FLAGS[::2]}
    assert set(flags) == expected | ({"--load_in_4bit"} if lora_only else set())
    # QLoRA where bitsandbytes can train 4-bit on this CPU, LoRA otherwise, and the summary says why
    if lora_only:
        assert flags["--load_in_4bit"] == "false" and "bitsandbytes" in summary["quantization_note"]
    else:
        assert summary["quantization"] == "QLoRA, 4-bit NF4"
    assert steps["sft"]["figures"]["steps"] == 3 and steps["sft"]["figures"]["tokens_per_s"] > 0
    assert summary["quantization"] in steps["sft"]["result"] and "tokens/s steady" in steps["sft"]["result"]
    adapter = json.loads((out / "cpu-dry-run" / "run" / "adapter" / "adapter_config.json").read_text())
    assert adapter["r"] == 16 and adapter["peft_type"] == "LORA"  # the recipe's LoRA
    # The DDP step, skipped here, launches the same training through accelerate with the shipped config
    ddp = steps["sft ddp"]["command"]
    assert ddp[1:4] == ["launch", "--config_file", str(DDP_CONFIG)]
    assert ddp[ddp.index("training.sft") + 1 :][: len(command) - 5] == command[3:-2]


def test_export_merges_into_a_bf16_model_that_the_check_answers_with(dry_run):
    _, summary, out = dry_run
    merged = out / "cpu-dry-run" / "run" / "merged"
    config = json.loads((merged / "config.json").read_text())
    assert config["model_type"] == "qwen2" and config["dtype"] == "bfloat16"
    quality = json.loads((merged / "quality.json").read_text())
    assert quality["examples"] == 4 and quality["split"] == "test"
    assert summary["steps"][STEPS.index("check")]["figures"]["examples"] == 4


def test_dry_run_model_is_the_shipped_shapes_shrunk_with_the_tokenizers_vocabulary(dry_run):
    _, _, out = dry_run
    config = json.loads((out / "cpu-dry-run" / "model" / "config.json").read_text())
    shapes = json.loads(SHAPES.read_text())
    assert config["num_hidden_layers"] == 2 and config["model_type"] == shapes["model_type"]
    assert config["vocab_size"] == len(AutoTokenizer.from_pretrained(model_path("base")))
    assert shapes["vocab_size"] == config["vocab_size"]


def test_shipped_shapes_are_qwen2_5_7b():
    """Qwen2.5-7B's model card: 28 layers, 28 query and 4 key-value heads, 6.53B parameters outside the embeddings."""
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(SHAPES))
    embeddings = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    non_embedding = sum(parameter.numel() for parameter in model.parameters()) - embeddings
    assert round(non_embedding / 1e9, 2) == 6.53
    assert (model.config.num_attention_heads, model.config.num_key_value_heads) == (28, 4)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine may have a GPU")
def test_without_a_gpu_the_check_says_how_to_dry_run(tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "training.gpu_check", "--out", str(tmp_path)], capture_output=True, text=True, cwd=ROOT
    )
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert "No CUDA GPU is visible" in run.stderr and "--cpu-dry-run" in run.stderr
    assert not any(tmp_path.iterdir())  # nothing written


def test_gpu_bench_counts_recomputed_layers_only_in_training_mode():
    """bench/bench_qlora_gpu.py refuses to report a peak unless each layer runs twice a step (checkpointing on); a
    model left in eval mode, as its H100 run was, runs each once."""
    import importlib.util

    from transformers import LlamaConfig

    from training.trainer import answer_only_loss

    spec = importlib.util.spec_from_file_location("bench_qlora_gpu", ROOT / "bench" / "bench_qlora_gpu.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    counts = {}
    for mode in ("eval", "train"):
        torch.manual_seed(0)
        shapes = {"hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 2, "num_key_value_heads": 2}
        config = LlamaConfig(vocab_size=64, num_hidden_layers=2, **shapes)
        model = AutoModelForCausalLM.from_config(config).eval()
        model.gradient_checkpointing_enable()  # what prepare_model_for_kbit_training does for the 4-bit model
        model = bench.add_lora(model)
        if mode == "train":
            model.train()
        calls = bench.layer_calls(model)
        ids = torch.randint(3, 64, (2, 12))
        labels = torch.where(torch.arange(12) < 6, -100, ids)
        answer_only_loss(model, {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels})[
            0
        ].backward()
        counts[mode] = calls[0] / config.num_hidden_layers
    assert counts == {"eval": 1, "train": 2}
