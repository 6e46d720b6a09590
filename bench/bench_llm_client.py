"""Throughput of the shared LLM client against a local stub with added latency; exits 1 if a check fails.

    python bench/bench_llm_client.py                      # 600 RPM, 200 ms latency, 16 in flight, ~60 s in all
    python bench/bench_llm_client.py --rpm 1200 --seconds 20
    python bench/bench_llm_client.py --ceiling-only --compare-with /tmp/old-checkout   # before/after, alternating

Phase 1 runs `run_many` under a requests-per-minute limit and checks, at the stub's socket, that the achieved rate
is at least 99% of the configured one (and, past the first second's burst, not above it by 2%) and that no request
was sent twice; the batch holds duplicates on purpose. Phase 2 runs the same batch again: every answer must come from
the cache. Phase 3 drops the limit and measures per-call latency against the stub's, i.e. the client's own overhead.
Phase 4 is the client's ceiling: calls/s of `run_many` pinned to one core (`taskset -c 0`, its own process) against
a stub that answers at once (pinned to the other core). `--compare-with DIR` runs the same worker with `DIR` first on
PYTHONPATH (another checkout of this repository), alternating with this one, and checks the ratio (>= 0.9).
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

sys.path.append(str(Path(__file__).resolve().parents[1]))  # appended, so PYTHONPATH can name another checkout

from ko_radiology.llm import LLMClient, LLMClientConfig, LLMRequest, cache_key  # noqa: E402

MODEL = "stub-model"


def latency_stub(latency_s: float) -> FastAPI:
    """Answers chat completions after `latency_s`, counting requests per cache key and logging arrival times.

    It runs in its own process (`--serve-stub`), as a real server would, so it does not compete with the client for
    the GIL; `GET /stats` returns the counts and arrival times.
    """
    counts: Counter[str] = Counter()
    arrivals: list[float] = []
    app = FastAPI(openapi_url=None)

    @app.get("/{path:path}")
    async def stats() -> JSONResponse:
        return JSONResponse({"counts": dict(counts), "arrivals": arrivals})

    @app.post("/{path:path}")
    async def complete(request: Request) -> JSONResponse:  # no validation or encoding by FastAPI: the stub stays cheap
        body = json.loads(await request.body())
        key = cache_key(body)
        counts[key] += 1
        arrivals.append(time.monotonic())
        await asyncio.sleep(latency_s)
        prompt_tokens = sum(len(m["content"]) for m in body["messages"]) // 4
        message = {"role": "assistant", "content": f"답 {key[:8]}"}
        return JSONResponse(
            {
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 5, "total_tokens": prompt_tokens + 5},
            }
        )

    return app


def serve_stub(latency_ms: float) -> None:
    from ko_radiology.loopback import LoopbackServer  # here: a --compare-with checkout's worker may predate it

    with LoopbackServer(latency_stub(latency_ms / 1000)) as stub:
        print(stub.port, flush=True)
        threading.Event().wait()


class StubProcess:
    """The stub in a child process; `stats()` reads its counters over HTTP."""

    def __init__(self, latency_ms: float, cpus: str | None = None):
        command = [sys.executable, __file__, "--serve-stub", "--latency-ms", str(latency_ms)]
        command = ["taskset", "-c", cpus, *command] if cpus else command
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        self.base_url = f"http://127.0.0.1:{int(self.process.stdout.readline())}/v1"

    def stats(self) -> tuple[Counter[str], list[float]]:
        data = httpx.get(f"{self.base_url}/stats", timeout=10).json()
        return Counter(data["counts"]), data["arrivals"]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def bench_requests(count: int, prefix: str) -> list[LLMRequest]:
    """`count` unique requests with every tenth one repeated, so in-batch de-duplication is exercised."""
    unique = [
        LLMRequest(
            messages=[{"role": "user", "content": f"{prefix} {i}: 양측 폐야는 깨끗함. No effusion."}], max_tokens=16
        )
        for i in range(count)
    ]
    return unique + unique[::10]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def rate_phase(stub: StubProcess, config: LLMClientConfig, count: int) -> tuple[float, list[float]]:
    """Returns the achieved rate per minute measured at the stub, and the arrival times."""
    outcome = LLMClient(config).run_many(bench_requests(count, "rate"), desc="rate-limited")
    assert outcome.ok, outcome.summary()
    arrivals = stub.stats()[1]
    rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) * 60
    return rate, arrivals


async def timed_calls(client: LLMClient, requests: list[LLMRequest], concurrency: int) -> list[float]:
    """Per-call latency with at most `concurrency` calls outstanding, so the client's semaphore never queues."""
    gate = asyncio.Semaphore(concurrency)

    async def timed(request: LLMRequest) -> float:
        async with gate:
            started = time.perf_counter()
            await client.acomplete(request)
            return time.perf_counter() - started

    try:
        return await asyncio.gather(*(timed(request) for request in requests))
    finally:
        await client.aclose()


def ceiling_worker(base_url: str, calls: int, concurrency: int) -> None:
    """Print calls per wall second and per CPU second of one `run_many` of `calls` unique requests, after a warm-up.

    Calls per CPU second (this process, all threads) is the ceiling on a core of its own; it is what the comparison
    uses, since on a shared machine wall time also counts the time other processes held the core."""
    with tempfile.TemporaryDirectory() as tmp:
        config = LLMClientConfig(
            model=MODEL,
            base_url=base_url,
            api_key_env=None,
            cache_path=f"{tmp}/cache.sqlite",
            max_concurrency=concurrency,
            show_progress=False,
        )
        client = LLMClient(config)
        client.run_many(bench_requests(100, "warm-up"))
        requests = bench_requests(calls, "ceiling")[:calls]
        started, cpu_started = time.perf_counter(), time.process_time()
        outcome = client.run_many(requests)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
        assert outcome.ok, outcome.summary()
    print(f"{calls / elapsed:.1f} {calls / cpu:.1f}")


def ceiling(stub: StubProcess, calls: int, concurrency: int, pythonpath: str | None = None) -> tuple[float, float]:
    """One ceiling run in a fresh process on core 0: (calls per wall second, calls per CPU second); `pythonpath`
    puts another checkout first."""
    command = ["taskset", "-c", "0", sys.executable, __file__, "--ceiling-worker", stub.base_url]
    command += ["--ceiling-calls", str(calls), "--concurrency", str(concurrency)]
    env = {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else None
    wall, cpu = subprocess.run(command, env=env, capture_output=True, text=True, check=True).stdout.split()[-2:]
    return float(wall), float(cpu)


def ceiling_phase(args: argparse.Namespace) -> list[str]:
    """Phase 4; returns its failures. Rounds alternate between the checkouts, so drifting load hits both alike."""
    stub = StubProcess(0.0, cpus="1")
    try:
        this, other = [], []
        for _ in range(args.ceiling_rounds):
            this.append(ceiling(stub, args.ceiling_calls, args.concurrency))
            if args.compare_with:
                other.append(ceiling(stub, args.ceiling_calls, args.concurrency, args.compare_with))
    finally:
        stub.stop()
    print(f"phase 4: ceiling, {args.ceiling_calls} calls, {args.concurrency} in flight, one core, instant stub:")
    print(f"  {describe(this)}")
    if not args.compare_with:
        return []
    ratio = statistics.median(cpu for _, cpu in this) / statistics.median(cpu for _, cpu in other)
    print(f"  {args.compare_with}: {describe(other)}")
    print(f"  this / that, calls per CPU second: {ratio:.2f} (target >= 0.90)")
    return [] if ratio >= 0.9 else [f"ceiling is {ratio:.2f} of {args.compare_with}'s (must be >= 0.90)"]


def describe(rounds: list[tuple[float, float]]) -> str:
    walls, cpus = zip(*rounds, strict=True)
    return (
        f"median {statistics.median(cpus):.0f} calls per CPU second ({', '.join(f'{x:.0f}' for x in cpus)}), "
        f"{statistics.median(walls):.0f} per wall second ({', '.join(f'{x:.0f}' for x in walls)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rpm", type=float, default=600.0, help="configured requests per minute")
    parser.add_argument("--seconds", type=float, default=35.0, help="length of the rate-limited phase")
    parser.add_argument("--latency-ms", type=float, default=200.0, help="stub latency per request")
    parser.add_argument("--concurrency", type=int, default=16, help="max_concurrency of the client")
    parser.add_argument("--ceiling-calls", type=int, default=2000, help="calls per ceiling round")
    parser.add_argument("--ceiling-rounds", type=int, default=3, help="ceiling rounds (per checkout)")
    parser.add_argument("--ceiling-only", action="store_true", help="run phase 4 only")
    parser.add_argument("--compare-with", help="another checkout to run the ceiling with, alternating")
    parser.add_argument("--serve-stub", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ceiling-worker", metavar="BASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_stub:
        serve_stub(args.latency_ms)
        return 0
    if args.ceiling_worker:
        ceiling_worker(args.ceiling_worker, args.ceiling_calls, args.concurrency)
        return 0
    if args.ceiling_only:
        failures = ceiling_phase(args)
        for failure in failures:
            print(f"FAIL: {failure}")
        return 1 if failures else 0

    stub = StubProcess(args.latency_ms)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        config = LLMClientConfig(
            model=MODEL,
            base_url=stub.base_url,
            api_key_env=None,
            cache_path=f"{tmp}/cache.sqlite",
            max_concurrency=args.concurrency,
            requests_per_minute=args.rpm,
            show_progress=False,
        )
        count = int(args.rpm * args.seconds / 60)
        started = time.monotonic()
        rate, arrivals = rate_phase(stub, config, count)
        gaps = [later - earlier for earlier, later in zip(arrivals, arrivals[1:], strict=False)]
        # Steady state: from 2 s in, past the bucket's one-second burst and the jitter of opening connections.
        first = next(i for i, at in enumerate(arrivals) if at >= arrivals[0] + 2.0)
        steady = (len(arrivals) - 1 - first) / (arrivals[-1] - arrivals[first]) * 60
        phase1_s = time.monotonic() - started
        sent_phase1 = sum(stub.stats()[0].values())

        started = time.monotonic()
        rerun = LLMClient(config).run_many(bench_requests(count, "rate"), desc="re-run")
        phase2_s = time.monotonic() - started
        resent = sum(stub.stats()[0].values()) - sent_phase1

        unlimited = LLMClientConfig(**{**vars(config), "requests_per_minute": None})
        overhead_requests = bench_requests(300, "latency")[:300]
        started = time.monotonic()
        latencies = asyncio.run(timed_calls(LLMClient(unlimited), overhead_requests, args.concurrency))
        phase3_s = time.monotonic() - started
    counts = stub.stats()[0]
    stub.stop()

    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    share = rate / args.rpm
    print(f"phase 1: {count} unique requests (+{count // 10 + (count % 10 > 0)} duplicates) in {phase1_s:.1f}s")
    print(f"  achieved rate at the stub: {rate:.1f}/min vs configured {args.rpm:.0f}/min ({share:.1%})")
    print(f"  steady state (from 2 s in, after the one-second burst): {steady:.1f}/min ({steady / args.rpm:.1%})")
    print(
        f"  gaps between arrivals: mean {statistics.mean(gaps) * 1000:.1f} ms, p50 {percentile(gaps, 0.5) * 1000:.1f}"
        f" ms, p95 {percentile(gaps, 0.95) * 1000:.1f} ms, max {max(gaps) * 1000:.1f} ms"
    )
    print(f"  requests sent twice (any phase): {duplicates}")
    print(
        f"phase 2: re-run of the same {len(rerun.results)} requests in {phase2_s:.2f}s: {resent} sent, "
        f"{sum(r.cached for r in rerun.results)} from cache"
    )
    print(
        f"phase 3: 300 calls, no rate limit, {args.concurrency} in flight, stub latency {args.latency_ms:.0f} ms, "
        f"{phase3_s:.1f}s ({300 / phase3_s:.1f} calls/s, ideal {args.concurrency / args.latency_ms * 1000:.1f})"
    )
    print(
        f"  call latency: p50 {percentile(latencies, 0.5) * 1000:.1f} ms, p95 {percentile(latencies, 0.95) * 1000:.1f}"
        f" ms, p99 {percentile(latencies, 0.99) * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms"
    )

    if share < 0.99:
        failures.append(f"achieved rate {share:.1%} of configured is below 99%")
    if steady > args.rpm * 1.02:
        failures.append(f"steady-state rate {steady:.0f}/min exceeds the configured {args.rpm:.0f}/min")
    if duplicates or resent:
        failures.append(f"{duplicates} duplicate and {resent} re-sent requests (must be 0)")
    failures += ceiling_phase(args)
    for failure in failures:
        print(f"FAIL: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
