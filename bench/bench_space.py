"""What the Space costs on top of the model server: time to first token (TTFT) and tokens/s through the app
(gradio_client, as a browser tab) versus the same request straight to the server, then 4 visitors at once.

    python bench/bench_space.py [--model base|tiny] [--rounds 8] [--max-new-tokens 64]

One `transformers serve` of the embedded base (Gemma 3 270M, the model the demo serves; `--model tiny` for the random
two-layer test model) and one `python space/app.py` in front of it, both on loopback. The app's cost is a fixed few
tens of milliseconds, so it is measured against a real model's TTFT, not a toy's. Each round
runs both paths in alternating order with the same greedy request (same messages, same parameters, same answer), so
drift in machine load hits both. Targets: the app adds at most 10% to TTFT and loses at most 5% of tokens/s; 4
simultaneous visitors are all served, in queue order. The machine is shared: the numbers carry its load average.
"""

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # appended, so PYTHONPATH can name another checkout

import httpx  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from ko_radiology.embedded_models import model_path  # noqa: E402
from ko_radiology.hardware import cpu_model_name  # noqa: E402
from ko_radiology.processes import (  # noqa: E402
    SERVER_START_TIMEOUT_S,
    free_port,
    launch_model_server,
    openai_url,
    start,
    stop,
    wait_ready,
)
from ko_radiology.prompts import SYSTEM_PROMPT, build_messages  # noqa: E402
from space.backends import EndpointBackend  # noqa: E402
from space.config import GenerationSettings, SpaceConfig  # noqa: E402
from space.demo import APP_START_TIMEOUT_S, space_app  # noqa: E402
from space.examples import sample_examples  # noqa: E402
from space.visitors import answers, ask, client, visitors_in_queue  # noqa: E402

TTFT_TARGET = 0.10
TOKENS_PER_S_TARGET = 0.05
QUESTION = "이 판독문의 결론을 쉽게 설명해 주세요."


@dataclass
class Timing:
    ttft_s: float
    tokens_per_s: float
    answer: str


def direct(backend: EndpointBackend, report: str, max_new_tokens: int, tokenizer) -> Timing:
    """Straight to the server with the client the app itself uses (`ko_radiology.llm.StreamingClient`)."""
    settings = GenerationSettings(max_new_tokens, temperature=0.0, top_p=0.9, repetition_penalty=1.0)
    start = time.perf_counter()
    first = last = None
    answer = ""
    for piece in backend.stream(build_messages(report, QUESTION), settings):
        last = time.perf_counter()
        first = first or last
        answer += piece
    return _timing(start, first, last, answer, tokenizer)


def through_app_gradio_client(url: str, report: str, max_new_tokens: int, tokenizer) -> Timing:
    visitor = client(url)  # a new visitor (session) each time, so the prompt is a first turn like `direct`'s
    start = time.perf_counter()
    first = last = None
    answer = ""
    for output in ask(visitor, QUESTION, report, max_new_tokens):
        if answers(output[0]) and answers(output[0])[-1]:
            last = time.perf_counter()
            first = first or last
            answer = answers(output[0])[-1]
    return _timing(start, first, last, answer, tokenizer)


def through_app_sse(url: str, report: str, max_new_tokens: int, tokenizer) -> Timing:
    """The app's own cost, as a browser pays it: Gradio's queue protocol (join, then server-sent events) over one
    HTTP connection, without gradio_client's polling threads. Outputs after the first are diffs; the final event
    carries the whole answer."""
    inputs = [QUESTION, report, None, SYSTEM_PROMPT, max_new_tokens, 0.0, 0.9, 1.0]  # None: the session's gr.State
    session = uuid.uuid4().hex  # a new visitor, so the prompt is a first turn like `direct`'s
    body = {"data": inputs, "fn_index": _ask_fn_index(url), "session_hash": session, "event_data": None}
    with httpx.Client(base_url=f"{url.rstrip('/')}/gradio_api", timeout=120) as http:
        start = time.perf_counter()
        first = last = None
        http.post("/queue/join", json=body).raise_for_status()
        with http.stream("GET", "/queue/data", params={"session_hash": session}) as events:
            for line in events.iter_lines():
                message = json.loads(line[5:]) if line.startswith("data:") else {}
                if message.get("msg") == "process_generating":
                    last = time.perf_counter()
                    first = first or last
                elif message.get("msg") == "process_completed":
                    answer = answers(message["output"]["data"][0])[-1]
                    break
    return _timing(start, first, last, answer, tokenizer)


@functools.cache
def _ask_fn_index(url: str) -> int:
    config = httpx.get(f"{url.rstrip('/')}/config", timeout=30).json()
    return next(dep["id"] for dep in config["dependencies"] if dep.get("api_name") == "ask")


def _timing(start: float, first: float, last: float, answer: str, tokenizer) -> Timing:
    tokens = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
    return Timing(first - start, (tokens - 1) / (last - first) if last > first else float("nan"), answer)


def compare(url: str, backend: EndpointBackend, report: str, rounds: int, max_new_tokens: int, tokenizer) -> list:
    runs = {"direct": lambda: direct(backend, report, max_new_tokens, tokenizer)}
    runs["app"] = lambda: through_app_sse(url, report, max_new_tokens, tokenizer)
    runs["app_gradio_client"] = lambda: through_app_gradio_client(url, report, max_new_tokens, tokenizer)
    for run in runs.values():  # warm-up: first requests pay for lazy imports and caches
        run()
    timings: dict[str, list[Timing]] = {name: [] for name in runs}
    for round_index in range(rounds):
        order = list(runs)[round_index % len(runs) :] + list(runs)[: round_index % len(runs)]
        for name in order:
            timings[name].append(runs[name]())
    if len({timing.answer.strip() for timings_ in timings.values() for timing in timings_}) != 1:
        print("note: the answers differ between runs, so tokens/s compares different lengths")
    ttft = {name: statistics.median(t.ttft_s for t in values) for name, values in timings.items()}
    rate = {name: statistics.median(t.tokens_per_s for t in values) for name, values in timings.items()}
    print(f"{'path':<20}{'TTFT median (ms)':>18}{'tokens/s median':>18}   ({rounds} rounds, rotating order)")
    for name in runs:
        print(f"{name:<20}{ttft[name] * 1000:>18.1f}{rate[name]:>18.1f}")
    added_ttft, lost_rate = ttft["app"] / ttft["direct"] - 1, 1 - rate["app"] / rate["direct"]
    return [
        figure("TTFT direct to the server", round(ttft["direct"] * 1000, 1), "ms", "reference", None),
        figure("TTFT through the app", round(ttft["app"] * 1000, 1), "ms", "reference", None),
        figure(
            "TTFT the app adds", round(added_ttft * 100, 1), "%", f"<= {TTFT_TARGET:.0%}", added_ttft <= TTFT_TARGET
        ),
        figure("tokens/s direct to the server", round(rate["direct"], 1), "tokens/s", "reference", None),
        figure("tokens/s through the app", round(rate["app"], 1), "tokens/s", "reference", None),
        figure(
            "tokens/s the app loses",
            round(lost_rate * 100, 1),
            "%",
            f"<= {TOKENS_PER_S_TARGET:.0%}",
            lost_rate <= TOKENS_PER_S_TARGET,
        ),
        figure(
            "TTFT gradio_client adds on top", round((ttft["app_gradio_client"] - ttft["app"]) * 1000), "ms", "-", None
        ),
    ]


def queue_order(url: str, report: str, max_new_tokens: int) -> list:
    visits = visitors_in_queue(url, 4, report, max_new_tokens)
    served = sum(visit.done_at is not None and bool(visit.answer) for visit in visits)
    order = sorted(range(len(visits)), key=lambda index: visits[index].first_token_at or float("inf"))
    return [
        figure("simultaneous visitors served", f"{served}/4", "", "4/4", served == 4),
        figure("order they were served in", ",".join(map(str, order)), "", "0,1,2,3", order == [0, 1, 2, 3]),
    ]


def figure(name: str, value, unit: str, target: str, met: bool | None) -> dict:
    """One row of `bench/RESULTS.md` (`bench/run_all.py`), printed as it is measured."""
    verdict = {True: "", False: "  <- MISSED", None: ""}[met]
    print(f"{name}: {value} {unit} (target {target}){verdict}")
    return {"figure": name, "value": value, "unit": unit, "target": target, "met": met}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=["base", "tiny"], default="base", help="embedded model to serve")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--json", type=Path, help="also write the figures here (for bench/run_all.py)")
    args = parser.parse_args()
    model = str(model_path(args.model))
    load = os.getloadavg()[0]
    print(f"CPU: {cpu_model_name()}, {os.cpu_count()} cores; load average before: {load:.1f}; model: {model}")
    report = sample_examples()[0].report
    log_dir = Path(tempfile.mkdtemp(prefix="bench_space-"))
    server = launch_model_server(model, log_dir)
    app = space_app(openai_url(server), model, free_port(), log_dir)  # `python space/app.py`, as `make demo` runs it
    app.env["KO_RADIOLOGY_CONCURRENCY_LIMIT"] = "1"
    try:
        wait_ready(server, SERVER_START_TIMEOUT_S)
        start(app)
        wait_ready(app, APP_START_TIMEOUT_S)
        backend = EndpointBackend(SpaceConfig(endpoint=openai_url(server), model=model))
        tokenizer = AutoTokenizer.from_pretrained(model)
        figures = compare(app.ready_url, backend, report, args.rounds, args.max_new_tokens, tokenizer)
        figures += queue_order(app.ready_url, report, args.max_new_tokens)
    finally:
        stop(app)
        stop(server)
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0 if all(row["met"] is not False for row in figures) else 1


if __name__ == "__main__":
    sys.exit(main())
