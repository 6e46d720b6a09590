"""Render `model_card.md` (beside this module) into an output folder's README.md, for an adapter or a merged model.

The values the card shows are saved next to it (`model_card.json`), so `eval.check` can add its quality numbers
(`quality.json`, then `python -m training card DIR`) and `training.export` can render the merged model's card, both
from the same facts of the run.
"""

import json
from dataclasses import asdict, is_dataclass
from pathlib import Path

import yaml
from jinja2 import Environment, StrictUndefined
from peft import PeftConfig
from trl import ModelConfig, SFTConfig

from ko_radiology.atomic_io import write_text_atomically
from ko_radiology.dataset_folders import SAMPLE_DATASET, dataset_label

TEMPLATE_PATH = Path(__file__).with_name("model_card.md")
CARD_VALUES_FILE = "model_card.json"
QUALITY_FILE = "quality.json"
"""Written beside the model by `python -m eval.check`."""
BASE_LICENSES = {"google/gemma": "gemma", "meta-llama/Llama-2": "llama2", "Qwen/Qwen2.5-7B-Instruct": "apache-2.0"}
"""An adapter or merge inherits its base's terms: the card's `license` by base id prefix ("other" if unknown)."""


def format_loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def optional_loss(value: float | None) -> str | None:
    """A loss the run may not have measured (the untuned one without `eval_on_start`): its row is then left out."""
    return None if value is None else format_loss(value)


def base_license(base_model: str) -> str:
    return next((name for prefix, name in BASE_LICENSES.items() if base_model.startswith(prefix)), "other")


def mixture_label(mixture: list[dict]) -> str:
    """How the card names a mixture's data in a sentence: "a mixture of A and B"."""
    names = [entry["dataset"] for entry in mixture]
    return "a mixture of " + (f"{', '.join(names[:-1])} and {names[-1]}" if len(names) > 1 else names[0])


def card_values(
    script_args, training_args: SFTConfig, model_args: ModelConfig, peft_config: PeftConfig | None, results: dict
) -> dict:
    """Everything the template shows, from the parsed recipe and the training results."""
    world_size = max(training_args.world_size, 1)
    config = {
        "script": {k: asdict(v) if is_dataclass(v) else v for k, v in vars(script_args).items() if v is not None},
        "model": {k: v for k, v in vars(model_args).items() if v is not None},
    }
    mixture = results.get("dataset_mixture") or None
    if mixture:
        dataset, dataset_hub_id = mixture_label(mixture), None
    else:
        dataset, dataset_hub_id = dataset_label(script_args.dataset_name, set(results.get("generators", ())))
    return {
        "model_name": training_args.hub_model_id or Path(training_args.output_dir).name,
        "model_id": training_args.hub_model_id or training_args.output_dir,
        "base_model": results["base_model"],
        "embedded_base": results.get("embedded_base", False),
        "license": base_license(results["base_model"]),
        "dataset": dataset,
        "dataset_hub_id": dataset_hub_id,
        "synthetic_sample": (mixture[0]["dataset"] if mixture else dataset) == SAMPLE_DATASET,
        "mixture": mixture,
        "mixture_seed": script_args.dataset_mixture.seed if mixture else None,
        "dataset_config": script_args.dataset_config,
        "train_split": script_args.dataset_train_split,
        "eval_split": script_args.dataset_test_split,
        "train_examples": results["train_examples"],
        "train_chats": results.get("train_chats"),
        "eval_examples": results["eval_examples"],
        "recipe": results.get("recipe") or "command-line flags",
        "quantized": bool(model_args.load_in_4bit or model_args.load_in_8bit),
        "dtype": results.get("dtype", model_args.dtype),
        "initialized_tokens": results.get("initialized_tokens", []),
        "unlikelihood_weight": script_args.unlikelihood_weight,
        "answer_start_weight": script_args.answer_start_weight,
        "lora_r": getattr(peft_config, "r", "n/a"),
        "lora_alpha": getattr(peft_config, "lora_alpha", "n/a"),
        "lora_dropout": getattr(peft_config, "lora_dropout", "n/a"),
        "lora_target_modules": sorted(getattr(peft_config, "target_modules", None) or []),
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "steps": results.get("steps"),
        "effective_batch": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * world_size,
        "packing": training_args.packing,
        "max_length": training_args.max_length,
        "seed": training_args.seed,
        "hardware": results.get("hardware"),
        "wall_minutes": None if results.get("wall_s") is None else round(results["wall_s"] / 60, 1),
        "train_loss": format_loss(results.get("train_loss")),
        "eval_loss_before": optional_loss(results.get("eval_loss_before")),
        "eval_loss_after": format_loss(results.get("eval_loss_after")),
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True).strip(),
    }


def write_model_card(output_dir: str | Path, values: dict, merged: bool = False) -> Path:
    """Save `values` and render README.md (the Hub's model card) into `output_dir`, with the quality numbers that
    `eval.check` left there, if any."""
    output_dir = Path(output_dir)
    write_text_atomically(output_dir / CARD_VALUES_FILE, json.dumps(values, indent=2, ensure_ascii=False) + "\n")
    quality_path = output_dir / QUALITY_FILE
    quality = json.loads(quality_path.read_text(encoding="utf-8")) if quality_path.is_file() else None
    template = Environment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(
        TEMPLATE_PATH.read_text(encoding="utf-8")
    )
    text = template.render(**values, merged=merged, quality=quality)
    return write_text_atomically(output_dir / "README.md", text)


def render_saved_card(model_dir: str | Path, merged: bool | None = None, **overrides) -> Path | None:
    """Render README.md again from the saved values (after a quality check or an export), with `overrides` (e.g. the
    merged model's name); None when the folder has no saved values."""
    values_path = Path(model_dir) / CARD_VALUES_FILE
    if not values_path.is_file():
        return None
    values = {**json.loads(values_path.read_text(encoding="utf-8")), **overrides}
    merged = not (Path(model_dir) / "adapter_config.json").is_file() if merged is None else merged
    return write_model_card(model_dir, values, merged=merged)
