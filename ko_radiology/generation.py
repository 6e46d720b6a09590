"""Local batched generation with a fine-tuned model: an adapter folder or a merged one, prompted in the one format.

    model, tokenizer = load_for_generation("out/gemma3-270m-ko-radiology-lora")
    answers = generate_answers(model, tokenizer, [(report_ko, "이 검사에서 폐렴 소견이 있나요?")])
    answers[0].text, answers[0].stopped

Greedy and batched with left padding, which is what a quality check wants: the same answer on every run, and a whole
test split in minutes on a CPU. An adapter is merged into its base in memory first: peft's unmerged wrapper is several
times slower to generate with (with trainable token rows it rebuilds the 262k-row embedding and head every step).
"""

from dataclasses import dataclass
from pathlib import Path

from ko_radiology.chat_tokens import require_chat_template, template_special_tokens
from ko_radiology.hardware import default_dtype
from ko_radiology.model_loading import load_model_and_tokenizer, local_base_for
from ko_radiology.prompts import build_messages

ADAPTER_CONFIG = "adapter_config.json"


@dataclass(frozen=True)
class Answer:
    """One generated answer. `stopped` is False when it ran into `max_new_tokens` without a stop token; `stop_token`
    is the one it ended with (`<end_of_turn>` for a chat model, `<eos>` if it ended the document instead)."""

    text: str
    stopped: bool
    num_tokens: int
    stop_token: str | None = None


def is_adapter(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def load_for_generation(path: str | Path, dtype: str = default_dtype("serve")):
    """Model and tokenizer from a merged model folder (or id), or from an adapter folder merged into its base, on the
    GPU where there is one.

    The adapter's base is the Hub id its `adapter_config.json` names; where that id is an embedded model prepared here,
    the prepared copy is loaded (what it was trained on, and available offline).
    """
    import torch
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not is_adapter(path):
        model, tokenizer = load_model_and_tokenizer(path, dtype=dtype)
        return model.to(device).eval(), tokenizer
    base = local_base_for(PeftConfig.from_pretrained(path).base_model_name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    require_chat_template(tokenizer, path)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype)
    model = PeftModel.from_pretrained(model, path).merge_and_unload()
    return model.to(device).eval(), tokenizer


def stop_token_ids(model, tokenizer) -> list[int]:
    """The model's end-of-sequence ids and the special tokens its chat template closes an answer with."""
    eos = model.generation_config.eos_token_id
    eos = [] if eos is None else [eos] if isinstance(eos, int) else list(eos)
    return list(dict.fromkeys(eos + template_special_tokens(tokenizer)[1]))


def generate_answers(
    model,
    tokenizer,
    questions: list[tuple[str, str]],
    max_new_tokens: int = 256,
    batch_size: int = 8,
) -> list[Answer]:
    """Greedy answers to `(report, instruction)` pairs, in their order; batches group prompts of similar length."""
    import torch

    stops = stop_token_ids(model, tokenizer)
    prompts = [
        tokenizer.apply_chat_template(build_messages(report, instruction), add_generation_prompt=True, tokenize=False)
        for report, instruction in questions
    ]
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: dict[int, Answer] = {}
    tokenizer.padding_side = "left"
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        # The rendered template already starts with <bos>; the tokenizer must not add a second one
        inputs = tokenizer([prompts[i] for i in batch], padding=True, add_special_tokens=False, return_tensors="pt")
        inputs = inputs.to(model.device)
        with torch.inference_mode():
            output = model.generate(
                **inputs,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                eos_token_id=stops,
                pad_token_id=tokenizer.pad_token_id,
            )
        for i, row in zip(batch, output[:, inputs["input_ids"].shape[1] :].tolist(), strict=True):
            answers[i] = to_answer(row, stops, tokenizer)
    return [answers[i] for i in range(len(prompts))]


def to_answer(token_ids: list[int], stops: list[int], tokenizer) -> Answer:
    """Cut a generated row at its first stop token (what follows is padding) and decode it."""
    end = next((position for position, token in enumerate(token_ids) if token in stops), None)
    kept = token_ids if end is None else token_ids[:end]
    stop_token = None if end is None else tokenizer.convert_ids_to_tokens(token_ids[end])
    return Answer(tokenizer.decode(kept, skip_special_tokens=True).strip(), end is not None, len(kept), stop_token)
