"""Fine-tune a chat model on the Ko-Radiology `qa` dataset with LoRA or QLoRA, loss on the answer tokens only.

```bash
# The embedded default: Gemma 3 270M, LoRA, on CPU (a few minutes on 2 cores)
python -m training.sft --config training/recipes/gemma3-270m-cpu.yaml --dataset_name path/to/dataset

# Any recipe; flags override the YAML
python -m training.sft --config training/recipes/qwen2.5-7b-instruct-qlora.yaml --learning_rate 1e-4

# Several GPUs
accelerate launch --config_file training/recipes/accelerate/ddp.yaml -m training.sft \
    --config training/recipes/qwen2.5-7b-instruct-qlora.yaml
```

`--model_name_or_path embedded:base` is the Gemma 3 270M folder `python -m ko_radiology.models prepare` writes;
`embedded:tiny` is the random two-layer test model. Reruns resume from the last checkpoint in `output_dir`.
"""

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from transformers import AutoTokenizer, PreTrainedTokenizerBase, set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import ModelConfig, ScriptArguments, SFTConfig, TrlParser, get_peft_config, get_quantization_config

from ko_radiology.models import require_chat_template, resolve_model
from training.data import OVERLONG_POLICIES, load_qa_splits, prepare_qa_split
from training.model_card import card_values, write_model_card
from training.trainer import AnswerOnlySFTTrainer

EMBEDDED_HUB_IDS = {"embedded:base": "google/gemma-3-270m"}
"""What the model card names as the base of an adapter trained on an embedded model."""
HUB_FILES = ("adapter_config.json", "adapter_model.safetensors", "README.md", "tokenizer*", "chat_template.jinja")


@dataclass
class QAScriptArguments(ScriptArguments):
    """TRL's script arguments with this project's defaults and the over-long example policy.

    Args:
        overlong_policy (`str`, *optional*, defaults to `"drop"`):
            What to do with examples longer than `max_length`: `"drop"` them or `"truncate"` them (keeping the
            start; an example whose whole answer is cut is dropped). Either way the count is printed.
    """

    dataset_config: str | None = field(default="qa", metadata={"help": "Dataset config to load (`qa`)."})
    dataset_test_split: str = field(
        default="validation", metadata={"help": "Split for the validation loss (none when eval_strategy is 'no')."}
    )
    overlong_policy: str = field(
        default="drop",
        metadata={"help": "Examples longer than max_length: 'drop' or 'truncate'.", "choices": OVERLONG_POLICIES},
    )

    def __post_init__(self):
        if self.overlong_policy not in OVERLONG_POLICIES:
            raise ValueError(f"overlong_policy must be one of {OVERLONG_POLICIES}, got {self.overlong_policy!r}.")
        if not self.dataset_name:
            raise ValueError(
                "dataset_name is not set. Pass --dataset_name with a folder from `python -m dataset_builder export` "
                "or a Hub dataset id."
            )


def load_chat_tokenizer(name_or_path: str, training_args: SFTConfig) -> PreTrainedTokenizerBase:
    """The base model's tokenizer, with `chat_template_path` applied; refuse one that has no chat template."""
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, trust_remote_code=training_args.trust_remote_code)
    template_path = training_args.chat_template_path
    if template_path is not None:
        if not template_path.endswith((".jinja", ".j2")) or not os.path.isfile(template_path):
            raise ValueError(f"chat_template_path {template_path} is not a .jinja file. Pass a Jinja template file.")
        tokenizer.chat_template = Path(template_path).read_text(encoding="utf-8")
    require_chat_template(
        tokenizer,
        name_or_path,
        "Use an instruct/chat model, or pass --chat_template_path with a .jinja template "
        "(e.g. ko_radiology/chat_template.jinja for Gemma).",
    )
    return tokenizer


def eval_losses(log_history: list[dict]) -> tuple[float | None, float | None]:
    """Validation loss before training (logged at step 0 with `eval_on_start`) and the last one logged."""
    evals = [entry for entry in log_history if "eval_loss" in entry]
    before = next((entry["eval_loss"] for entry in evals if entry.get("step") == 0), None)
    return before, evals[-1]["eval_loss"] if evals else None


def push_adapter(output_dir: str, hub_model_id: str, private: bool | None = None) -> str:
    """Upload the adapter, tokenizer and card (not the checkpoints) to `hub_model_id`; the token comes from the env."""
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(hub_model_id, private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=hub_model_id, folder_path=output_dir, allow_patterns=list(HUB_FILES), commit_message="Upload adapter"
    )
    return str(commit)


def main(script_args: QAScriptArguments, training_args: SFTConfig, model_args: ModelConfig, recipe: str | None = None):
    set_seed(training_args.seed)  # before the model is built, so the LoRA initialization is seeded too
    base_model = resolve_model(model_args.model_name_or_path)
    tokenizer = load_chat_tokenizer(base_model, training_args)

    evaluate = training_args.eval_strategy != "no"
    splits = [script_args.dataset_train_split] + ([script_args.dataset_test_split] if evaluate else [])
    dataset = load_qa_splits(script_args.dataset_name, script_args.dataset_config, splits)
    prepared = {
        split: prepare_qa_split(
            dataset[split], tokenizer, training_args.max_length, script_args.overlong_policy, f"split {split}"
        )
        for split in splits
    }
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    # The adapter and card are uploaded once, at the end; the Trainer would otherwise push every checkpoint
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = AnswerOnlySFTTrainer(
        model=base_model,
        args=training_args,
        train_dataset=prepared[script_args.dataset_train_split],
        eval_dataset=prepared[script_args.dataset_test_split] if evaluate else None,
        processing_class=tokenizer,
        peft_config=get_peft_config(model_args),
        quantization_config=get_quantization_config(model_args),
    )

    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and os.path.isdir(training_args.output_dir):
        checkpoint = get_last_checkpoint(training_args.output_dir)
    if checkpoint is not None:
        trainer.accelerator.print(f"Resuming from {checkpoint}.")
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    if evaluate and trainer.state.log_history[-1].get("step") != trainer.state.global_step:
        trainer.evaluate()  # the last logged validation loss is the final adapter's

    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        eval_before, eval_after = eval_losses(trainer.state.log_history)
        train_losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        results = {
            "base_model": EMBEDDED_HUB_IDS.get(model_args.model_name_or_path, model_args.model_name_or_path),
            "recipe": recipe,
            "train_examples": len(prepared[script_args.dataset_train_split]),
            "eval_examples": len(prepared[script_args.dataset_test_split]) if evaluate else 0,
            "train_loss": train_losses[-1] if train_losses else train_result.training_loss,
            "eval_loss_before": eval_before,
            "eval_loss_after": eval_after,
        }
        write_model_card(
            training_args.output_dir,
            card_values(script_args, training_args, model_args, trainer.model.peft_config.get("default"), results),
        )
        trainer.accelerator.print(f"Saved the adapter, tokenizer and card to {training_args.output_dir}: {results}")
        if push_to_hub:
            push_adapter(training_args.output_dir, training_args.hub_model_id, training_args.hub_private_repo)
            trainer.accelerator.print(f"Pushed to https://huggingface.co/{training_args.hub_model_id}.")
    return trainer


def make_parser() -> TrlParser:
    return TrlParser((QAScriptArguments, SFTConfig, ModelConfig))


def parse_args(args: list[str] | None = None) -> tuple[QAScriptArguments, SFTConfig, ModelConfig, str | None]:
    """Parse `--config recipe.yaml` and flags (flags win); an unknown recipe key is an error that names it."""
    args = list(sys.argv[1:] if args is None else args)
    recipe = args[args.index("--config") + 1] if "--config" in args else None
    if recipe is not None and not os.path.isfile(recipe):
        raise FileNotFoundError(f"Recipe {recipe} does not exist. Pick one of training/recipes/*.yaml.")
    try:
        script_args, training_args, model_args = make_parser().parse_args_and_config(args)
    except ValueError as error:
        if "Unknown arguments from config file" in str(error):
            raise ValueError(
                f"{error} Recipe {recipe} has a key that is no field of ScriptArguments, SFTConfig or ModelConfig: "
                "fix its spelling or remove it (`python -m training.sft --help` lists the fields)."
            ) from error
        raise
    return script_args, training_args, model_args, recipe


if __name__ == "__main__":
    main(*parse_args())
