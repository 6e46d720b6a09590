"""CPU training speed of the Gemma 3 270M recipe against plain TRL on the same model, data and LoRA, in steady state.

    python bench/bench_sft_cpu.py                                 # 3 repeats x 3 variants, 1 warm-up step, 6000 tokens
    python bench/bench_sft_cpu.py --repeats 1 --timed-tokens 3000 # reduced, for a busy machine (say so when quoting)

Three variants train on the gold sample's train split with the recipe's LoRA (r, alpha, dropout, target modules),
each in its own process (so peak RSS, `ru_maxrss`, is its own), in alternating order (ABC, BCA, CAB, ...) so that a
noisy machine favours none:

- `trl-defaults`: `SFTTrainer` with `SFTConfig` defaults (batch 8, no packing, gradient checkpointing, weights in
  float32 as TRL loads them), only `use_cpu`, `bf16=False` and `assistant_only_loss=True` (the same objective);
- `trl-knobs`: plain `SFTTrainer` given the recipe's public knobs: its weight dtype, bfd packing without padding,
  assistant-only loss, no gradient checkpointing, the same max_length, batch and accumulation;
- `recipe`: `training/recipes/gemma3-270m-cpu.yaml` through `training.sft.main` (adds logits only at answer
  positions, `training/trainer.py`).

Tokens/s is steady state: non-padding input tokens over wall time between the end of warm-up step `--warmup` and the
step that brings the timed tokens to `--timed-tokens`, where the run stops; model loading, tokenization and the first
(slow) steps are excluded, and every variant is timed on about as many tokens (a `trl-defaults` step is a batch of 8
unpacked examples, about 3 packed steps). Answer tokens/s counts only the tokens with a label: what the model learns
from, which the recipe's `group_by_report` raises by reading each report once instead of once per question.
"""

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ko_radiology.cpu_blas import load_mkl_vendor_shim  # noqa: E402

MKL_SHIM = load_mkl_vendor_shim()  # every variant alike, before torch (ko_radiology/cpu_blas.py)
RECIPE = ROOT / "training" / "recipes" / "gemma3-270m-cpu.yaml"
VARIANTS = ("trl-defaults", "trl-knobs", "recipe")
TARGETS = {"trl-defaults": 1.5, "trl-knobs": 1.2}
"""Median tokens/s of the recipe over each plain-TRL variant that the recipe must reach."""
CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
MAX_STEPS = 1000


def recipe_values() -> dict:
    import yaml

    return yaml.safe_load(RECIPE.read_text())


def install_step_timer(times: list[tuple[float, int, int]], warmup: int, timed_tokens: int) -> None:
    """Every Trainer built in this process records (wall time, input tokens seen, answer tokens seen) at the end of
    each step, and stops once `timed_tokens` input tokens were seen after the warm-up steps."""
    from transformers import Trainer, TrainerCallback, trainer

    answer_tokens = [0]
    training_step = Trainer.training_step

    def counting_training_step(self, model, inputs, *args, **kwargs):
        answer_tokens[0] += int((inputs["labels"] != -100).sum())
        return training_step(self, model, inputs, *args, **kwargs)

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            times.append((time.perf_counter(), state.num_input_tokens_seen, answer_tokens[0]))
            if len(times) > warmup and times[-1][1] - times[warmup - 1][1] >= timed_tokens:
                control.should_training_stop = True

    Trainer.training_step = counting_training_step
    trainer.DEFAULT_CALLBACKS.append(StepTimer)


def lora_config():
    from peft import LoraConfig

    recipe = recipe_values()
    return LoraConfig(
        r=recipe["lora_r"],
        lora_alpha=recipe["lora_alpha"],
        lora_dropout=recipe["lora_dropout"],
        target_modules=recipe["lora_target_modules"],
        task_type="CAUSAL_LM",
    )


def run_plain_trl(variant: str, dataset_dir: str, output_dir: str, max_steps: int) -> None:
    from trl import SFTConfig, SFTTrainer

    from ko_radiology.dataset_folders import load_dataset_config
    from ko_radiology.embedded_models import model_path
    from ko_radiology.hardware import default_dtype
    from ko_radiology.prompts import build_messages

    train = load_dataset_config(dataset_dir, "qa", split="train")
    train = train.map(
        lambda row: {"messages": build_messages(row["report_ko"], row["instruction"], row["answer"])},
        remove_columns=train.column_names,
    )
    common = {"use_cpu": True, "bf16": False, "assistant_only_loss": True, "max_steps": max_steps}
    common |= {"save_strategy": "no", "report_to": "none", "seed": 42, "include_num_input_tokens_seen": "non_padding"}
    if variant == "trl-knobs":
        recipe = recipe_values()
        dtype = default_dtype("train", "cpu") if recipe["dtype"] == "auto" else recipe["dtype"]
        knobs = {key: recipe[key] for key in ("max_length", "packing", "packing_strategy", "gradient_checkpointing")}
        knobs |= {key: recipe[key] for key in ("per_device_train_batch_size", "gradient_accumulation_steps")}
        common |= knobs | {"padding_free": True, "model_init_kwargs": {"dtype": dtype}}
    args = SFTConfig(output_dir=output_dir, **common)
    SFTTrainer(model=str(model_path("base")), args=args, train_dataset=train, peft_config=lora_config()).train()


def run_recipe(dataset_dir: str, output_dir: str, max_steps: int) -> None:
    from training.sft import main, parse_args

    overrides = ["--eval_strategy", "no", "--save_strategy", "no", "--max_steps", str(max_steps)]
    # The CLI takes only a boolean here; `true` counts every input token, all real ones with padding-free packing
    overrides += ["--include_num_input_tokens_seen", "true"]
    main(*parse_args(["--config", str(RECIPE), "--dataset_name", dataset_dir, "--output_dir", output_dir, *overrides]))


def run_variant(variant: str, dataset_dir: str, warmup: int, timed_tokens: int) -> None:
    """Train one variant in this process and print its steady-state numbers as one JSON line."""
    times: list[tuple[float, int, int]] = []
    install_step_timer(times, warmup, timed_tokens)
    with tempfile.TemporaryDirectory() as output_dir:  # MAX_STEPS only bounds the run; the timer stops it
        if variant == "recipe":
            run_recipe(dataset_dir, output_dir, MAX_STEPS)
        else:
            run_plain_trl(variant, dataset_dir, output_dir, MAX_STEPS)
    (start, tokens_start, answers_start), (end, tokens_end, answers_end) = times[warmup - 1], times[-1]
    result = {
        "variant": variant,
        "timed_steps": len(times) - warmup,
        "tokens": tokens_end - tokens_start,
        "seconds": end - start,
        "tokens_per_s": (tokens_end - tokens_start) / (end - start),
        "answer_tokens_per_s": (answers_end - answers_start) / (end - start),
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }
    print("BENCH " + json.dumps(result), flush=True)


def run_in_process(variant: str, dataset_dir: Path, args: argparse.Namespace, env: dict | None = None) -> dict:
    """Run one variant in a fresh process (with `env`, when given) and return its figures."""
    command = [sys.executable, __file__, "--variant", variant, "--dataset-dir", str(dataset_dir)]
    command += ["--warmup", str(args.warmup), "--timed-tokens", str(args.timed_tokens)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    line = next((line for line in run.stdout.splitlines() if line.startswith("BENCH ")), None)
    if run.returncode != 0 or line is None:
        raise RuntimeError(f"{variant} failed ({run.returncode}):\n{run.stderr[-3000:]}")
    return json.loads(line.removeprefix("BENCH "))


def print_machine() -> None:
    import os

    from ko_radiology.hardware import cpu_flags, cpu_model_name, default_dtype

    flags = cpu_flags()
    shown = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in CPU_FLAGS)
    recipe_dtype = recipe_values()["dtype"]
    dtype = default_dtype("train", "cpu") if recipe_dtype == "auto" else recipe_dtype
    print(f"CPU: {cpu_model_name()}, {os.cpu_count()} cores; {shown}; recipe dtype {recipe_dtype} -> {dtype}")
    if MKL_SHIM:
        print(f"{MKL_SHIM} (every variant alike)")
    print(f"load average before the run: {os.getloadavg()}")


def summarize(results: dict[str, list[dict]]) -> None:
    print("| variant | runs | tokens/s min / median / max | answer tokens/s min / median / max | peak RSS GiB (max) |")
    print("|---|---|---|---|---|")
    medians = {}
    for variant, runs in results.items():
        spreads = []
        for key in ("tokens_per_s", "answer_tokens_per_s"):
            rates = [run[key] for run in runs]
            medians[variant, key] = statistics.median(rates)
            spreads.append(f"{min(rates):.1f} / {medians[variant, key]:.1f} / {max(rates):.1f}")
        peak = max(run["peak_rss_gib"] for run in runs)
        print(f"| {variant} | {len(runs)} | {spreads[0]} | {spreads[1]} | {peak:.2f} |")
    for baseline, target in TARGETS.items():
        for key, label in (("tokens_per_s", "tokens/s"), ("answer_tokens_per_s", "answer tokens/s")):
            ratio = medians["recipe", key] / medians[baseline, key]
            verdict = "met" if ratio >= target else "NOT met"
            print(f"recipe / {baseline}: {ratio:.2f}x median {label} (target >= {target:.2f}x: {verdict})")


def parse_timing_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """Add the options every steady-state training bench takes (repeats, warm-up steps, timed tokens) and parse."""
    parser.add_argument("--repeats", type=int, default=3, help="runs of each variant")
    parser.add_argument("--warmup", type=int, default=1, help="steps excluded from the timing")
    parser.add_argument("--timed-tokens", type=int, default=6000, help="input tokens timed per run, after warm-up")
    args = parser.parse_args()
    if args.warmup < 1:
        parser.error("--warmup must be at least 1: the first step's end is where the timing starts.")
    return args


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", choices=VARIANTS, help="run one variant in this process")
    parser.add_argument("--dataset-dir", help="with --variant: the dataset folder")
    args = parse_timing_args(parser)
    if args.variant:
        run_variant(args.variant, args.dataset_dir, args.warmup, args.timed_tokens)
        return
    from eval.check import export_gold_sample

    print_machine()
    results: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir = export_gold_sample(Path(tmp))
        for repeat in range(args.repeats):
            order = VARIANTS[repeat % 3 :] + VARIANTS[: repeat % 3]
            for variant in order:
                result = run_in_process(variant, dataset_dir, args)
                results[variant].append(result)
                print(f"repeat {repeat + 1}: {json.dumps(result)}", flush=True)
    summarize(results)


if __name__ == "__main__":
    main()
