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

A recipe may mix several datasets instead of naming one (`dataset_mixture:`, as alignment-handbook recipes do:
`training/mixture.py`), each a `qa` folder, a Hub id or a plain instruction/answer JSONL or CSV file.

`--model_name_or_path embedded:base` is the Gemma 3 270M folder `python -m ko_radiology.embedded_models prepare` writes
(`adapter_config.json` then names `google/gemma-3-270m`, its Hub id); `embedded:tiny` is the random two-layer test
model. Chat-template tokens the base never learned are found and started from trained rows
(`training/special_tokens.py`). `--dtype auto` picks bf16 only where the CPU or GPU computes it natively; on an AMD
CPU, MKL is made to use its fast kernels (`ko_radiology/cpu_blas.py`). Reruns
resume from the last checkpoint in `output_dir`; `python -m eval.check OUTPUT_DIR` measures the answers.
"""

import dataclasses
import difflib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from ko_radiology.cli import run_cli
from ko_radiology.cpu_blas import LOADED, load_mkl_vendor_shim

MKL_SHIM = load_mkl_vendor_shim()  # before torch is imported (ko_radiology/cpu_blas.py)

import torch
import yaml
from datasets import DatasetDict
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, set_seed
from transformers.trainer_utils import get_last_checkpoint
from trl import (
    ModelConfig,
    ScriptArguments,
    SFTConfig,
    TrlParser,
    get_peft_config,
    get_quantization_config,
)
from trl.trainer.utils import create_model_from_path

from ko_radiology.chat_tokens import require_chat_template
from ko_radiology.dataset_folders import load_qa_splits
from ko_radiology.embedded_models import EMBEDDED_HUB_IDS
from ko_radiology.hardware import cpu_model_name, default_dtype
from ko_radiology.model_loading import looks_like_local_path, resolve_model
from training.data import OVERLONG_POLICIES, prepare_qa_split
from training.hub_push import push_model_folder
from training.mixture import DatasetMixtureConfig, DrawnDataset, load_mixture, parse_mixture
from training.model_card import card_values, write_model_card
from training.special_tokens import (
    freeze_and_merge_token_rows,
    initialize_untrained_template_tokens,
    trainable_token_targets,
)
from training.trainer import AnswerOnlySFTTrainer

HUB_FILES = (
    "adapter_config.json",
    "adapter_model.safetensors",
    "README.md",
    "quality.json",
    "tokenizer*",
    "chat_template.jinja",
)
"""What `--push_to_hub` uploads from output_dir: never the checkpoints, the optimizer state or local bookkeeping."""


@dataclass
class QAScriptArguments(ScriptArguments):
    """TRL's script arguments with this project's defaults and the over-long example policy.

    Args:
        overlong_policy (`str`, *optional*, defaults to `"drop"`):
            What to do with examples longer than `max_length`: `"drop"` them or `"truncate"` them (keeping the
            start; an example whose whole answer is cut is dropped). Either way the count is printed.
        group_by_report (`bool`, *optional*, defaults to `False`):
            Train on each report's questions as one multi-turn chat (the report read once, not once per question),
            in an order shuffled with `--seed` so that every task is sometimes the first question; validation stays
            one question per example, the format eval asks in.
        unlikelihood_weight (`float`, *optional*, defaults to `0.0`):
            Add this times the repeat unlikelihood (`training/trainer.py`) to the training loss: each token an
            answer already wrote, other than the gold next one, is pushed down. A small base fine-tuned for a few
            minutes otherwise copies its own last words when unsure, and greedy decoding loops. The validation loss
            stays plain cross-entropy.
        answer_start_weight (`float`, *optional*, defaults to `1.0`):
            Count each answer's first token this many times in the training loss (`training/trainer.py`): the
            token that decides 네 or 아니요, or declining, is one among ~40 of its answer otherwise.
        dataset_mixture (`dict` or `None`, *optional*, defaults to `None`):
            Several datasets instead of `dataset_name`, each a `qa` folder, a Hub id or an instruction/answer JSONL or
            CSV file with a weight (the fraction of its rows drawn), a split and a column mapping, in the
            alignment-handbook's form (`training/mixture.py`). Validation is the first entry's `dataset_test_split`.
    """

    dataset_config: str | None = field(default="qa", metadata={"help": "Dataset config to load (`qa`)."})
    dataset_test_split: str = field(
        default="validation", metadata={"help": "Split for the validation loss (none when eval_strategy is 'no')."}
    )
    overlong_policy: str = field(
        default="drop",
        metadata={"help": "Examples longer than max_length: 'drop' or 'truncate'.", "choices": OVERLONG_POLICIES},
    )
    group_by_report: bool = field(
        default=False,
        metadata={"help": "Train on each report's questions as one multi-turn chat instead of one chat per question."},
    )
    unlikelihood_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the repeat unlikelihood (training/trainer.py) in the training loss: pushes down the "
            "tokens an answer already wrote, against looping under greedy decoding. 0: plain cross-entropy."
        },
    )
    answer_start_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of each answer's first token (네/아니요, or a decline) in the training loss; 1: as every "
            "other token."
        },
    )
    dataset_mixture: dict | str | None = field(
        default=None,
        metadata={
            "help": "Several datasets with weights instead of dataset_name (training/mixture.py): in the recipe as "
            "`dataset_mixture: {datasets: [{id, config, split, columns, weight}], seed}`, or as JSON here."
        },
    )
    eval_max_examples: int | None = field(
        default=None,
        metadata={
            "help": "Validate on the first N examples of the validation split only: a fixed subset, so the loss "
            "stays comparable between runs at a fraction of the cost."
        },
    )

    def __post_init__(self):
        if self.overlong_policy not in OVERLONG_POLICIES:
            raise ValueError(f"overlong_policy must be one of {OVERLONG_POLICIES}, got {self.overlong_policy!r}.")
        if self.unlikelihood_weight < 0:
            raise ValueError(
                f"unlikelihood_weight must be 0 or more (a negative one rewards repeating), "
                f"got {self.unlikelihood_weight}."
            )
        if self.answer_start_weight < 1:
            raise ValueError(f"answer_start_weight must be 1 or more, got {self.answer_start_weight}.")
        if self.dataset_name and self.dataset_mixture:
            raise ValueError(
                "Both dataset_name and dataset_mixture are set. Train on one dataset (dataset_name) or on a mixture "
                "(dataset_mixture), not both."
            )
        if self.dataset_mixture:
            if not isinstance(self.dataset_mixture, DatasetMixtureConfig):
                self.dataset_mixture = parse_mixture(self.dataset_mixture)
            return
        if not self.dataset_name:
            raise ValueError(
                "dataset_name is not set. Pass --dataset_name with a folder from `python -m dataset_builder export` "
                "or a Hub dataset id, or declare a dataset_mixture in the recipe."
            )
        if looks_like_local_path(self.dataset_name) and not Path(self.dataset_name).expanduser().exists():
            raise ValueError(
                f"dataset_name {self.dataset_name} looks like a local folder but does not exist. Pass a folder from "
                "`python -m dataset_builder export` (e.g. out/hub) or a Hub dataset id (org/name)."
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


def training_dtype(model_args: ModelConfig, training_args: SFTConfig) -> str:
    """`--dtype auto` is the policy's training dtype (`ko_radiology.hardware`) on the device the trainer uses: bf16
    only where it computes bf16 natively."""
    if model_args.dtype != "auto":
        return model_args.dtype
    on_cpu = training_args.use_cpu or not torch.cuda.is_available()
    dtype = default_dtype("train", "cpu" if on_cpu else "cuda")
    emulated = "no AMX or AVX512-BF16, so bf16 would be emulated" if on_cpu else "no bf16 support"
    reason = "native bf16" if dtype == "bfloat16" else emulated
    device = cpu_model_name() if on_cpu else torch.cuda.get_device_name()
    print(f"dtype auto on {device} ({reason}): training in {dtype}. Pass --dtype to choose.")
    return dtype


def load_base_model(base_model: str, model_args: ModelConfig, training_args: SFTConfig) -> PreTrainedModel:
    """The base, loaded here rather than by the trainer so its untrained template tokens can be found and fixed
    before peft wraps it. Arguments as TRL's `sft.py` passes them."""
    quantization_config = get_quantization_config(model_args)
    kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": training_dtype(model_args, training_args),
        "trust_remote_code": training_args.trust_remote_code,
        "quantization_config": quantization_config,
        **(training_args.model_init_kwargs or {}),
    }
    training_args.model_init_kwargs = None  # consumed here; the trainer warns when given both
    return create_model_from_path(base_model, **kwargs)


def hardware_label(trainer: AnswerOnlySFTTrainer) -> str:
    """What the card's training time was measured on: the CPU model and its cores, or the accelerator."""
    if trainer.args.use_cpu or not torch.cuda.is_available():
        # A shared machine's load stretches the time: the card says how busy the CPU was
        shim = ", MKL vendor shim" if MKL_SHIM == LOADED else ""
        load = os.getloadavg()[2]
        return f"{cpu_model_name()} ({os.cpu_count()} cores{shim}, 15-min load average {load:.1f} at the end)"
    return f"{trainer.accelerator.num_processes} x {torch.cuda.get_device_name()}"


def eval_losses(log_history: list[dict]) -> tuple[float | None, float | None]:
    """Validation loss before training (logged at step 0 with `eval_on_start`) and the last one logged."""
    evals = [entry for entry in log_history if "eval_loss" in entry]
    before = next((entry["eval_loss"] for entry in evals if entry.get("step") == 0), None)
    return before, evals[-1]["eval_loss"] if evals else None


def load_training_data(script_args: QAScriptArguments, evaluate: bool) -> tuple[DatasetDict, list[DrawnDataset]]:
    """The train split (and the validation split when evaluating) of `dataset_name` or of the `dataset_mixture`, and
    what the mixture drew from each of its datasets (none without one)."""
    test_split = script_args.dataset_test_split if evaluate else None
    if script_args.dataset_mixture:
        dataset, drawn = load_mixture(script_args.dataset_mixture, script_args.dataset_train_split, test_split)
    else:
        splits = [script_args.dataset_train_split] + ([test_split] if evaluate else [])
        dataset, drawn = load_qa_splits(script_args.dataset_name, script_args.dataset_config, splits), []
    if evaluate and script_args.eval_max_examples:
        validation = dataset[test_split]
        dataset[test_split] = validation.select(range(min(script_args.eval_max_examples, len(validation))))
    return dataset, drawn


def main(script_args: QAScriptArguments, training_args: SFTConfig, model_args: ModelConfig, recipe: str | None = None):
    if MKL_SHIM:
        print(MKL_SHIM)
    set_seed(training_args.seed)  # before the model is built, so the LoRA initialization is seeded too
    base_model = resolve_model(model_args.model_name_or_path)
    tokenizer = load_chat_tokenizer(base_model, training_args)

    evaluate = training_args.eval_strategy != "no"
    dataset, drawn = load_training_data(script_args, evaluate)
    prepared = {
        split: prepare_qa_split(
            dataset[split],
            tokenizer,
            training_args.max_length,
            script_args.overlong_policy,
            f"split {split}",
            conversations=script_args.group_by_report and split == script_args.dataset_train_split,
            seed=training_args.seed,
        )
        for split in dataset
    }
    model = load_base_model(base_model, model_args, training_args)
    peft_config = get_peft_config(model_args)
    token_rows = initialize_untrained_template_tokens(model, tokenizer)
    if token_rows and peft_config is not None:
        peft_config.trainable_token_indices = trainable_token_targets(model, token_rows)
    # The adapter and card are uploaded once, at the end; the Trainer would otherwise push every checkpoint
    push_to_hub, training_args.push_to_hub = training_args.push_to_hub, False
    trainer = AnswerOnlySFTTrainer(
        model=model,
        args=training_args,
        train_dataset=prepared[script_args.dataset_train_split],
        eval_dataset=prepared[script_args.dataset_test_split] if evaluate else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        unlikelihood_weight=script_args.unlikelihood_weight,
        answer_start_weight=script_args.answer_start_weight,
    )
    freeze_and_merge_token_rows(trainer.model)
    hub_base = EMBEDDED_HUB_IDS.get(model_args.model_name_or_path, base_model)
    if peft_config is not None:  # adapter_config.json names the base by Hub id, never by a path on this machine
        trainer.model.peft_config["default"].base_model_name_or_path = hub_base
    per_device, accumulation = training_args.per_device_train_batch_size, training_args.gradient_accumulation_steps
    processes = trainer.accelerator.num_processes
    trainer.accelerator.print(
        f"Effective batch: {per_device} per device x {accumulation} accumulation x {processes} processes = "
        f"{per_device * accumulation * processes}"
    )

    checkpoint = training_args.resume_from_checkpoint
    if checkpoint is None and os.path.isdir(training_args.output_dir):
        checkpoint = get_last_checkpoint(training_args.output_dir)
    if checkpoint is not None:
        trainer.accelerator.print(f"Resuming from {checkpoint}.")
    started = time.perf_counter()
    train_result = trainer.train(resume_from_checkpoint=checkpoint)
    if evaluate and trainer.state.log_history[-1].get("step") != trainer.state.global_step:
        trainer.evaluate()  # the last logged validation loss is the final adapter's
    wall_s = time.perf_counter() - started

    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        eval_before, eval_after = eval_losses(trainer.state.log_history)
        train_losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        results = {
            "base_model": hub_base,
            "embedded_base": model_args.model_name_or_path in EMBEDDED_HUB_IDS,
            "dtype": str(trainer.model.get_base_model().dtype).removeprefix("torch."),
            "initialized_tokens": tokenizer.convert_ids_to_tokens(token_rows),
            "wall_s": wall_s,
            "hardware": hardware_label(trainer),
            "steps": trainer.state.global_step,
            "generators": sorted(set(dataset[script_args.dataset_train_split]["generator_model"]))
            if "generator_model" in dataset[script_args.dataset_train_split].column_names
            else [],
            "recipe": recipe,
            "dataset_mixture": [dataclasses.asdict(facts) for facts in drawn],
            "train_examples": len(dataset[script_args.dataset_train_split]),
            "train_chats": len(prepared[script_args.dataset_train_split]) if script_args.group_by_report else None,
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
            push_model_folder(
                training_args.output_dir, training_args.hub_model_id, list(HUB_FILES), training_args.hub_private_repo
            )
            trainer.accelerator.print(f"Pushed to https://huggingface.co/{training_args.hub_model_id}.")
    return trainer


def make_parser() -> TrlParser:
    return TrlParser((QAScriptArguments, SFTConfig, ModelConfig))


def check_recipe(recipe: str) -> None:
    """Refuse a missing recipe, one that is no YAML mapping, or one with a key no dataclass has, naming the key."""
    if not os.path.isfile(recipe):
        raise FileNotFoundError(f"Recipe {recipe} does not exist. Pick one of training/recipes/*.yaml.")
    try:
        config = yaml.safe_load(Path(recipe).read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"Recipe {recipe} is not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(config, dict):
        raise ValueError(f"Recipe {recipe} is not a YAML mapping of `field: value` lines.")
    fields = {f.name for cls in (QAScriptArguments, SFTConfig, ModelConfig) for f in dataclasses.fields(cls)}
    unknown = sorted(set(config) - fields - {"env"})  # TrlParser reads `env:` itself
    if unknown:
        close = difflib.get_close_matches(unknown[0], fields, n=2)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise ValueError(
            f"Recipe {recipe} has a key {unknown[0]!r}{hint} that is no field of ScriptArguments, SFTConfig or "
            "ModelConfig: fix its spelling or remove it (`python -m training.sft --help` lists the fields)."
        )


def parse_args(args: list[str] | None = None) -> tuple[QAScriptArguments, SFTConfig, ModelConfig, str | None]:
    """Parse `--config recipe.yaml` and flags (flags win); a bad recipe or flag value is an error that names it."""
    args = list(sys.argv[1:] if args is None else args)
    recipe = args[args.index("--config") + 1] if "--config" in args else None
    if recipe is not None:
        check_recipe(recipe)
    script_args, training_args, model_args = make_parser().parse_args_and_config(args)
    if not model_args.use_peft:
        raise ValueError(
            "use_peft is false, but training.sft trains, saves and pushes a LoRA adapter (its card, training.export "
            "and eval.check's base are an adapter's): set use_peft: true. Full fine-tuning of the 270M base answered "
            "no better than LoRA (README, What moved each behaviour)."
        )
    return script_args, training_args, model_args, recipe


def cli(args: list[str] | None = None) -> int:
    """`python -m training.sft`: a wrong recipe, key or dataset path is one line on stderr, not a traceback; an error
    while training keeps its traceback (it is no input to fix)."""
    parsed: list = []
    status = run_cli(lambda argv: parsed.extend(parse_args(argv)), args)
    if parsed:
        main(*parsed)
    return status


if __name__ == "__main__":
    sys.exit(cli())
