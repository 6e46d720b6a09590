"""Would a user accept this model's answers? Stop rate, loops, overlap with the gold answers and what it does with
yes/no, unanswerable and abbreviation questions, against the base.

```bash
python -m eval.check out/gemma3-270m-ko-radiology-lora --split test                  # on the shipped sample
python -m eval.check out/gemma3-270m-ko-radiology-merged --split test --dataset out/hub
```

Greedy decoding, at most `--max-new-tokens` (256), on every row of the split; the untuned base answers the same
prompts. `--backend` says what generates (`eval/local_answers.py`): llama.cpp's llama-server on a GGUF of each model
where it is built, else transformers in batches; `quality.json` records which (`generation`). Printed, and written
to `quality.json` in the model folder, whose model card then shows it (the card is training's: `python -m training
card MODEL_DIR` renders it again):

- stop rate: answers that end with the end-of-turn token before the limit (target >= 95%);
- looping answers: answers that repeat a word 4-gram 3 or more times (target 0);
- chrF++ and character ROUGE-L against the gold answers, for the model and the base, with a paired bootstrap 95%
  confidence interval of the difference (target: the whole interval above 0); chrF++ also per task (질문 답변,
  축약어 확장, 바꾸어 말하기, 요약), with the same interval, no target;
- per behaviour (`eval.behaviours`), for the model and the base, each a share with a 95% Wilson interval: yes/no
  questions whose answer starts with the gold's 네/아니요 (`yes_no_accuracy`, target >= 85%), unanswerable questions
  declined (`unanswerable_declined`, target >= 75%), answerable ones declined (`answerable_declined`, false refusals,
  target <= 5%), and the abbreviations the gold answers expand that the answer expands too, in the glossary's English
  or Korean (`abbreviation_accuracy`, no target). A split without the `question_type` column has its types read off
  the gold answers; one without `expanded_abbreviations` has no abbreviation accuracy (null).

`targets` in `quality.json` says, per target, what it is and whether it is met (null: not measured on this split);
`meets_targets` is whether all are. Answers are cached per question (`ko_radiology.answer_cache`): the base's, which
never stop by themselves and are the slow half, are generated once for every check and `eval.compare` run.
`quality_answers.jsonl` holds every answer with its question's type and task.
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

from eval.behaviours import COUNTS, GoldLabels, behaviours, gold_labels
from eval.local_answers import BACKENDS, DEFAULT_GGUF_TYPE, GGUF_TYPES, choose_backend, local_generator
from ko_radiology.answer_cache import BATCH_SIZE, cached_answers
from ko_radiology.atomic_io import write_text_atomically
from ko_radiology.dataset_folders import dataset_label, load_qa_splits
from ko_radiology.embedded_models import EMBEDDED_HUB_IDS
from ko_radiology.generation import Answer, is_adapter
from ko_radiology.glossary import Glossary
from ko_radiology.hardware import default_dtype
from ko_radiology.llama_cpp_answers import SLOTS
from ko_radiology.model_loading import local_base_for, resolve_model
from ko_radiology.prompts import TASK_TYPES
from ko_radiology.reference_metrics import chrf_pp_scores, rouge_l_chars_scores
from ko_radiology.statistics import paired_bootstrap

MIN_STOP_RATE = 0.95
MAX_LOOPING = 0
MIN_YES_NO_ACCURACY = 0.85
MIN_UNANSWERABLE_DECLINED = 0.75
MAX_ANSWERABLE_DECLINED = 0.05
BOUNDS = {
    "stop_rate": (">=", MIN_STOP_RATE),
    "looping": ("<=", MAX_LOOPING),
    "yes_no_accuracy": (">=", MIN_YES_NO_ACCURACY),
    "unanswerable_declined": (">=", MIN_UNANSWERABLE_DECLINED),
    "answerable_declined": ("<=", MAX_ANSWERABLE_DECLINED),
}
"""The targets on a number of `quality.json`; the metric differences have theirs in `targets` (CI above 0)."""
METRICS = {"chrf_pp": chrf_pp_scores, "rouge_l_chars": rouge_l_chars_scores}
BEHAVIOUR_LABELS = {
    "yes_no_accuracy": "yes/no questions answered with the gold's 네/아니요",
    "unanswerable_declined": "unanswerable questions declined",
    "answerable_declined": "answerable questions declined (false refusals)",
    "abbreviation_accuracy": "abbreviations expanded as the glossary does",
}
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


def quality(tuned: list[Answer], base: list[Answer], labels: GoldLabels, glossary: Glossary) -> dict:
    """The numbers of the module docstring as one flat dict (chrF++ per task nested), with the targets and whether
    each is met."""
    golds = labels.answers
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
        if name == "chrf_pp":
            result["chrf_pp_by_task"] = by_task(labels.tasks, tuned_scores, base_scores)
    result |= behaviours([answer.text for answer in tuned], [answer.text for answer in base], labels, glossary)
    result["targets"] = targets(result)
    result["meets_targets"] = all(target["met"] for target in result["targets"].values())
    return result


def by_task(tasks: list[str] | None, tuned_scores: list[float], base_scores: list[float]) -> dict | None:
    """Per task (in TASK_TYPES order): its examples, the mean score of model and base, and the paired bootstrap 95%
    CI of the difference; None when the split has no `task` column."""
    if tasks is None:
        return None
    order = {task: index for index, task in enumerate(TASK_TYPES)}
    result = {}
    for task in sorted(set(tasks), key=lambda task: (order.get(task, len(order)), str(task))):
        rows = [index for index, row_task in enumerate(tasks) if row_task == task]
        tuned, base = [tuned_scores[i] for i in rows], [base_scores[i] for i in rows]
        difference = paired_bootstrap(tuned, base)
        result[task] = {
            "examples": len(rows),
            "chrf_pp": sum(tuned) / len(tuned),
            "base_chrf_pp": sum(base) / len(base),
            "difference": difference.estimate,
            "difference_ci95": [difference.low, difference.high],
        }
    return result


def targets(result: dict) -> dict[str, dict]:
    """Each target as `{"target": ">= 0.95", "met": bool}`; `met` is None for a share not measured on this split."""
    compare = {">=": lambda value, bound: value >= bound, "<=": lambda value, bound: value <= bound}
    goals = {
        name: {"target": f"{op} {bound}", "met": None if result[name] is None else compare[op](result[name], bound)}
        for name, (op, bound) in BOUNDS.items()
    }
    for name in METRICS:
        goals[f"{name}_difference"] = {"target": "95% CI above 0", "met": result[f"{name}_difference_ci95"][0] > 0}
    return goals


def print_quality(result: dict) -> None:
    print(f"\nExamples: {result['examples']}")
    met = {name: met_text(target["met"]) for name, target in result["targets"].items()}
    ended = ", ".join(f"{token} {count}" for token, count in result["stop_tokens"].items())
    print(
        f"Stop rate: {result['stop_rate']:.0%} ({ended or 'none'}; base {result['base_stop_rate']:.0%}; "
        f"target >= {MIN_STOP_RATE:.0%}: {met['stop_rate']})"
    )
    print(
        f"Looping answers: {result['looping']} (base {result['base_looping']}; target {MAX_LOOPING}: {met['looping']})"
    )
    for name in METRICS:
        low, high = result[f"{name}_difference_ci95"]
        print(
            f"{name}: {result[name]:.3f} vs base {result[f'base_{name}']:.3f}, difference "
            f"{result[f'{name}_difference']:+.3f} (95% CI {low:+.3f} to {high:+.3f}; target: above 0: "
            f"{met[f'{name}_difference']})"
        )
        if name == "chrf_pp":
            print_by_task(result["chrf_pp_by_task"] or {})
    for name, count in COUNTS.items():
        print(f"{name}, {BEHAVIOUR_LABELS[name]}: {behaviour_line(result, name, count)}")
    if result["question_types_from_gold_answers"]:
        print(f"Question types read off the gold answers for {result['question_types_from_gold_answers']} rows.")
    if result["abbreviations_not_scored"]:
        print(f"Not in the glossary, not scored: {', '.join(result['abbreviations_not_scored'])}.")
    print_verdict(result["targets"])


def print_by_task(by_task: dict) -> None:
    for task, scores in by_task.items():
        low, high = scores["difference_ci95"]
        print(
            f"  {task} ({scores['examples']}): {scores['chrf_pp']:.3f} vs base {scores['base_chrf_pp']:.3f}, "
            f"difference {scores['difference']:+.3f} (95% CI {low:+.3f} to {high:+.3f})"
        )


def print_verdict(goals: dict[str, dict]) -> None:
    missed = [name for name, goal in goals.items() if goal["met"] is False]
    unmeasured = [name for name, goal in goals.items() if goal["met"] is None]
    if not missed and not unmeasured:
        print("All targets met.")
    if missed:
        print(f"Targets NOT met: {', '.join(missed)}.")
    if unmeasured:
        print(f"Targets not measured on this split: {', '.join(unmeasured)}.")


def met_text(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "NOT met"


def behaviour_line(result: dict, name: str, count: str) -> str:
    """`75% (95% CI 60% to 86%) of 40; base 10% (...); target >= 85%: NOT met`, or why it is not measured."""
    if result[name] is None:
        return "not measured: " + ("the split does not label them" if result[count] is None else "none in the split")
    text = f"{percent_ci(result[name], result[f'{name}_ci95'])} of {result[count]}; "
    text += f"base {percent_ci(result[f'base_{name}'], result[f'base_{name}_ci95'])}"
    if name in BOUNDS:
        op, bound = BOUNDS[name]
        text += f"; target {op} {bound:.0%}: {met_text(result['targets'][name]['met'])}"
    return text


def percent_ci(share: float, ci95: list[float]) -> str:
    return f"{share:.0%} (95% CI {ci95[0]:.0%} to {ci95[1]:.0%})"


def run_check(args: argparse.Namespace) -> dict:
    choose_backend(args.backend, args.model)  # a backend that is not there stops the check before any work
    with tempfile.TemporaryDirectory() as tmp:
        dataset = args.dataset or str(export_gold_sample(Path(tmp)))
        rows = load_qa_splits(dataset, "qa", [args.split])[args.split]
        rows = rows.shuffle(seed=0).select(range(min(args.limit, len(rows)))) if args.limit else rows
        generators = set(rows["generator_model"]) if "generator_model" in rows.column_names else set()
        dataset_name, _ = dataset_label(dataset, generators)  # as the card names it, never a path on this machine
    labels = gold_labels(rows, f"{dataset_name} [{args.split}]")  # a bad label stops the check before generating
    questions = list(zip(rows["report_ko"], rows["instruction"], strict=True))
    base = base_of(args.model, args.base)
    answers_of_each, backend, reason = [], args.backend, None
    options = (args.gguf_type, args.slots, args.dtype, args.batch_size)
    for model in (args.model, local_base_for(base) if args.base is None else resolve_model(args.base)):
        generator = local_generator(model, backend, *options, reason=reason)
        answers_of_each.append(cached_answers(model, questions, args.max_new_tokens, generator))
        # the base follows the fine-tuned model's backend, so quality.json names one
        backend, reason = generator.backend, "the base answers as the fine-tuned model did"
    tuned_answers, untuned = answers_of_each
    result = quality(tuned_answers, untuned, labels, Glossary.from_tsv())
    result.update(split=args.split, dataset=dataset_name, base=base, subset=args.limit)
    result["max_new_tokens"] = args.max_new_tokens
    result["generation"] = {"backend": generator.backend, **generator.settings()}
    tasks = labels.tasks or [None] * len(questions)
    answers = [
        {"instruction": q, "task": task, "question_type": kind, "gold": gold}
        | {"answer": t.text, "stopped": t.stopped, "base_answer": b.text}
        for (_, q), task, kind, gold, t, b in zip(
            questions, tasks, labels.question_types, labels.answers, tuned_answers, untuned, strict=True
        )
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
    parser.add_argument(
        "--backend", choices=BACKENDS, default="auto", help="how to generate (see eval/local_answers.py)"
    )
    parser.add_argument(
        "--gguf-type", choices=GGUF_TYPES, default=DEFAULT_GGUF_TYPE, help="llama.cpp: the GGUF's type"
    )
    parser.add_argument("--slots", type=int, default=SLOTS, help="llama.cpp: answers decoded at once")
    parser.add_argument("--batch-size", type=int, default=BATCH_SIZE, help="transformers: questions per generate()")
    parser.add_argument("--limit", type=int, help="answer N rows only, a fixed random subset (seed 0)")
    parser.add_argument(
        "--dtype", default=default_dtype("check"), choices=["float32", "bfloat16"], help="transformers: weights dtype"
    )
    args = parser.parse_args(argv)
    if args.slots < 1 or args.batch_size < 1:
        parser.error(f"--slots {args.slots} --batch-size {args.batch_size}: pass 1 or more.")
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
