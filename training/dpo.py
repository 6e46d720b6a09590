"""Preference optimisation after SFT: TRL's DPO on the train split's gold answers against one-defect variants.

```bash
python -m training.sft --config training/recipes/gemma3-270m-cpu.yaml --dataset_name DATA --output_dir out/sft
python -m training.dpo --config training/recipes/gemma3-270m-cpu-dpo.yaml --sft_adapter out/sft \
    --dataset_name DATA --output_dir out/dpo
python -m eval.check out/dpo --split test
```

The SFT adapter goes on training; the reference is the SFT model itself (the adapter merged into a second copy of the
base), so DPO moves the answers only where a pair says the SFT model is wrong: 네 for 아니요, the wrong side, an
invented finding, an answer to what the report cannot answer (`training/preference_pairs.py`). The output is an
adapter on the same base, so `eval.check`, `training.export` and the Space take it as they take an SFT adapter; its
card is the SFT card with the preference stage added.
"""

import json
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ko_radiology.cli import run_cli
from ko_radiology.cpu_blas import load_mkl_vendor_shim

MKL_SHIM = load_mkl_vendor_shim()  # before torch is imported (ko_radiology/cpu_blas.py)

from transformers import AutoModelForCausalLM, AutoTokenizer, set_seed
from trl import DPOConfig, DPOTrainer, ModelConfig, ScriptArguments, TrlParser

from ko_radiology.dataset_folders import load_qa_splits
from ko_radiology.generation import is_adapter
from ko_radiology.model_loading import local_base_for
from training.model_card import CARD_VALUES_FILE, write_model_card
from training.preference_pairs import preference_pairs
from training.sft import training_dtype
from training.special_tokens import freeze_and_merge_token_rows


@dataclass
class PreferenceScriptArguments(ScriptArguments):
    """TRL's script arguments plus the SFT adapter to start from and the tasks whose rows give pairs.

    Args:
        sft_adapter (`str`):
            The output_dir of `python -m training.sft`: the adapter DPO trains on, and (merged) the reference.
        pair_tasks (`list[str]`, *optional*, defaults to `["질문 답변"]`):
            Tasks whose train rows give preference pairs; question answering is where yes/no, sides and declining
            are decided.
    """

    sft_adapter: str | None = field(default=None, metadata={"help": "output_dir of training.sft to start from."})
    dataset_config: str | None = field(default="qa", metadata={"help": "Dataset config to load (`qa`)."})
    pair_tasks: list[str] = field(
        default_factory=lambda: ["질문 답변"], metadata={"help": "Tasks whose train rows give preference pairs."}
    )

    def __post_init__(self):
        if not self.sft_adapter or not is_adapter(self.sft_adapter):
            raise ValueError(
                f"sft_adapter {self.sft_adapter} is no adapter folder (adapter_config.json). Pass the output_dir of "
                "`python -m training.sft`."
            )
        if not self.dataset_name:
            raise ValueError("dataset_name is not set. Pass the dataset the SFT adapter was trained on.")


def load_policy_and_reference(adapter_dir: str, dtype: str):
    """The SFT adapter, trainable, on one copy of the base; the same adapter merged into a second: the reference."""
    from peft import PeftConfig, PeftModel
    from peft.utils.other import TrainableTokensWrapper

    base = local_base_for(PeftConfig.from_pretrained(adapter_dir).base_model_name_or_path)

    def with_adapter(trainable: bool):
        model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
        return PeftModel.from_pretrained(model, adapter_dir, is_trainable=trainable)

    policy = with_adapter(True)
    freeze_and_merge_token_rows(policy)  # the template tokens' rows stay as SFT left them, as they were in SFT
    head = policy.get_output_embeddings()
    if isinstance(head, TrainableTokensWrapper) and not hasattr(head, "bias"):
        head.bias = None  # TRL's fused LM head reads `lm_head.bias`, which peft's wrapper of a tied head lacks
    return policy, with_adapter(False).merge_and_unload()


def preference_card(sft_adapter: str, training_args: DPOConfig, results: dict) -> dict:
    """The SFT adapter's card values with the preference stage added, named after this output."""
    values = json.loads((Path(sft_adapter) / CARD_VALUES_FILE).read_text(encoding="utf-8"))
    values["model_name"] = training_args.hub_model_id or Path(training_args.output_dir).name
    values["model_id"] = training_args.hub_model_id or training_args.output_dir
    loss_types = training_args.loss_type if isinstance(training_args.loss_type, list) else [training_args.loss_type]
    values["preference"] = {
        "method": f"DPO ({' + '.join(loss_types)})",
        "beta": training_args.beta,
        "learning_rate": training_args.learning_rate,
        "epochs": training_args.num_train_epochs,
        **results,
    }
    return values


def score_answer_positions_only() -> None:
    """Make TRL's fused LM head score only the answer tokens on every device, as it does on CUDA.

    TRL 1.16 scores every position off Triton devices (to keep tile shapes fixed for compilers such as Neuron's), so on
    a CPU each pair paid for the 262k-token vocabulary at all ~500 prompt positions to use the ~50 answer ones. The
    compact path is plain torch. Relies on `trl.trainer.utils._use_triton` deciding only that (tests/test_dpo.py
    checks the name is there and that the losses match).
    """
    import trl.trainer.utils

    trl.trainer.utils._use_triton = lambda device: True


def main(script_args: PreferenceScriptArguments, training_args: DPOConfig, model_args: ModelConfig) -> DPOTrainer:
    set_seed(training_args.seed)
    score_answer_positions_only()
    rows = load_qa_splits(script_args.dataset_name, script_args.dataset_config, [script_args.dataset_train_split])
    pairs = preference_pairs(rows[script_args.dataset_train_split], script_args.pair_tasks)
    defects = dict(Counter(pairs["defect"]))
    print(f"Preference pairs from {script_args.dataset_train_split}: {len(pairs)} {defects}")
    policy, reference = load_policy_and_reference(script_args.sft_adapter, training_dtype(model_args, training_args))
    trainer = DPOTrainer(
        model=policy,
        ref_model=reference,
        args=training_args,
        train_dataset=pairs.remove_columns("defect"),
        processing_class=AutoTokenizer.from_pretrained(script_args.sft_adapter),
    )
    started = time.perf_counter()
    trainer.train()
    wall_s = time.perf_counter() - started
    trainer.save_model(training_args.output_dir)
    if trainer.accelerator.is_main_process:
        losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
        pairs_per_step = training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps
        pairs_per_step *= trainer.accelerator.num_processes
        epochs = max(1, round(training_args.num_train_epochs))
        results = {
            "pairs": len(pairs),
            "defects": defects,
            "steps": trainer.state.global_step,
            "pairs_trained": min(trainer.state.global_step * pairs_per_step, len(pairs) * epochs),
            "wall_minutes": round(wall_s / 60, 1),
            "train_loss": round(losses[-1], 4) if losses else None,
        }
        write_model_card(training_args.output_dir, preference_card(script_args.sft_adapter, training_args, results))
        print(f"Saved the adapter and card to {training_args.output_dir}: {results}")
    return trainer


def cli(args: list[str] | None = None) -> int:
    """`python -m training.dpo`: a wrong recipe, adapter or dataset is one line on stderr, not a traceback."""
    parsed: list = []
    parser = TrlParser((PreferenceScriptArguments, DPOConfig, ModelConfig))
    status = run_cli(lambda argv: parsed.extend(parser.parse_args_and_config(argv)), args)
    if parsed:
        main(*parsed)
    return status


if __name__ == "__main__":
    sys.exit(cli())
