"""Would a user accept this model's answers? Stop rate, loops and overlap with the gold answers, against the base.

```bash
python -m eval.check out/gemma3-270m-ko-radiology-lora --split test                  # on the shipped sample
python -m eval.check out/gemma3-270m-ko-radiology-merged --split test --dataset out/hub
```

Greedy decoding, at most `--max-new-tokens` (256), batched, on every row of the split; the untuned base answers the
same prompts. Printed, and written to `quality.json` in the model folder, whose model card then shows it (the card is
training's: `python -m training card MODEL_DIR` renders it again):

- stop rate: answers that end with the end-of-turn token before the limit (target >= 90%);
- looping answers: answers that repeat a word 4-gram 3 or more times (target 0);
- chrF++ and character ROUGE-L against the gold answers, for the model and the base, with a paired bootstrap 95%
  confidence interval of the difference (target: the whole interval above 0).

Answers are cached per question (`ko_radiology.answer_cache`): the base's, which never stop by themselves and are the
slow half, are generated once for every check and `eval.compare` run. `quality_answers.jsonl` holds every answer.
"""

import argparse
import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

from ko_radiology.cli import run_cli
from ko_radiology.cpu_blas import load_mkl_vendor_shim

load_mkl_vendor_shim()  # before torch is imported (ko_radiology/cpu_blas.py)

from ko_radiology.answer_cache import cached_answers
from ko_radiology.atomic_io import write_text_atomically
from ko_radiology.dataset_folders import dataset_label, load_qa_splits
from ko_radiology.embedded_models import EMBEDDED_HUB_IDS
from ko_radiology.generation import Answer, is_adapter
from ko_radiology.hardware import default_dtype
from ko_radiology.model_loading import local_base_for, resolve_model
from ko_radiology.reference_metrics import chrf_pp_scores, rouge_l_chars_scores
from ko_radiology.statistics import paired_bootstrap

MIN_STOP_RATE = 0.9
MAX_LOOPING = 0
METRICS = {"chrf_pp": chrf_pp_scores, "rouge_l_chars": rouge_l_chars_scores}
QUALITY_FILE = "quality.json"
"""Beside the model; training's card (`training/model_card.py`) shows what it holds."""


def loops(text: str, n: int = 4, times: int = 3) -> bool:
    """True when some word n-gram occurs `times` or more times: the signature of a degenerate, repeating answer."""
    words = text.split()
    counts = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return any(count >= times for count in counts.values())


def base_of(model_dir: str, base: str | None) -> str:
    """The untuned model to compare with, by the name a reader of `quality.json` can use: `--base` (an embedded model
    by its Hub id), else the Hub id an adapter names."""
    if base is not None:
        return EMBEDDED_HUB_IDS.get(base, base)
    if not is_adapter(model_dir):
        raise ValueError(f"{model_dir} is a merged model, which does not record its base. Pass --base embedded:base.")
    from peft import PeftConfig

    return PeftConfig.from_pretrained(model_dir).base_model_name_or_path


def quality(tuned: list[Answer], base: list[Answer], golds: list[str]) -> dict:
    """The numbers of the module docstring as one flat dict, with the targets and whether each is met."""
    result = {
        "examples": len(golds),
        "stop_rate": sum(answer.stopped for answer in tuned) / len(tuned),
        "stop_tokens": dict(Counter(answer.stop_token for answer in tuned if answer.stopped)),
        "base_stop_rate": sum(answer.stopped for answer in base) / len(base),
        "looping": sum(loops(answer.text) for answer in tuned),
        "base_looping": sum(loops(answer.text) for answer in base),
    }
    for name, scores in METRICS.items():
        tuned_scores = scores([answer.text for answer in tuned], golds)
        base_scores = scores([answer.text for answer in base], golds)
        difference = paired_bootstrap(tuned_scores, base_scores)
        result[name] = sum(tuned_scores) / len(tuned_scores)
        result[f"base_{name}"] = sum(base_scores) / len(base_scores)
        result[f"{name}_difference"] = difference.estimate
        result[f"{name}_difference_ci95"] = [difference.low, difference.high]
    result["meets_targets"] = (
        result["stop_rate"] >= MIN_STOP_RATE
        and result["looping"] <= MAX_LOOPING
        and all(result[f"{name}_difference_ci95"][0] > 0 for name in METRICS)
    )
    return result


def print_quality(result: dict) -> None:
    print(f"\nExamples: {result['examples']}")
    ended = ", ".join(f"{token} {count}" for token, count in result["stop_tokens"].items())
    print(
        f"Stop rate: {result['stop_rate']:.0%} ({ended or 'none'}; base {result['base_stop_rate']:.0%}; "
        f"target >= {MIN_STOP_RATE:.0%})"
    )
    print(f"Looping answers: {result['looping']} (base {result['base_looping']}; target {MAX_LOOPING})")
    for name in METRICS:
        low, high = result[f"{name}_difference_ci95"]
        print(
            f"{name}: {result[name]:.3f} vs base {result[f'base_{name}']:.3f}, difference "
            f"{result[f'{name}_difference']:+.3f} (95% CI {low:+.3f} to {high:+.3f}; target: above 0)"
        )
    print("All targets met." if result["meets_targets"] else "Some targets are NOT met.")


def run_check(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or str(export_gold_sample(Path(tmp)))
        rows = load_qa_splits(dataset, "qa", [args.split])[args.split]
        rows = rows.shuffle(seed=0).select(range(min(args.limit, len(rows)))) if args.limit else rows
        generators = set(rows["generator_model"]) if "generator_model" in rows.column_names else set()
        dataset_name, _ = dataset_label(dataset, generators)  # as the card names it, never a path on this machine
    questions = list(zip(rows["report_ko"], rows["instruction"], strict=True))
    base = base_of(args.model, args.base)
    tuned_answers, untuned = (
        cached_answers(model, questions, args.max_new_tokens, args.batch_size, args.dtype)
        for model in (args.model, local_base_for(base) if args.base is None else resolve_model(args.base))
    )
    result = quality(tuned_answers, untuned, rows["answer"])
    result.update(split=args.split, dataset=dataset_name, base=base, subset=args.limit)
    result["max_new_tokens"] = args.max_new_tokens
    answers = [
        {"instruction": q, "gold": gold, "answer": t.text, "stopped": t.stopped, "base_answer": b.text}
        for (_, q), gold, t, b in zip(questions, rows["answer"], tuned_answers, untuned, strict=True)
    ]
    model_dir = Path(args.model)
    write_text_atomically(model_dir / QUALITY_FILE, json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    write_text_atomically(
        model_dir / "quality_answers.jsonl", "".join(json.dumps(a, ensure_ascii=False) + "\n" for a in answers)
    )
    from training.__main__ import main as training  # the card is training's, rendered by its command

    training(["card", str(model_dir)])
    return result


def export_gold_sample(out_dir: Path) -> Path:
    """Build the shipped sample with its gold QA and export it as a Hub folder under `out_dir` (offline, seconds);
    what `--dataset` defaults to here and in the benchmarks."""
    from dataset_builder.__main__ import main as dataset_builder
    from ko_radiology.sample_corpus import SAMPLE_DIR

    build, hub = Path(out_dir) / "build", Path(out_dir) / "hub"
    for command in (
        ["build", "--data-dir", str(SAMPLE_DIR), "--gold", "--configs", "qa", "--out", str(build)],
        ["export", str(build), "--out", str(hub)],
    ):
        if dataset_builder(command) != 0:
            raise RuntimeError(f"`python -m dataset_builder {' '.join(command)}` failed; see the lines above.")
    return hub


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="an adapter folder (training.sft) or a merged one (training.export)")
    parser.add_argument("--split", default="test", help="split of the qa config to answer")
    parser.add_argument("--dataset", help="a `dataset_builder export` folder or Hub id (default: the sample)")
    parser.add_argument("--base", help="the untuned model to compare with (default: the adapter's base)")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--limit", type=int, help="answer N rows only, a fixed random subset (seed 0)")
    parser.add_argument("--dtype", default=default_dtype("check"), choices=["float32", "bfloat16"])
    args = parser.parse_args(argv)
    if not Path(args.model).is_dir():
        parser.error(f"{args.model} is not a folder. Pass the output_dir of training.sft or of training.export.")
    return args


def check_command(argv: list[str]) -> None:
    args = parse_args(argv)
    print_quality(run_check(args))
    print(f"Written to {Path(args.model) / QUALITY_FILE}.")


def main(argv: list[str] | None = None) -> int:
    return run_cli(check_command, argv)


if __name__ == "__main__":
    sys.exit(main())
