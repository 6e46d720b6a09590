"""The shared LLM client against a real `transformers serve`, behind a real fault-injecting proxy.

Every network claim is checked at the proxy's socket: retries happen, Retry-After is waited out, a second run and a
resume after `kill -9` send nothing that was already answered, and the ledger adds up to what was sent.
"""

import asyncio
import email.utils
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ko_radiology.data_use import DataUseError, check_data_use
from ko_radiology.llm_cache import cache_key
from ko_radiology.llm_client import (
    LLMClient,
    LLMClientConfig,
    LLMRequest,
    NonRetryableError,
    RateLimiter,
    RetriesExhaustedError,
    parse_retry_after,
)
from tests.batch_simulator import simulate_openai_batch
from tests.fault_proxy import Fault, FaultProxy

REPO_ROOT = Path(__file__).resolve().parents[1]
MAX_TOKENS = 3


@pytest.fixture
def proxy(tiny_server):
    with FaultProxy(tiny_server.base_url) as running:
        yield running


def make_client(tmp_path: Path, base_url: str, model: str, **overrides) -> LLMClient:
    settings = dict(
        base_url=base_url,
        model=model,
        api_key_env=None,
        cache_path=str(tmp_path / "cache.sqlite"),
        show_progress=False,
        backoff_base_s=0.05,
        backoff_max_s=0.2,
        timeout_s=5.0,
    )
    return LLMClient(LLMClientConfig(**{**settings, **overrides}))


def report_requests(count: int, prefix: str = "report") -> list[LLMRequest]:
    return [
        LLMRequest(
            messages=[{"role": "user", "content": f"{prefix} {i}: no acute cardiopulmonary process."}],
            max_tokens=MAX_TOKENS,
            seed=0,
        )
        for i in range(count)
    ]


@pytest.fixture
def client(tmp_path, proxy, tiny_server):
    llm = make_client(tmp_path, proxy.base_url, tiny_server.model)
    yield llm
    llm.close()


@pytest.mark.parametrize(
    ("overrides", "field_name"),
    [
        ({"model": ""}, "model"),
        ({"base_url": "127.0.0.1:8000"}, "base_url"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"input_price_per_1m": -1.0}, "input_price_per_1m"),
        ({"batch_price_factor": 2.0}, "batch_price_factor"),
        ({"allowed_hosts": ["gpu box"]}, "allowed_hosts"),
    ],
)
def test_config_names_the_bad_field(overrides, field_name):
    with pytest.raises(ValueError, match=field_name):
        LLMClientConfig(**{"model": "m", **overrides})


def test_parse_retry_after_forms():
    now = 1_000_000.0
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"Retry-After": email.utils.formatdate(now + 7, usegmt=True)}, now=now) == 7.0
    assert parse_retry_after({"Retry-After": "soon"}) is None
    assert parse_retry_after({}) is None


def test_token_bucket_charges_estimates_and_refunds_the_difference():
    async def timed_acquires() -> float:
        limiter, lock = RateLimiter(None, tokens_per_minute=600), asyncio.Lock()  # 10 tokens/s, holds 10
        started = time.monotonic()
        await limiter.acquire(10, lock)
        limiter.reconcile(estimated=10, actual=5)  # 5 come back at once
        await limiter.acquire(5, lock)
        free = time.monotonic() - started
        await limiter.acquire(5, lock)  # empty now: waits ~0.5 s
        return free, time.monotonic() - started

    free, total = asyncio.run(timed_acquires())
    assert free < 0.1 and total >= 0.45


@pytest.mark.parametrize(
    "url", ["http://localhost:8000/v1", "http://127.0.0.1:8000/v1", "http://127.8.9.10/v1", "http://[::1]:8000/v1"]
)
def test_data_use_guard_allows_loopback(url):
    check_data_use(url, credentialed=True)


def test_data_use_guard_refuses_a_remote_host_with_the_physionet_message():
    with pytest.raises(DataUseError) as error:
        check_data_use("https://api.openai.com/v1", credentialed=True)
    message = str(error.value)
    for expected in (
        "credentialed",
        "'api.openai.com'",
        "physionet.org",
        "--allow-remote-endpoint",
        "retains no data",
    ):
        assert expected in message
    with pytest.raises(DataUseError, match="missing: --no-retention-confirmed"):
        check_data_use("https://api.openai.com/v1", credentialed=True, allow_remote_endpoint=True)


def test_data_use_guard_allows_remote_with_both_flags_or_public_text():
    url = "https://example-resource.openai.azure.com/openai/v1"
    check_data_use(url, credentialed=True, allow_remote_endpoint=True, no_retention_confirmed=True)
    check_data_use(url, credentialed=False)


def test_data_use_guard_extra_hosts_match_exactly():
    extra = ["gpu-box.lan", "10.0.0.0/8"]
    check_data_use("http://gpu-box.lan:8000/v1", credentialed=True, allowed_hosts=extra)
    check_data_use("http://10.1.2.3:8000/v1", credentialed=True, allowed_hosts=extra)
    for lookalike in ("http://127.0.0.1.evil.example/v1", "http://localhost.evil.example/v1", "http://11.0.0.1/v1"):
        with pytest.raises(DataUseError):
            check_data_use(lookalike, credentialed=True, allowed_hosts=extra)


def test_client_refuses_a_remote_endpoint_before_opening_anything(tmp_path):
    config = LLMClientConfig(
        model="gpt-4o-mini", base_url="https://api.openai.com/v1", cache_path=str(tmp_path / "never.sqlite")
    )
    with pytest.raises(DataUseError):
        LLMClient(config)
    assert not (tmp_path / "never.sqlite").exists()


def test_complete_returns_text_and_usage_then_answers_from_cache(client, proxy):
    request = report_requests(1)[0]
    first = client.complete(request)
    second = client.complete(request)
    assert isinstance(first.text, str) and first.finish_reason in ("length", "stop")
    assert first.input_tokens > 0 and 0 < first.output_tokens <= MAX_TOKENS
    assert not first.cached and second.cached and second.text == first.text
    assert len(proxy.forwarded) == 1
    total = client.ledger().total()
    assert (total.sent, total.cached, total.output_tokens) == (1, 1, first.output_tokens)


def test_retries_every_transient_fault_and_honours_retry_after(tmp_path, proxy, tiny_server):
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, timeout_s=1.0)
    proxy.script(
        Fault.http_status(429, retry_after="1"),
        Fault.http_status(500),
        Fault.timeout(delay_s=1.5),
        Fault.malformed(),
        Fault.drop(),
    )
    started = time.monotonic()
    result = client.complete(report_requests(1)[0])
    elapsed = time.monotonic() - started
    assert proxy.outcomes() == ["status:429", "status:500", "timeout", "malformed", "drop", "forwarded"]
    assert elapsed >= 1.0 + 1.0  # the Retry-After second plus the one-second client timeout
    gap = proxy.requests[1].at - proxy.requests[0].at
    assert gap >= 1.0, f"second attempt came {gap:.2f}s after a 429 with Retry-After: 1"
    total = client.ledger().total()
    assert (total.sent, total.discarded, total.input_tokens) == (1, 0, result.input_tokens)


def test_retry_after_as_http_date_is_honoured(client, proxy):
    not_before = int(time.time()) + 2  # HTTP dates have whole seconds
    proxy.script(Fault.http_status(503, retry_after=email.utils.formatdate(not_before, usegmt=True)))
    client.complete(report_requests(1)[0])
    assert proxy.requests[1].wall >= not_before


def test_gives_up_after_max_retries_naming_endpoint_and_cause(tmp_path, proxy, tiny_server):
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, max_retries=2)
    proxy.script(*[Fault.http_status(503)] * 3)
    with pytest.raises(RetriesExhaustedError) as error:
        client.complete(report_requests(1)[0])
    assert f"{proxy.base_url}/chat/completions" in str(error.value)
    assert "3 attempts" in str(error.value) and "HTTP 503" in str(error.value)
    assert proxy.outcomes() == ["status:503"] * 3
    assert client.ledger().total().sent == 0


def test_bad_request_fails_fast(client, proxy):
    proxy.script(Fault.http_status(400))
    with pytest.raises(NonRetryableError, match="HTTP 400"):
        client.complete(report_requests(1)[0])
    assert proxy.outcomes() == ["status:400"]


def test_auth_failure_stops_the_batch_from_sending_more(tmp_path, proxy, tiny_server):
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, max_concurrency=1)
    proxy.script(Fault.http_status(401))
    outcome = client.run_many(report_requests(4))
    assert [f.index for f in outcome.failures] == [0, 1, 2, 3]
    assert "api_key_env" in outcome.failures[0].error
    assert proxy.outcomes() == ["status:401"]


def test_invalid_json_content_is_retried_and_billed_as_discarded(tmp_path, proxy, tiny_server):
    """transformers serve ignores response_format, and a random model does not write JSON: a real invalid answer."""
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, max_retries=1)
    request = LLMRequest(
        messages=[{"role": "user", "content": "JSON please"}],
        max_tokens=MAX_TOKENS,
        response_format={"type": "json_object"},
    )
    with pytest.raises(RetriesExhaustedError, match="not valid JSON"):
        client.complete(request)
    total = client.ledger().total()
    assert len(proxy.forwarded) == 2 and (total.sent, total.discarded) == (0, 2) and total.output_tokens > 0
    assert client.dry_run([request]).to_send == 1


def test_run_many_keeps_input_order_and_records_one_failure(tmp_path, proxy, tiny_server):
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, max_concurrency=2)
    requests = report_requests(5)
    proxy.script(Fault.http_status(400, match="report 2:"))
    outcome = client.run_many(requests)
    assert [(f.index, f.key) for f in outcome.failures] == [(2, client.request_key(requests[2]))]
    assert outcome.results[2] is None and "1 failed" in outcome.summary()
    for request, result in zip(requests, outcome.results, strict=True):
        assert result is None or result.key == client.request_key(request)


def test_second_run_makes_zero_network_calls(tmp_path, proxy, tiny_server):
    requests = report_requests(4)
    make_client(tmp_path, proxy.base_url, tiny_server.model).run_many(requests)
    sent_before = len(proxy.requests)
    rerun = make_client(tmp_path, proxy.base_url, tiny_server.model)
    outcome = rerun.run_many(requests)
    assert len(proxy.requests) == sent_before == 4
    assert all(result.cached for result in outcome.results)
    assert rerun.ledger(run_only=True).total().cached == 4


def test_identical_requests_in_one_batch_are_sent_once(client, proxy):
    first, second = report_requests(2)
    outcome = client.run_many([first, second, first, first])
    assert len(proxy.forwarded) == 2
    assert [r.cached for r in outcome.results] == [False, False, True, True]
    assert outcome.results[3].text == outcome.results[0].text


def test_dry_run_matches_the_real_run_and_the_ledger_adds_up(tmp_path, proxy, tiny_server):
    prices = dict(input_price_per_1m=2.5, output_price_per_1m=10.0)
    requests = report_requests(5)
    make_client(tmp_path, proxy.base_url, tiny_server.model, **prices).run_many(requests[:2])
    batch = [*requests, requests[4]]
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, **prices)
    plan = client.dry_run(batch)
    assert (plan.total, plan.cached, plan.duplicates, plan.to_send) == (6, 2, 1, 3)
    assert plan.est_input_tokens > 0 and plan.est_output_tokens == 3 * MAX_TOKENS
    assert "to send" in plan.table()

    forwarded_before = len(proxy.forwarded)
    outcome = client.run_many(batch)
    sent = [r for r in outcome.results if not r.cached]
    assert len(proxy.forwarded) - forwarded_before == len(sent) == plan.to_send
    assert sum(r.cached for r in outcome.results) == plan.cached + plan.duplicates
    run = client.ledger(run_only=True).total()
    assert (run.sent, run.cached) == (3, 3)
    assert run.input_tokens == sum(r.input_tokens for r in sent)
    assert run.output_tokens == sum(r.output_tokens for r in sent)
    assert run.cost_usd == pytest.approx((run.input_tokens * 2.5 + run.output_tokens * 10.0) / 1e6)
    everything = client.ledger().total()
    assert (everything.sent, everything.cached) == (5, 3)
    assert "total" in client.ledger().table()


RESUMABLE_RUN = """
import sys
from ko_radiology.llm_client import LLMClient, LLMClientConfig, LLMRequest
base_url, model, cache_path, count = sys.argv[1:5]
config = LLMClientConfig(base_url=base_url, model=model, api_key_env=None, cache_path=cache_path,
                         max_concurrency=1, show_progress=False)
requests = [LLMRequest(messages=[{"role": "user", "content": f"resume {i}"}], max_tokens=3) for i in range(int(count))]
outcome = LLMClient(config).run_many(requests)
sys.exit(0 if outcome.ok else 1)
"""


def completed_keys(cache_path: Path) -> set[str]:
    if not cache_path.exists():
        return set()
    with sqlite3.connect(cache_path) as db:
        try:
            return {key for (key,) in db.execute("SELECT key FROM responses")}
        except sqlite3.OperationalError:  # schema not created yet
            return set()


def test_kill_9_mid_run_then_resume_loses_nothing_and_repeats_nothing(tmp_path, proxy, tiny_server):
    cache_path, count = tmp_path / "resume.sqlite", 12
    command = [
        sys.executable,
        "-c",
        textwrap.dedent(RESUMABLE_RUN),
        proxy.base_url,
        tiny_server.model,
        str(cache_path),
        str(count),
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    victim = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 60
    while len(completed_keys(cache_path)) < 4 and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_before_kill = completed_keys(cache_path)
    assert 4 <= len(done_before_kill) < count, "the run was not killed midway"
    sent_before_kill = len(proxy.requests)

    subprocess.run(command, cwd=REPO_ROOT, env=env, check=True, timeout=120)
    resent = [cache_key(body) for body in proxy.forwarded[sent_before_kill:]]
    assert len(completed_keys(cache_path)) == count
    assert not set(resent) & done_before_kill, "a call completed before the kill was sent again"
    assert len(resent) == len(set(resent)) == count - len(done_before_kill)


def test_batch_api_files_round_trip_into_the_cache(tmp_path, proxy, tiny_server):
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, input_price_per_1m=1.0, batch_price_factor=0.5)
    requests = report_requests(4, prefix="batch")
    client.run_many(requests[:1])
    proxy.reset()

    files = client.write_batch_jsonl([*requests, requests[3]], tmp_path / "batch_in")
    assert (files.written, files.skipped_cached, files.skipped_duplicates, len(files.paths)) == (3, 1, 1, 1)
    rows = [json.loads(line) for line in files.paths[0].read_text().splitlines()]
    assert [row["custom_id"] for row in rows] == [client.request_key(r) for r in requests[1:]]
    assert {(row["method"], row["url"], row["body"]["model"]) for row in rows} == {
        ("POST", "/v1/chat/completions", tiny_server.model)
    }
    assert len(client.write_batch_jsonl(requests, tmp_path / "split", max_requests_per_file=2).paths) == 2

    output = tmp_path / "batch_out.jsonl"
    simulate_openai_batch(files.paths[0], output, tiny_server)
    report = client.ingest_batch_output(output)
    assert (report.stored, report.already_cached, len(report.failures)) == (3, 0, 1)
    assert client.ingest_batch_output(output).already_cached == 3  # a second ingest bills nothing again
    total = client.ledger().total()
    assert (total.batch, total.sent) == (3, 1)

    outcome = client.run_many(requests)
    assert proxy.requests == [] and all(r.cached for r in outcome.results)


def test_requests_per_minute_limit_spreads_calls(tmp_path, proxy, tiny_server):
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, requests_per_minute=120, max_concurrency=4)
    started = time.monotonic()
    client.run_many(report_requests(5, prefix="rate"))
    # 120/min holds two calls (one second's worth), then refills one every 0.5 s: the fifth may not leave before
    # 1.5 s. Arrival times at the proxy carry connection-setup jitter, hence the tolerances on the gaps.
    arrivals = [request.at - started for request in proxy.requests]
    assert len(arrivals) == 5 and arrivals[4] >= 1.45, arrivals
    assert arrivals[1] < 0.45 and arrivals[4] - arrivals[2] >= 0.8, arrivals


def test_sync_wrapper_refuses_to_run_inside_an_event_loop(client):
    async def inside_loop() -> None:
        client.complete(report_requests(1)[0])

    with pytest.raises(RuntimeError, match="await client"):
        asyncio.run(inside_loop())
