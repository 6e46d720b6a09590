"""How fast `eval.check` and `eval.compare` generate, per backend and setting, and whether the faster paths give the
same greedy answers (issue 20: the check at most a third of today's time).

    python bench/bench_check_generation.py            # the base, 20 test questions, 2 rounds (what make bench runs)
    python bench/bench_check_generation.py --models out/adapters/KEY/adapter embedded:base   # as a check answers
    python bench/bench_check_generation.py --questions 8 --rounds 1 --transformers bfloat16:8 --llama-cpp q8_0:8

The questions are whole reports of the shipped sample's test split (every question about each, reports in a fixed
random order, seed 0, until `--questions` are reached: a check asks about 10 per report, which llama.cpp's per-slot
prompt cache uses), in the order the answer cache sends them. Every model in `--models` answers them all, one after
the other, as `eval.check` has the fine-tuned model and its base answer (the base never stops by itself: every one of
its answers is `--max-new-tokens` long, the slow half of every check). Each setting goes through the answer cache's
generators without the cache (`ko_radiology.answer_cache.TransformersGenerator`,
`ko_radiology.llama_cpp_answers.LlamaCppGenerator`), timed from loading the model (transformers) or starting
llama-server (llama.cpp) to the last answer; the GGUFs are exported beforehand, untimed (once per model, as
`eval/local_answers.py` does). The settings alternate, `--rounds` times; the times are their means. Printed per
setting: wall time, generated tokens/s, CPU seconds (this process and the llama-server it stopped: less distorted than
wall time where other work shares the cores, with the load average to say how much), the speed-up over today's check
(transformers in `eval.check`'s dtype, batches of 8), and how many answers (of the first round) are identical to the
reference of the same precision (transformers float32 at batch 8 for f32 and Q8_0 GGUFs, transformers bfloat16 at
batch 8 for bf16 GGUFs and larger bf16 batches). A quantized GGUF's answers are not expected identical; its chrF++
against the gold answers is compared with the f32 GGUF's, with a paired bootstrap 95% CI of the difference (target:
the CI includes 0). Target (issue 20): the fastest setting at least 3x today's.
"""

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ko_radiology.cpu_blas import load_mkl_vendor_shim  # noqa: E402

load_mkl_vendor_shim()  # as eval.check does, before torch (ko_radiology/cpu_blas.py)

from eval.check import export_gold_sample  # noqa: E402
from eval.local_answers import exported_gguf  # noqa: E402
from ko_radiology import llama_cpp  # noqa: E402
from ko_radiology.answer_cache import TransformersGenerator  # noqa: E402
from ko_radiology.dataset_folders import load_qa_splits  # noqa: E402
from ko_radiology.generation import Answer, is_adapter  # noqa: E402
from ko_radiology.hardware import cpu_flags, cpu_model_name, default_dtype  # noqa: E402
from ko_radiology.llama_cpp_answers import LlamaCppGenerator  # noqa: E402
from ko_radiology.model_loading import resolve_model  # noqa: E402
from ko_radiology.reference_metrics import chrf_pp_scores  # noqa: E402
from ko_radiology.statistics import paired_bootstrap  # noqa: E402

TARGET_SPEEDUP = 3.0
FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")
REFERENCE_OF = {"f32": "float32", "q8_0": "float32", "bf16": "bfloat16", "float32": "float32", "bfloat16": "bfloat16"}
"""Which transformers dtype (at batch 8) a setting's answers are compared with: the one of the same precision."""


def test_questions(count: int) -> tuple[list[tuple[str, str]], list[str]]:
    """At least `count` test questions, every question of each report taken (a check asks several per report, which
    llama.cpp's per-slot prompt cache uses), reports in a fixed random order (seed 0); and their gold answers."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = load_qa_splits(str(export_gold_sample(Path(tmp))), "qa", ["test"])["test"]
    reports = list(dict.fromkeys(rows["report_ko"]))
    random.Random(0).shuffle(reports)
    chosen: list[int] = []
    for report in reports:
        if len(chosen) >= count:
            break
        chosen += [index for index, text in enumerate(rows["report_ko"]) if text == report]
    chosen.sort(key=lambda index: len(rows["report_ko"][index] + rows["instruction"][index]))  # the cache's order
    rows = rows.select(chosen)
    return list(zip(rows["report_ko"], rows["instruction"], strict=True)), list(rows["answer"])


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (llama-server, once stopped)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(generator, paths: list[str], questions: list[tuple[str, str]], max_new_tokens: int) -> tuple:
    """Wall seconds, CPU seconds and the answers of one setting: every model's, one after the other, as a check
    answers with the fine-tuned model and its base."""
    answers: list[Answer] = []
    start, cpu_start = time.monotonic(), cpu_seconds()
    for path in paths:
        answered: dict[int, Answer] = {}
        generator.generate(path, questions, max_new_tokens, answered.__setitem__)
        answers += [answered[i] for i in range(len(questions))]
    return time.monotonic() - start, cpu_seconds() - cpu_start, answers


def settings(args: argparse.Namespace) -> list[tuple[str, object]]:
    """(label, generator) per setting asked for, transformers first: their float32 and bfloat16 at batch 8 are the
    references."""
    found = []
    for item in args.transformers.split(",") if args.transformers else []:
        dtype, batch = item.split(":")
        found.append((f"transformers {dtype} batch {batch}", TransformersGenerator(dtype, int(batch))))
    for item in args.llama_cpp.split(",") if args.llama_cpp else []:
        gguf_type, slots = item.split(":")
        found.append((f"llama.cpp {gguf_type} {slots} slots", LlamaCppGenerator(exported_gguf, gguf_type, int(slots))))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="+", default=["embedded:base"], help="the models that answer (a check: adapter, base)"
    )
    parser.add_argument("--questions", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument(
        "--transformers",
        default=",".join(dict.fromkeys([f"{default_dtype('check')}:8", "float32:8", f"{default_dtype('check')}:16"])),
        help="DTYPE:BATCH settings, comma-separated ('' for none); default: today's, float32 and a batch of 16",
    )
    parser.add_argument(
        "--llama-cpp",
        default="f32:8,q8_0:8",
        help="GGUF_TYPE:SLOTS settings, comma-separated ('' for none)",
    )
    parser.add_argument("--rounds", type=int, default=2, help="times every setting runs, alternating")
    parser.add_argument("--answers-out", type=Path, help="write every setting's answers here (JSON)")
    parser.add_argument("--json", type=Path, help="write the figures here (bench/run_all.py)")
    args = parser.parse_args(argv)

    flags = cpu_flags()
    listed = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in FLAGS)
    print(f"CPU: {cpu_model_name()}; flags: {listed}")
    today = f"transformers {default_dtype('check')} batch 8"
    print(f"Today's check: {today} (eval.check's dtype here)")
    paths = [model if is_adapter(model) else resolve_model(model) for model in args.models]
    questions, golds = test_questions(args.questions)
    chosen = settings(args)
    if any(isinstance(generator, LlamaCppGenerator) for _, generator in chosen):
        if (server := llama_cpp.binary("llama-server")).path is None:
            parser.error(f"the llama.cpp settings need llama-server: {server.reason} (or pass --llama-cpp '')")
        for gguf_type in {generator.gguf_type for _, generator in chosen if isinstance(generator, LlamaCppGenerator)}:
            for path in paths:
                exported_gguf(path, gguf_type)  # untimed: once per model
    print(f"{len(questions)} questions x {args.max_new_tokens} new tokens with {', '.join(paths)}", flush=True)

    results: dict[str, tuple[float, float, list[Answer]]] = {}
    for round_number in range(1, args.rounds + 1):  # the settings alternate, round after round
        for label, generator in chosen:
            load_before = os.getloadavg()[0]
            seconds, cpu, answers = timed(generator, paths, questions, args.max_new_tokens)
            tokens = sum(answer.num_tokens for answer in answers)
            load = f"load {load_before:.1f} before, {os.getloadavg()[0]:.1f} after"  # this run adds about 2
            print(
                f"round {round_number}, {label}: {seconds:.1f} s, {tokens} tokens, {tokens / seconds:.1f} tokens/s; "
                f"{cpu:.0f} CPU s, {tokens / cpu:.1f} tokens per CPU s ({load})",
                flush=True,
            )
            earlier = results.get(label, (0.0, 0.0, answers))
            results[label] = (earlier[0] + seconds, earlier[1] + cpu, earlier[2])  # the first round's answers
    results = {
        label: (seconds / args.rounds, cpu / args.rounds, answers)
        for label, (seconds, cpu, answers) in results.items()
    }

    figures = report(results, golds * len(paths), today)
    if args.answers_out:
        texts = {label: [answer.__dict__ for answer in answers] for label, (*_, answers) in results.items()}
        args.answers_out.write_text(json.dumps(texts, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    return 0 if all(figure["met"] is not False for figure in figures) else 1


def report(results: dict[str, tuple[float, float, list[Answer]]], golds: list[str], today: str) -> list[dict]:
    """Print and return, per setting, its speed-up over today's check (wall time, and CPU time, which a machine busy
    with other work distorts less) and its agreement with its reference."""
    figures = []
    baseline = results.get(today)
    for label, (seconds, cpu, answers) in results.items():
        tokens = sum(answer.num_tokens for answer in answers)
        figures.append({"figure": f"{label} tokens/s", "value": round(tokens / seconds, 1), "unit": "tokens/s"})
        figures[-1] |= {"target": "", "met": None}
        reference = results.get(f"transformers {REFERENCE_OF[label.split()[1]]} batch 8")
        quantized = label.split()[1] == "q8_0"
        if baseline and label != today:
            speedup = baseline[0] / seconds
            print(f"{label} / {today}: {speedup:.2f}x wall time, {baseline[1] / cpu:.2f}x CPU time")
            figures.append({"figure": f"{label} speed-up", "value": round(speedup, 2), "unit": "x"})
            figures[-1] |= {"target": "", "met": None}
        if reference and reference[2] is not answers:
            same = sum(a.text == b.text for a, b in zip(answers, reference[2], strict=True))
            target = "" if quantized else f"= {len(answers)}"
            verdict = f"; target {target}: {'met' if same == len(answers) else 'NOT met'}" if target else ""
            print(f"{label}: {same} of {len(answers)} answers identical to {reference_label(label)}{verdict}")
            figures.append({"figure": f"{label} identical answers", "value": same, "unit": f"of {len(answers)}"})
            figures[-1] |= {"target": target, "met": same == len(answers) if target else None}
        if quantized and (unquantized := results.get(label.replace("q8_0", "f32"))):
            figures.append(quality_difference(label, answers, unquantized[2], golds))
    if baseline and len(results) > 1:
        figures.append(fastest_speedup(results, today))
    return figures


def fastest_speedup(results: dict[str, tuple[float, float, list[Answer]]], today: str) -> dict:
    """The issue's target: the fastest setting (a quantized one counts where its quality holds) against today's."""
    fastest = min((label for label in results if label != today), key=lambda label: results[label][0])
    speedup = results[today][0] / results[fastest][0]
    met = speedup >= TARGET_SPEEDUP
    verdict = "met" if met else "NOT met"
    print(f"fastest: {fastest}, {speedup:.2f}x today's (target >= {TARGET_SPEEDUP:.0f}x: {verdict})")
    return {"figure": f"fastest ({fastest}) speed-up", "value": round(speedup, 2), "unit": "x"} | {
        "target": f">= {TARGET_SPEEDUP:.0f}x",
        "met": met,
    }


def reference_label(label: str) -> str:
    return f"transformers {REFERENCE_OF[label.split()[1]]} batch 8"


def quality_difference(label: str, answers: list[Answer], unquantized: list[Answer], golds: list[str]) -> dict:
    """chrF++ against the gold answers, quantized minus unquantized, with its paired bootstrap 95% CI."""
    difference = paired_bootstrap(
        chrf_pp_scores([a.text for a in answers], golds), chrf_pp_scores([a.text for a in unquantized], golds)
    )
    met = difference.low <= 0 <= difference.high
    print(
        f"{label} chrF++ minus f32's: {difference.estimate:+.3f} (95% CI {difference.low:+.3f} to "
        f"{difference.high:+.3f}; target CI includes 0: {'met' if met else 'NOT met'})"
    )
    return {"figure": f"{label} chrF++ - f32", "value": round(difference.estimate, 4), "unit": "", "met": met} | {
        "target": "95% CI includes 0"
    }


if __name__ == "__main__":
    sys.exit(main())
