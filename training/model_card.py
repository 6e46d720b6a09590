"""Render the top-level `model_card.md` template into an output folder's README.md."""

from pathlib import Path

import yaml
from jinja2 import Environment, StrictUndefined
from peft import PeftConfig
from trl import ModelConfig, SFTConfig

TEMPLATE_PATH = Path(__file__).resolve().parent.parent / "model_card.md"


def format_loss(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def card_values(
    script_args, training_args: SFTConfig, model_args: ModelConfig, peft_config: PeftConfig | None, results: dict
) -> dict:
    """Everything the template shows, from the parsed recipe and the training results."""
    world_size = max(training_args.world_size, 1)
    config = {
        "script": {k: v for k, v in vars(script_args).items() if v is not None},
        "model": {k: v for k, v in vars(model_args).items() if v is not None},
    }
    return {
        "model_name": training_args.hub_model_id or Path(training_args.output_dir).name,
        "model_id": training_args.hub_model_id or training_args.output_dir,
        "base_model": results["base_model"],
        "dataset_name": script_args.dataset_name,
        # The Hub links `datasets:` entries; a local export folder is named in the text only.
        "dataset_hub_id": None if Path(script_args.dataset_name).exists() else script_args.dataset_name,
        "dataset_config": script_args.dataset_config,
        "train_split": script_args.dataset_train_split,
        "eval_split": script_args.dataset_test_split,
        "train_examples": results["train_examples"],
        "eval_examples": results["eval_examples"],
        "recipe": results.get("recipe") or "command-line flags",
        "quantized": bool(model_args.load_in_4bit or model_args.load_in_8bit),
        "lora_r": getattr(peft_config, "r", "n/a"),
        "lora_alpha": getattr(peft_config, "lora_alpha", "n/a"),
        "lora_dropout": getattr(peft_config, "lora_dropout", "n/a"),
        "lora_target_modules": sorted(getattr(peft_config, "target_modules", None) or []),
        "learning_rate": training_args.learning_rate,
        "lr_scheduler_type": getattr(training_args.lr_scheduler_type, "value", training_args.lr_scheduler_type),
        "warmup_steps": training_args.warmup_steps,
        "num_train_epochs": training_args.num_train_epochs,
        "max_steps": training_args.max_steps,
        "effective_batch": training_args.per_device_train_batch_size
        * training_args.gradient_accumulation_steps
        * world_size,
        "packing": training_args.packing,
        "max_length": training_args.max_length,
        "seed": training_args.seed,
        "train_loss": format_loss(results.get("train_loss")),
        "eval_loss_before": format_loss(results.get("eval_loss_before")),
        "eval_loss_after": format_loss(results.get("eval_loss_after")),
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True).strip(),
    }


def write_model_card(output_dir: str | Path, values: dict, template_path: Path = TEMPLATE_PATH) -> Path:
    """Write README.md (the Hub's model card) into `output_dir`."""
    template = Environment(undefined=StrictUndefined, keep_trailing_newline=True).from_string(
        template_path.read_text(encoding="utf-8")
    )
    path = Path(output_dir) / "README.md"
    path.write_text(template.render(**values), encoding="utf-8")
    return path
