"""CPU training speed of the Gemma 3 270M recipe against plain TRL on the same model, data and LoRA.

    python bench/bench_sft_cpu.py                 # both variants, ~5-10 minutes on 2 idle cores
    python bench/bench_sft_cpu.py --examples 16   # fewer examples, faster

Both variants train one epoch on the same first `--examples` train examples of the gold sample, each in its own
process so that peak RSS (`ru_maxrss`) is its own. Tokens/s counts real (non-padding) tokens over `train_runtime`.
- baseline: `SFTTrainer` with a default `SFTConfig` (only `use_cpu`, `bf16=False`, `assistant_only_loss=True` for the
  same answer-only objective), no packing, the model loaded as TRL loads it (float32).
- recipe: `training/recipes/gemma3-270m-cpu.yaml` through `training.sft.main` (bf16 weights, bfd packing without
  padding, no gradient checkpointing, logits only at answer positions).
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RECIPE = ROOT / "training" / "recipes" / "gemma3-270m-cpu.yaml"


def write_subset(out_dir: Path, examples: int) -> Path:
    """A `qa` folder whose train split is the sample's first `examples` train rows."""
    from datasets import load_dataset

    from dataset_builder.__main__ import main as dataset_builder
    from dataset_builder.gold import SAMPLE_DIR

    build, full = out_dir / "build", out_dir / "full"
    dataset_builder(["build", "--data-dir", str(SAMPLE_DIR), "--gold", "--configs", "qa", "--out", str(build)])
    dataset_builder(["export", str(build), "--out", str(full)])
    train = load_dataset(str(full), "qa", split="train").select(range(examples))
    subset = out_dir / "subset"
    (subset / "qa").mkdir(parents=True)
    train.to_parquet(subset / "qa" / "train-00000-of-00001.parquet")
    (subset / "README.md").write_text(
        "---\nconfigs:\n- config_name: qa\n  data_files:\n  - split: train\n    path: qa/train-*.parquet\n---\n"
    )
    return subset


def run_baseline(dataset_dir: str, output_dir: str) -> dict:
    from datasets import load_dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    from ko_radiology.models import model_path
    from ko_radiology.prompts import build_messages

    train = load_dataset(dataset_dir, "qa", split="train")
    train = train.map(
        lambda row: {"messages": build_messages(row["report_ko"], row["instruction"], row["answer"])},
        remove_columns=train.column_names,
    )
    args = SFTConfig(
        output_dir=output_dir,
        use_cpu=True,
        bf16=False,
        assistant_only_loss=True,
        num_train_epochs=1,
        save_strategy="no",
        report_to="none",
        seed=42,
    )
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.05, target_modules=recipe_target_modules(), task_type="CAUSAL_LM"
    )
    trainer = SFTTrainer(model=str(model_path("base")), args=args, train_dataset=train, peft_config=lora)
    tokens = sum(len(ids) for ids in trainer.train_dataset["input_ids"])
    return {"tokens": tokens, "train_runtime": trainer.train().metrics["train_runtime"]}


def recipe_target_modules() -> list[str]:
    import yaml

    return yaml.safe_load(RECIPE.read_text())["lora_target_modules"]


def run_recipe(dataset_dir: str, output_dir: str) -> dict:
    from training.sft import main, parse_args

    overrides = ["--eval_strategy", "no", "--eval_on_start", "false", "--save_strategy", "no"]
    args = ["--config", str(RECIPE), "--dataset_name", dataset_dir, "--output_dir", output_dir, *overrides]
    trainer = main(*parse_args(args))
    runtime = next(entry["train_runtime"] for entry in trainer.state.log_history if "train_runtime" in entry)
    return {"tokens": sum(len(ids) for ids in trainer.train_dataset["input_ids"]), "train_runtime": runtime}


def run_variant(variant: str, dataset_dir: str) -> None:
    """Train one variant in this process and print its numbers as one JSON line."""
    with tempfile.TemporaryDirectory() as output_dir:
        result = (run_baseline if variant == "baseline" else run_recipe)(dataset_dir, output_dir)
    result["tokens_per_s"] = result["tokens"] / result["train_runtime"]
    result["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print("BENCH " + json.dumps({"variant": variant, **result}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=16, help="train examples per variant")
    parser.add_argument("--variant", choices=["baseline", "recipe"], help="run one variant in this process")
    parser.add_argument("--dataset-dir", help="with --variant: the subset folder")
    args = parser.parse_args()
    if args.variant:
        run_variant(args.variant, args.dataset_dir)
        return
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        dataset_dir = write_subset(Path(tmp), args.examples)
        for variant in ("baseline", "recipe"):
            command = [sys.executable, __file__, "--variant", variant, "--dataset-dir", str(dataset_dir)]
            output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT).stdout
            line = next(line for line in output.splitlines() if line.startswith("BENCH "))
            results[variant] = json.loads(line.removeprefix("BENCH "))
            print(results[variant], flush=True)
    speedup = results["recipe"]["tokens_per_s"] / results["baseline"]["tokens_per_s"]
    print("| variant | tokens | train s | tokens/s | peak RSS GiB |\n|---|---|---|---|---|")
    for variant, result in results.items():
        print(
            f"| {variant} | {result['tokens']} | {result['train_runtime']:.1f} | {result['tokens_per_s']:.1f} "
            f"| {result['peak_rss_gib']:.2f} |"
        )
    print(f"speedup: {speedup:.2f}x")


if __name__ == "__main__":
    main()
