"""The shared LLM client against a real `transformers serve`, behind a real fault-injecting proxy.

Every network claim is checked at the proxy's socket: retries happen, Retry-After is waited out, a second run and a
resume after `kill -9` send nothing that was already answered, the ledger adds up to what was sent, and nothing goes
to an environment proxy or an unchecked host (a bare listener counts every connection).
"""

import asyncio
import dataclasses
import email.utils
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ko_radiology.llm import (
    CacheError,
    Completion,
    DataUseError,
    LLMClient,
    LLMClientConfig,
    LLMRequest,
    NonRetryableError,
    RateLimiter,
    ResponseStore,
    RetriesExhaustedError,
    StreamError,
    StreamingClient,
    cache_key,
    check_data_use,
)
from ko_radiology.llm.cache import OUTCOMES, SCHEMA
from ko_radiology.llm.errors import BatchApiError
from tests.batch_simulator import simulate_openai_batch
from tests.standins import PROXY_VARIABLES, ChatReplyServer, ConnectionCounter, Fault, FaultProxy, Reply

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
        ({"base_url": "http://127.0.0.1:99999/v1"}, "base_url"),
        ({"base_url": "http://127.0.0.1:0/v1"}, "base_url"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"max_retries": -1}, "max_retries"),
        ({"timeout_s": 0}, "timeout_s"),
        ({"input_price_per_1m": -1.0}, "input_price_per_1m"),
        ({"batch_price_factor": 2.0}, "batch_price_factor"),
        ({"allowed_hosts": ["gpu box"]}, "allowed_hosts"),
        ({"data_provenance": "public"}, "data_provenance"),
    ],
)
def test_config_names_the_bad_field(overrides, field_name):
    with pytest.raises(ValueError, match=field_name):
        LLMClientConfig(**{"model": "m", **overrides})


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
    check_data_use(url, provenance="user")


def test_data_use_guard_refuses_a_remote_host_with_the_physionet_message():
    with pytest.raises(DataUseError) as error:
        check_data_use("https://api.openai.com/v1", provenance="user")
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
        check_data_use("https://api.openai.com/v1", provenance="user", allow_remote_endpoint=True)


def test_data_use_guard_allows_remote_with_both_flags_or_public_text():
    url = "https://example-resource.openai.azure.com/openai/v1"
    check_data_use(url, provenance="user", allow_remote_endpoint=True, no_retention_confirmed=True)
    check_data_use(url, provenance="synthetic")


def test_data_use_guard_extra_hosts_match_exactly():
    extra = ["gpu-box.lan", "10.0.0.0/8"]
    check_data_use("http://gpu-box.lan:8000/v1", provenance="user", allowed_hosts=extra)
    check_data_use("http://10.1.2.3:8000/v1", provenance="user", allowed_hosts=extra)
    for lookalike in ("http://127.0.0.1.evil.example/v1", "http://localhost.evil.example/v1", "http://11.0.0.1/v1"):
        with pytest.raises(DataUseError):
            check_data_use(lookalike, provenance="user", allowed_hosts=extra)


def test_client_refuses_a_remote_endpoint_before_opening_anything(tmp_path):
    config = LLMClientConfig(
        model="gpt-4o-mini", base_url="https://api.openai.com/v1", cache_path=str(tmp_path / "never.sqlite")
    )
    with pytest.raises(DataUseError):
        LLMClient(config)
    with pytest.raises(DataUseError):
        StreamingClient(config)
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


def test_a_retry_after_beyond_two_minutes_is_not_waited_out(client, proxy):
    """The SDK's rule: such a wait is a misconfigured gateway or a quota, not a blip; say so instead of sleeping."""
    proxy.script(Fault.http_status(429, retry_after="600"))
    with pytest.raises(NonRetryableError, match="said not to retry"):
        client.complete(report_requests(1)[0])
    assert proxy.outcomes() == ["status:429"]


def test_the_endpoints_retry_headers_are_obeyed(client, proxy):
    """408 and 409 are retried, `retry-after-ms` is waited out, and `x-should-retry` overrides the status either
    way (`transport.should_retry`, the rules the SDK's own retry loop follows)."""
    proxy.script(
        Fault("status", status=409, headers={"retry-after-ms": "1500"}),
        Fault("status", status=408),
        Fault("status", status=400, headers={"x-should-retry": "true"}),
    )
    client.complete(report_requests(1)[0])
    assert proxy.outcomes() == ["status:409", "status:408", "status:400", "forwarded"]
    gap = proxy.requests[1].at - proxy.requests[0].at
    assert gap >= 1.5, f"second attempt came {gap:.2f}s after a 409 with retry-after-ms: 1500"
    proxy.script(Fault("status", status=503, headers={"x-should-retry": "false"}))
    with pytest.raises(NonRetryableError, match="said not to retry"):
        client.complete(report_requests(1, prefix="other")[0])
    assert proxy.outcomes()[4:] == ["status:503"]


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
from ko_radiology.llm import LLMClient, LLMClientConfig, LLMRequest
base_url, model, cache_path, count, concurrency = sys.argv[1:6]
config = LLMClientConfig(base_url=base_url, model=model, api_key_env=None, cache_path=cache_path,
                         max_concurrency=int(concurrency), show_progress=False)
requests = [LLMRequest(messages=[{"role": "user", "content": f"resume {i}"}], max_tokens=3) for i in range(int(count))]
outcome = LLMClient(config).run_many(requests)
sys.exit(0 if outcome.ok else 1)
"""


def ledger_keys(cache_path: Path, table: str, where: str = "") -> list[str]:
    """Keys in `table` as another process sees the file (a resume, or someone inspecting it after a crash)."""
    if not cache_path.exists():
        return []
    with sqlite3.connect(cache_path) as db:
        try:
            return [key for (key,) in db.execute(f"SELECT key FROM {table} {where}")]
        except sqlite3.OperationalError:  # schema not created yet
            return []


def test_kill_9_mid_run_then_resume_repeats_only_the_calls_in_flight_and_says_so(tmp_path, proxy, tiny_server):
    """The calls in flight at a kill may have been answered and billed; the ledger knows them before they are sent,
    so the resume reports them and the bound (at most max_concurrency per crash) is checked at the proxy."""
    cache_path, count, concurrency = tmp_path / "resume.sqlite", 12, 4
    command = [sys.executable, "-c", textwrap.dedent(RESUMABLE_RUN), proxy.base_url, tiny_server.model]
    command += [str(cache_path), str(count), str(concurrency)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    victim = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    deadline = time.monotonic() + 60
    while len(ledger_keys(cache_path, "responses")) < 4 and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.02)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    done_before_kill = set(ledger_keys(cache_path, "responses"))
    in_flight = ledger_keys(cache_path, "ledger", "WHERE outcome = 'in_flight'")
    assert 4 <= len(done_before_kill) < count, "the run was not killed midway"
    assert 1 <= len(in_flight) <= concurrency and not set(in_flight) & done_before_kill
    forwarded_before_kill = len(proxy.forwarded)
    assert len(done_before_kill) <= forwarded_before_kill <= len(done_before_kill) + len(in_flight)

    resume = subprocess.run(command, cwd=REPO_ROOT, env=env, timeout=120, capture_output=True, text=True)
    assert resume.returncode == 0, resume.stderr
    assert f"{len(in_flight)} calls of an earlier run were in flight" in resume.stderr
    resent = [cache_key(body) for body in proxy.forwarded[forwarded_before_kill:]]
    assert len(ledger_keys(cache_path, "responses")) == count
    assert not set(resent) & done_before_kill, "a call completed before the kill was sent again"
    assert len(resent) == len(set(resent)) == count - len(done_before_kill)
    store = ResponseStore(cache_path, run_id="inspect")
    total = store.ledger().total()
    store.close()
    assert (total.sent, total.unanswered) == (count, len(in_flight))
    assert total.sent <= len(proxy.forwarded) <= total.sent + total.unanswered


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


def test_environment_proxies_are_ignored_by_chat_and_batch_calls(tmp_path, proxy, tiny_server, monkeypatch):
    """A proxy in the environment would receive the report text and the key; calls go where the guard looked."""
    with ConnectionCounter() as counter:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, f"http://127.0.0.1:{counter.port}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        client = make_client(tmp_path, proxy.base_url, tiny_server.model, max_retries=0)
        client.complete(report_requests(1)[0])
        with StreamingClient(client.config) as streaming:
            assert "".join(streaming.stream(report_requests(1, prefix="stream")[0]))
        batch_file = client.write_batch_jsonl(report_requests(1, prefix="batch"), tmp_path / "batch").paths[0]
        with pytest.raises(BatchApiError, match="HTTP 404"):  # transformers serve has no Files API: it was reached
            client.submit_batch(batch_file)
    assert counter.connections == 0
    paths = [request.path.split("?")[0] for request in proxy.requests]
    assert paths == ["/v1/chat/completions", "/v1/chat/completions", "/v1/files"]


def test_azure_key_header_and_query_params_reach_chat_and_batch_calls(tmp_path, proxy, tiny_server, monkeypatch):
    monkeypatch.setenv("TEST_AZURE_KEY", "azure-key-123")
    azure = dict(api_key_env="TEST_AZURE_KEY", api_key_header="api-key", query_params={"api-version": "2024-10-21"})
    client = make_client(tmp_path, proxy.base_url, tiny_server.model, max_retries=0, **azure)
    client.complete(report_requests(1)[0])
    batch_file = client.write_batch_jsonl(report_requests(1, prefix="batch"), tmp_path / "batch").paths[0]
    with pytest.raises(BatchApiError, match="serves no Files and Batch API"):
        client.submit_batch(batch_file)
    assert len(proxy.requests) == 2
    for request in proxy.requests:
        assert request.path.endswith("?api-version=2024-10-21"), request.path
        assert request.headers["api-key"] == "azure-key-123" and "authorization" not in request.headers


def test_the_config_is_frozen_so_every_call_goes_to_the_host_the_guard_checked(tmp_path, proxy, tiny_server):
    requests = report_requests(3)
    with ConnectionCounter() as elsewhere:
        other = f"http://127.0.0.1:{elsewhere.port}/v1"
        client = make_client(tmp_path, proxy.base_url, tiny_server.model, max_retries=0)
        with pytest.raises(dataclasses.FrozenInstanceError):
            client.config.base_url = other
        with pytest.raises(AttributeError):
            client.config = dataclasses.replace(client.config, base_url=other)

        async def in_one_loop() -> None:
            await client.acomplete(requests[0])
            with pytest.raises(dataclasses.FrozenInstanceError):
                client.config.base_url = other
            await client.acomplete(requests[1])
            await client.aclose()

        asyncio.run(in_one_loop())
        client.complete(requests[2])
    assert elsewhere.connections == 0 and len(proxy.forwarded) == 3
    assert client.config.base_url == proxy.base_url


def test_credentials_in_the_base_url_never_reach_logs_or_errors(tmp_path, proxy, tiny_server, caplog):
    with_credentials = proxy.base_url.replace("http://", "http://alice:s3cret-key@")
    client = make_client(tmp_path, with_credentials, tiny_server.model, max_retries=1)
    proxy.script(Fault.http_status(503), Fault.http_status(503))
    with caplog.at_level(logging.WARNING), pytest.raises(RetriesExhaustedError) as error:
        client.complete(report_requests(1)[0])
    assert "retrying" in caplog.text and "***@127.0.0.1" in str(error.value)
    assert "s3cret" not in caplog.text + str(error.value)
    with pytest.raises(DataUseError) as refused:
        check_data_use("https://alice:s3cret-key@api.example.com/v1", provenance="mimic-cxr")
    assert "s3cret" not in str(refused.value) and "MIMIC-CXR" in str(refused.value)


def test_synthetic_data_may_go_to_a_remote_endpoint_and_is_never_called_credentialed(tmp_path):
    remote = "https://api.example.com/v1"
    check_data_use(remote, provenance="synthetic")
    config = LLMClientConfig(model="m", base_url=remote, api_key_env=None, data_provenance="synthetic")
    LLMClient(dataclasses.replace(config, cache_path=str(tmp_path / "c.sqlite"))).close()
    with pytest.raises(DataUseError) as brought:
        check_data_use(remote, provenance="user")
    assert "reports you brought" in str(brought.value) and "synthetic" not in str(brought.value)


def filled_cache(path: Path, rows: int = 300) -> Path:
    store = ResponseStore(path, run_id="fill")
    for number in range(rows):
        answer = Completion("양측 폐야는 깨끗함. " * 40, "stop", 10, 10)
        store.save(f"key{number}", {"model": "m"}, answer, "sent", 0.0)
    store.close()
    return path


def test_a_corrupt_or_truncated_cache_names_the_file_and_the_fix(tmp_path):
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a database\n" * 200)
    truncated = filled_cache(tmp_path / "truncated.sqlite")
    with truncated.open("r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    for path in (garbage, truncated):
        with pytest.raises(CacheError) as error:
            make_client(tmp_path, "http://127.0.0.1:9/v1", "m", cache_path=str(path))
        assert str(path) in str(error.value) and "not a valid SQLite cache" in str(error.value)
        assert "delete it to start over" in str(error.value)


@pytest.fixture
def read_only_cache(tmp_path):
    """A cache file no process may write: chmod for a normal user, the immutable flag for root (who ignores modes)."""
    path = filled_cache(tmp_path / "read_only.sqlite", rows=1)
    path.chmod(0o444)
    if os.geteuid() == 0 and subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root without chattr: no way to make a file read-only")
    yield path
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_read_only_cache_fails_when_opened_not_midway(tmp_path, read_only_cache):
    with pytest.raises(CacheError) as error:
        make_client(tmp_path, "http://127.0.0.1:9/v1", "m", cache_path=str(read_only_cache))
    assert str(read_only_cache) in str(error.value) and "cannot be written" in str(error.value)


def test_a_new_cache_is_private_like_the_dataset_folders(tmp_path):
    path = tmp_path / "runs" / "llm_cache.sqlite"
    make_client(tmp_path, "http://127.0.0.1:9/v1", "m", cache_path=str(path)).close()
    assert (path.stat().st_mode & 0o777, path.parent.stat().st_mode & 0o777) == (0o600, 0o700)


def test_a_cache_from_before_in_flight_rows_is_upgraded_and_keeps_its_ledger(tmp_path):
    path = tmp_path / "old.sqlite"
    current = ", ".join(f"'{outcome}'" for outcome in OUTCOMES)
    old_schema = SCHEMA.replace(current, "'sent', 'batch', 'cached', 'discarded'")
    with sqlite3.connect(path) as db:
        db.executescript(old_schema)
        db.execute("INSERT INTO ledger VALUES (1, 'old-run', 'k', 'm', 'sent', 3, 4, 0.5, 0.0)")
    store = ResponseStore(path, run_id="new")
    store.finish(store.begin("k2", "m"), "failed")
    total = store.ledger().total()
    store.close()
    assert (total.sent, total.failed, total.input_tokens, total.cost_usd) == (1, 1, 3, 0.5)


# ---- streaming: a person waiting on the answer ---------------------------------------------------------------------


def stream_config(base_url: str, model: str, **overrides) -> LLMClientConfig:
    settings = {"base_url": base_url, "model": model, "api_key_env": None, "timeout_s": 5.0}
    return LLMClientConfig(**{**settings, **overrides})


def test_stream_yields_the_answer_piece_by_piece_and_closing_it_frees_the_server(tmp_path, tiny_server):
    request = dataclasses.replace(report_requests(1)[0], max_tokens=8)
    with StreamingClient(stream_config(tiny_server.base_url, tiny_server.model, timeout_s=60)) as client:
        pieces = list(client.stream(request))
        assert len(pieces) >= 2 and all(pieces)
        assert "".join(pieces) == make_client(tmp_path, tiny_server.base_url, tiny_server.model).complete(request).text
        long_answer = client.stream(dataclasses.replace(request, max_tokens=3000))  # ~30 s of generation
        assert next(long_answer)
        long_answer.close()
        started = time.monotonic()
        assert list(client.stream(request)) == pieces
    assert time.monotonic() - started < 10, "the abandoned answer kept the server busy"


def test_closing_a_stream_closes_its_connection():
    with ChatReplyServer(Reply.forever()) as server, StreamingClient(stream_config(server.base_url, "m")) as client:
        pieces = client.stream(report_requests(1)[0])
        assert next(pieces) == "가" and not server.disconnected.is_set()
        pieces.close()
        assert server.disconnected.wait(5), "the server still streams to nobody"


@pytest.mark.parametrize(
    ("fault", "cause"),
    [
        (Fault.http_status(503), "answered HTTP 503: .*injected 503"),
        (Fault.malformed(), "answered HTTP 200 with no streamed text .Content-Type application/json."),
        (Fault.drop(), "connection failed .RemoteProtocolError"),
    ],
    ids=["503", "not-a-stream", "dropped"],
)
def test_a_failed_stream_is_one_error_naming_the_endpoint_and_is_not_retried(proxy, tiny_server, fault, cause):
    with_credentials = proxy.base_url.replace("http://", "http://alice:s3cret-key@")
    proxy.script(fault)
    with StreamingClient(stream_config(with_credentials, tiny_server.model)) as client:
        with pytest.raises(StreamError, match=cause) as error:
            list(client.stream(report_requests(1)[0]))
    assert "***@127.0.0.1" in str(error.value) and "s3cret" not in str(error.value)
    assert len(proxy.requests) == 1
