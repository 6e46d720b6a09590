"""How fast the demo's local servers answer on this CPU: `transformers serve` against llama.cpp's `llama-server`, the
same model and prompts, side by side.

    python bench/bench_serve.py                                   # embedded:base, 4 rounds of 64 new tokens
    python bench/bench_serve.py --model out/adapters/KEY/merged --rounds 2 --max-tokens 32

Variants, all started at once and then asked in turn (the order rotates each round, so drift in the machine's load
hits each alike): `transformers serve` in float32 (what `make demo` serves without llama.cpp) and in bfloat16 where the
CPU computes it natively (`ko_radiology/hardware.py`); `llama-server` on the model's GGUF Q8_0 (what `make demo`
serves, `space/local_server.py`: the same file, 4 slots) and Q4_K_M where `llama-quantize` is built. Each round sends
every variant the same greedy, streamed question (a report and question from the sample's test split), then 4 at once
(4 visitors).

Figures: TTFT (warm, llama-server's prompt cache off, so each variant reads the whole prompt), decode tokens/s
(tokens after the first over the time from the first piece to the last, counted by the model's tokenizer), one
visitor's aggregate tokens/s (all tokens over the time from the request to the last piece) and 4 visitors' (all their
tokens over the time from the first request to the last piece). The memory-bandwidth bound: decoding a token reads
every weight once (the tied embedding as the output head), so tokens/s <= copy bandwidth / weight bytes, where the
weight bytes are the GGUF's tensor bytes, or the safetensors' parameters x the served dtype's size, and the bandwidth
is the best of 5 copies of a 1 GiB array split over every core (bytes read + written, as STREAM counts them).

Targets: llama-server Q8_0 decodes >= 2.5x the faster transformers serve variant, at >= 60% of its bandwidth bound,
and 4 visitors get >= 2x one visitor's aggregate tokens/s from it. Run it on a quiet machine: the load average before
and after is printed.
"""

import argparse
import json
import os
import re
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.append(str(REPO))  # appended, so PYTHONPATH can name another checkout

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from transformers import AutoTokenizer  # noqa: E402

from ko_radiology import llama_cpp  # noqa: E402
from ko_radiology.hardware import cpu_flags, cpu_model_name, native_bf16  # noqa: E402
from ko_radiology.model_loading import resolve_model  # noqa: E402
from ko_radiology.processes import (  # noqa: E402
    SERVER_START_TIMEOUT_S,
    Service,
    free_port,
    launch_model_server,
    openai_url,
    start,
    stop,
    wait_ready,
)
from ko_radiology.prompts import build_messages  # noqa: E402
from space.examples import sample_examples  # noqa: E402
from space.local_server import export_gguf, gguf_dir_beside, gguf_to_serve, llama_server  # noqa: E402

DECODE_SPEEDUP_TARGET = 2.5
BANDWIDTH_SHARE_TARGET = 0.60
VISITORS = 4
VISITORS_SPEEDUP_TARGET = 2.0
SERVE_CPU_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
"""The flags that decide which kernels run: llama.cpp's (AVX2, AVX-512, VNNI) and torch's bf16 (AVX512-BF16, AMX)."""
DTYPE_BYTES = {"float32": 4, "bfloat16": 2}
COPY_BYTES = 1 << 30
COPY_REPEATS = 5
WARMUP_TOKENS = 8
REQUEST_TIMEOUT_S = 600.0


@dataclass
class Answer:
    """One streamed answer: when it was asked, when its first and last pieces came, its text and token count."""

    asked: float
    first: float
    last: float
    text: str
    tokens: int


@dataclass
class Variant:
    """One server of the model, the name its requests carry, the bytes of weights a token reads, extra request
    fields, and what it answered."""

    name: str
    service: Service
    model: str
    weight_bytes: int
    extra: dict = field(default_factory=dict)
    single: list[Answer] = field(default_factory=list)
    crowds: list[list[Answer]] = field(default_factory=list)


def copy_bandwidth() -> float:
    """Bytes per second read plus written by the best of COPY_REPEATS copies of a 1 GiB array, one slice per core."""
    source = np.ones(COPY_BYTES // 8, dtype=np.float64)
    target = np.zeros_like(source)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    slices = [slice(index * len(source) // cores, (index + 1) * len(source) // cores) for index in range(cores)]
    best = float("inf")
    with ThreadPoolExecutor(cores) as pool:  # numpy lets go of the GIL while it copies
        for _ in range(COPY_REPEATS):
            started = time.perf_counter()
            list(pool.map(lambda part: np.copyto(target[part], source[part]), slices))
            best = min(best, time.perf_counter() - started)
    return 2 * COPY_BYTES / best


def safetensors_parameters(model_dir: Path) -> int:
    """Parameters stored in the folder's safetensors files, read from their headers (tied weights are stored once)."""
    total = 0
    for path in sorted(model_dir.glob("*.safetensors")):
        with path.open("rb") as handle:
            header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
        total += sum(int(np.prod(entry["shape"])) for name, entry in header.items() if name != "__metadata__")
    return total


def gguf_tensor_bytes(gguf: Path) -> int:
    import gguf as gguf_package

    return sum(int(tensor.n_bytes) for tensor in gguf_package.GGUFReader(gguf).tensors)


def stream_answer(variant: Variant, messages: list[dict], max_tokens: int, tokenizer) -> Answer:
    """One greedy streamed chat completion, timed piece by piece."""
    body = {"model": variant.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0, "stream": True}
    url = f"{openai_url(variant.service)}/chat/completions"
    asked, first, last, pieces = time.perf_counter(), None, None, []
    with httpx.stream(
        "POST", url, json={**body, **variant.extra}, timeout=REQUEST_TIMEOUT_S, trust_env=False
    ) as reply:
        reply.raise_for_status()
        for line in reply.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            choices = json.loads(line.removeprefix("data:")).get("choices") or [{}]
            if piece := (choices[0].get("delta") or {}).get("content"):
                last = time.perf_counter()
                first = first or last
                pieces.append(piece)
    if first is None:
        raise RuntimeError(f"{variant.name} streamed no text; see {variant.service.log_path}")
    text = "".join(pieces)
    return Answer(asked, first, last, text, len(tokenizer(text, add_special_tokens=False)["input_ids"]))


def ask_crowd(variant: Variant, prompts: list[list[dict]], max_tokens: int, tokenizer) -> list[Answer]:
    """VISITORS questions sent at once, each on its own connection."""
    with ThreadPoolExecutor(len(prompts)) as pool:
        return list(pool.map(lambda messages: stream_answer(variant, messages, max_tokens, tokenizer), prompts))


def decode_rate(answers: list[Answer]) -> float:
    """Tokens after the first over the time they took, summed over `answers` (short answers weigh less, not more)."""
    seconds = sum(answer.last - answer.first for answer in answers)
    return sum(answer.tokens - 1 for answer in answers) / seconds if seconds > 0 else float("nan")


def aggregate_rate(answers: list[Answer]) -> float:
    return sum(answer.tokens for answer in answers) / (max(a.last for a in answers) - min(a.asked for a in answers))


def start_variants(model_dir: Path, log_dir: Path, work_dir: Path, variants: list[Variant]) -> None:
    """Every server this machine can run for the model, added to `variants` as it starts (so that the caller stops
    whatever started, whatever fails), booting in parallel, then waited for."""
    parameters = safetensors_parameters(model_dir)
    for dtype in ["float32", "bfloat16"] if native_bf16("cpu") else ["float32"]:
        service = launch_model_server(model_dir, log_dir, dtype)
        variants.append(
            Variant(f"transformers serve {dtype}", service, str(model_dir), parameters * DTYPE_BYTES[dtype])
        )
    gguf, how = gguf_to_serve(model_dir, gguf_dir_beside(model_dir))  # the GGUF the demo serves
    if gguf is None:
        print(f"llama-server is not measured: {how}")
    ggufs = {"Q8_0": gguf} if gguf else {}
    if gguf and llama_cpp.binary("llama-quantize").path is not None:
        ggufs["Q4_K_M"] = export_gguf(model_dir, work_dir / f"{model_dir.name}-gguf", "q4_k_m")
    for quant, path in ggufs.items():
        if path is None:
            print(f"llama-server {quant} is not measured: its export failed (see above).")
            continue
        service = llama_server(path, free_port(), log_dir, VISITORS)
        start(service)
        variants.append(Variant(f"llama-server {quant}", service, str(path), gguf_tensor_bytes(path)))
        variants[-1].extra = {"cache_prompt": False}  # every variant reads the whole prompt
    for variant in variants:
        wait_ready(variant.service, SERVER_START_TIMEOUT_S)


def run_rounds(variants: list[Variant], rounds: int, max_tokens: int, tokenizer) -> None:
    """Warm every variant up, then each round: one question to each, then VISITORS at once to each, in rotating
    order."""
    prompts = [build_messages(example.report, example.question) for example in sample_examples()]
    for variant in variants:
        stream_answer(variant, prompts[0], WARMUP_TOKENS, tokenizer)
    for round_index in range(rounds):
        order = variants[round_index % len(variants) :] + variants[: round_index % len(variants)]
        crowd = [prompts[(round_index + offset) % len(prompts)] for offset in range(VISITORS)]
        for variant in order:
            variant.single.append(stream_answer(variant, prompts[round_index % len(prompts)], max_tokens, tokenizer))
        for variant in order:
            variant.crowds.append(ask_crowd(variant, crowd, max_tokens, tokenizer))
        print(f"round {round_index + 1}/{rounds} done", flush=True)


def llama_threads(variants: list[Variant]) -> str:
    """The threads each llama-server says it computes with (its log's `n_threads = N`)."""
    found = {
        variant.name: re.search(r"n_threads = (\d+)", variant.service.log_path.read_text(errors="replace"))
        for variant in variants
        if variant.name.startswith("llama-server")
    }
    return ", ".join(f"{name} {match[1] if match else '?'}" for name, match in found.items()) or "none"


def print_machine(bandwidth: float) -> None:
    import torch

    flags = cpu_flags()
    shown = ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in SERVE_CPU_FLAGS)
    print(f"CPU: {cpu_model_name()}, {os.cpu_count()} cores; {shown}; native bf16: {native_bf16('cpu')}")
    isa = llama_cpp.default_isa()
    built = llama_cpp.bin_dir(isa) / llama_cpp.BUILD_INFO
    level = f"built for {isa} ({llama_cpp.ISA_LEVELS[isa].description})" if built.is_file() else "not built"
    print(f"llama.cpp {llama_cpp.LLAMA_CPP_PYTHON_VERSION}: {level}; torch threads: {torch.get_num_threads()}")
    print(f"copy bandwidth: {bandwidth / 1e9:.1f} GB/s (best of {COPY_REPEATS}, read + written, every core)")
    print(f"load average before: {' / '.join(f'{load:.2f}' for load in os.getloadavg())}")


def summarize(variants: list[Variant], bandwidth: float) -> dict[str, dict[str, float]]:
    """A table of every variant's medians over the rounds; returns them by variant."""
    figures = {}
    print(
        "| variant | weights read per token | TTFT median | decode tokens/s all rounds (min-max) | 1 visitor tokens/s "
        f"| {VISITORS} visitors tokens/s | share of the bandwidth bound |"
    )
    print("|---|---|---|---|---|---|---|")
    for variant in variants:
        decode = [decode_rate([answer]) for answer in variant.single]
        row = {
            "ttft": statistics.median(answer.first - answer.asked for answer in variant.single),
            "decode": decode_rate(variant.single),
            "one": statistics.median(aggregate_rate([answer]) for answer in variant.single),
            "crowd": statistics.median(aggregate_rate(crowd) for crowd in variant.crowds),
        }
        row["bound_share"] = row["decode"] * variant.weight_bytes / bandwidth
        figures[variant.name] = row
        print(
            f"| {variant.name} | {variant.weight_bytes / 1e6:.0f} MB | {row['ttft'] * 1000:.0f} ms "
            f"| {row['decode']:.1f} ({min(decode):.1f}-{max(decode):.1f}) | {row['one']:.1f} | {row['crowd']:.1f} "
            f"| {row['bound_share']:.0%} |"
        )
    reference = variants[0]
    for variant in variants[1:]:
        same = sum(a.text == b.text for a, b in zip(variant.single, reference.single, strict=True))
        print(f"{variant.name}: {same}/{len(variant.single)} answers identical to {reference.name}'s")
    return figures


def target_line(label: str, value: float | None, target: float, as_share: bool = False) -> bool:
    """`label: value (target >= X: met)`, the line bench/run_all.py reads; whether it is not missed."""
    shown_target = f">= {target:.0%}" if as_share else f">= {target}x"
    if value is None:
        print(f"{label}: not measured (target {shown_target})")
        return True
    shown = f"{value:.0%}" if as_share else f"{value:.2f}x"
    print(f"{label}: {shown} (target {shown_target}: {'met' if value >= target else 'NOT met'})")
    return value >= target


def print_targets(figures: dict[str, dict[str, float]]) -> bool:
    """llama-server Q8_0 (what the demo serves) against its three targets; False if one is missed."""
    transformers = max(
        (name for name in figures if name.startswith("transformers")), key=lambda n: figures[n]["decode"]
    )
    llama = figures.get("llama-server Q8_0")
    speedup = llama and llama["decode"] / figures[transformers]["decode"]
    crowd = llama and llama["crowd"] / llama["one"]
    return all(
        [
            target_line(f"llama-server Q8_0 decode / {transformers} decode", speedup, DECODE_SPEEDUP_TARGET),
            target_line(
                "llama-server Q8_0 decode, share of the memory-bandwidth bound",
                llama and llama["bound_share"],
                BANDWIDTH_SHARE_TARGET,
                as_share=True,
            ),
            target_line(
                f"llama-server Q8_0, {VISITORS} visitors / 1 visitor's tokens/s", crowd, VISITORS_SPEEDUP_TARGET
            ),
        ]
    )


def exit_on_sigterm(signum: int, frame) -> None:
    """A timeout's SIGTERM ends the bench as Ctrl-C does: the servers are stopped and the temporary folder removed."""
    raise SystemExit(128 + signum)


def main() -> int:
    signal.signal(signal.SIGTERM, exit_on_sigterm)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded:base", help="a merged model folder or embedded:base")
    parser.add_argument("--rounds", type=int, default=4, help="rounds; each asks every variant, in rotating order")
    parser.add_argument("--max-tokens", type=int, default=64, help="new tokens per answer (greedy)")
    args = parser.parse_args()
    if args.rounds < 1 or args.max_tokens < 2:
        parser.error("--rounds must be at least 1 and --max-tokens at least 2 (decode speed needs a second token).")
    model_dir = Path(resolve_model(args.model)).resolve()
    bandwidth = copy_bandwidth()  # before any server holds memory or cores
    print_machine(bandwidth)
    print(f"model: {model_dir}; {args.rounds} rounds of {args.max_tokens} new tokens")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory(prefix="bench_serve-") as tmp:
        variants: list[Variant] = []
        try:
            start_variants(model_dir, Path(tmp) / "logs", Path(tmp), variants)
            print(f"llama-server threads: {llama_threads(variants)}")
            run_rounds(variants, args.rounds, args.max_tokens, tokenizer)
        finally:
            for variant in variants:
                stop(variant.service)
    figures = summarize(variants, bandwidth)
    met = print_targets(figures)
    print(f"load average after: {' / '.join(f'{load:.2f}' for load in os.getloadavg())}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
