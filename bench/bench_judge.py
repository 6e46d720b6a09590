"""Judge throughput and tokens: one answer per call versus every model's answer in one call; exits 1 if a check fails.

    python bench/bench_judge.py                       # 24 questions x 4 models, 500 ms judge latency, 3 rounds
    python bench/bench_judge.py --dry-run             # cost of 200 questions x 4 models x 5 criteria, no calls

The judge is the stand-in judge (`eval.stand_in_judge`) in its own process, answering after a fixed latency, so the
numbers measure the call pattern rather than a model. Each round runs both layouts on a fresh cache, alternating
which goes first; samples/s and judge tokens per judged answer come from the client's ledger. Checks: several
answers per call judge at least 2x the samples/s of one per call, with at most 0.6x the tokens per sample (the report
and rubric are sent once per question instead of once per answer).

`--dry-run` prints the client's dry-run estimate (input tokens estimated from characters; output tokens are the
`max_tokens` upper bound) for the original evaluation's size, under list prices of GPT-4-class models.
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx

sys.path.append(str(Path(__file__).resolve().parents[1]))

from eval.calibrate import KNOWN_ANSWERS  # noqa: E402
from ko_radiology.judge import CRITERIA, Judge, JudgeConfig, JudgeItem  # noqa: E402
from ko_radiology.llm import LLMClient, LLMClientConfig  # noqa: E402
from ko_radiology.processes import free_port  # noqa: E402
from ko_radiology.sample_corpus import SAMPLE_DIR, load_gold_translations  # noqa: E402
from ko_radiology.sections import join_sections  # noqa: E402

MODELS = ("gold", "padded_2x", "english_drift", "other_question")
"""Four "models" per question: the gold answer and three known-answer variants, for realistic answer lengths."""
PRICES_PER_1M = {"gpt-4o": (2.50, 10.00), "gpt-4-turbo": (10.0, 30.0), "gpt-4 (2023)": (30.0, 60.0)}
"""USD per million input/output tokens, public list prices at the time of writing; check your provider's."""
TOKENS_PER_JUDGEMENT = 100
"""max_tokens per judged answer: a one-sentence rationale and a score in JSON."""


def questions(count: int) -> list[tuple[str, str, tuple[str, ...]]]:
    translations = load_gold_translations(SAMPLE_DIR)
    rows = [json.loads(line) for line in KNOWN_ANSWERS.read_text("utf-8").splitlines()]
    rows = [row for row in rows if all(m == "gold" or m in row["variants"] for m in MODELS)]
    picked = [rows[i % len(rows)] for i in range(count)]
    return [
        (
            join_sections(translations[row["study_id"]], "ko"),
            f"{row['question']} ({i})",  # distinct prompts past the set's size, so none is a cache hit
            tuple(row["gold"] if m == "gold" else row["variants"][m] for m in MODELS),
        )
        for i, row in enumerate(picked)
    ]


def items(count: int) -> list[JudgeItem]:
    """The gold answer doubles as the reference, so `similarity` has one."""
    return [JudgeItem(report, question, answers, answers[0]) for report, question, answers in questions(count)]


def judge_config(layout: str) -> JudgeConfig:
    per_call = len(MODELS) if layout == "all" else 1
    return JudgeConfig(criterion="accuracy", answers_per_call=layout, max_tokens=TOKENS_PER_JUDGEMENT * per_call)


def start_judge(latency_s: float) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "eval.stand_in_judge", "--port", str(port), "--latency", str(latency_s)]
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process, f"http://127.0.0.1:{port}/v1"
        except httpx.TransportError:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("the stand-in judge did not start within 120 s")


def measure(layout: str, judged: list[JudgeItem], base_url: str, concurrency: int) -> tuple[float, float]:
    """(judged samples per second, judge tokens per judged sample) of one run on a fresh cache."""
    with tempfile.TemporaryDirectory() as tmp:
        config = LLMClientConfig(
            model="stand-in", base_url=base_url, api_key_env=None, cache_path=f"{tmp}/c.sqlite",
            max_concurrency=concurrency, show_progress=False, data_provenance="synthetic",
        )  # fmt: skip
        with LLMClient(config) as client:
            start = time.perf_counter()
            outcome = Judge(client, judge_config(layout)).run(judged)
            elapsed = time.perf_counter() - start
            total = client.ledger(run_only=True).total()
    samples = sum(score is not None for item in outcome.judgements for score in (j.score for j in item))
    if samples != len(judged) * len(MODELS):
        raise RuntimeError(f"{layout}: {samples} of {len(judged) * len(MODELS)} answers judged")
    return samples / elapsed, (total.input_tokens + total.output_tokens) / samples


def throughput(args: argparse.Namespace) -> bool:
    judged = items(args.questions)
    process, base_url = start_judge(args.latency)
    results: dict[str, list[tuple[float, float]]] = {"one": [], "all": []}
    try:
        for layout in ("one", "all"):  # warm-up, not counted: first connections, the stand-in's morpheme cache
            measure(layout, judged, base_url, args.concurrency)
        for round_number in range(args.rounds):
            order = ("one", "all") if round_number % 2 == 0 else ("all", "one")
            for layout in order:
                results[layout].append(measure(layout, judged, base_url, args.concurrency))
    finally:
        process.terminate()
        process.wait(timeout=10)
    rate = {layout: statistics.median(r for r, _ in runs) for layout, runs in results.items()}
    tokens = {layout: statistics.median(t for _, t in runs) for layout, runs in results.items()}
    print(f"{args.questions} questions x {len(MODELS)} answers, judge latency {args.latency * 1000:.0f} ms, "
          f"{args.concurrency} in flight, {args.rounds} alternating rounds (medians):")  # fmt: skip
    for layout, label in (("one", "one answer per call"), ("all", f"{len(MODELS)} answers per call")):
        runs = ", ".join(f"{r:.1f}" for r, _ in results[layout])
        print(f"  {label:22s} {rate[layout]:7.1f} samples/s ({runs})  {tokens[layout]:7.0f} judge tokens/sample")
    speedup, token_ratio = rate["all"] / rate["one"], tokens["all"] / tokens["one"]
    checks = [
        (speedup >= 2.0, f"several per call: {speedup:.2f}x samples/s (target >= 2x)"),
        (token_ratio <= 0.6, f"several per call: {token_ratio:.2f}x tokens/sample (target <= 0.6x)"),
    ]
    for ok, line in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    if args.json:
        layouts = (("one", "1 answer per call"), ("all", f"{len(MODELS)} answers per call"))
        figures = [
            {"figure": f"judge samples/s, {label}", "value": round(rate[layout], 1), "unit": "samples/s",
             "target": "", "met": None}
            for layout, label in layouts
        ] + [
            {"figure": f"judge tokens/sample, {label}", "value": round(tokens[layout]), "unit": "tokens",
             "target": "", "met": None}
            for layout, label in layouts
        ] + [
            {"figure": "samples/s, several vs one per call", "value": round(speedup, 2), "unit": "x",
             "target": ">= 2x", "met": checks[0][0]},
            {"figure": "judge tokens/sample, several vs one per call", "value": round(token_ratio, 2), "unit": "x",
             "target": "<= 0.6x", "met": checks[1][0]},
        ]  # fmt: skip
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return all(ok for ok, _ in checks)


def dry_run(args: argparse.Namespace) -> None:
    """Cost of the original's evaluation size for each layout and price, live and through the Batch API."""
    judged = items(args.dry_run_questions)
    print(f"{args.dry_run_questions} questions x {len(MODELS)} models x {len(CRITERIA)} criteria "
          f"(client dry run: input tokens estimated from characters, output = max_tokens upper bound):")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("one", "all"):
            calls = input_tokens = output_tokens = 0
            for criterion in CRITERIA:
                config = LLMClientConfig(model="gpt-4-class", api_key_env=None, cache_path=f"{tmp}/c.sqlite")
                with LLMClient(config) as client:
                    estimate = Judge(client, replace(judge_config(layout), criterion=criterion)).dry_run(judged)
                calls += estimate.to_send
                input_tokens += estimate.est_input_tokens
                output_tokens += estimate.est_output_tokens
            print(f"  {layout:3s} per call: {calls:,} calls, {input_tokens:,} input + {output_tokens:,} output tokens")
            for name, (price_in, price_out) in PRICES_PER_1M.items():
                cost = (input_tokens * price_in + output_tokens * price_out) / 1e6
                prices = f"${price_in:.2f}/${price_out:.2f} per 1M"
                print(f"      {name:13s} ({prices}): ${cost:8,.2f} live, ${cost / 2:8,.2f} through the Batch API")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--questions", type=int, default=24)
    parser.add_argument("--latency", type=float, default=0.5, help="seconds the judge takes per call")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="print the cost estimate only; send nothing")
    parser.add_argument("--dry-run-questions", type=int, default=200)
    parser.add_argument("--json", help="also write the figures here (bench/run_all.py reads them)")
    args = parser.parse_args()
    if args.dry_run:
        dry_run(args)
        return 0
    return 0 if throughput(args) else 1


if __name__ == "__main__":
    raise SystemExit(main())
