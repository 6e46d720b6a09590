"""The one client for every model call: dataset translation and QA generation now, eval judges later.

    from ko_radiology.llm_client import LLMClient, LLMClientConfig, LLMRequest

    client = LLMClient(LLMClientConfig(base_url="http://127.0.0.1:8000/v1", model="my-model"))
    requests = [LLMRequest(messages=[{"role": "user", "content": "안녕하세요"}], max_tokens=64)]
    print(client.dry_run(requests).table())       # what is cached, what would be sent, what it would cost
    outcome = client.run_many(requests)           # progress bar, results in input order, failures recorded
    print(client.ledger().table())                # calls, tokens and cost per model

It speaks the OpenAI `/chat/completions` protocol (OpenAI, Azure OpenAI v1, TGI Messages API, vLLM,
`transformers serve`) with httpx, and the OpenAI Batch API through the `openai` SDK, within rate limits and with
retries. Every completed call goes through the response cache and cost ledger of `llm_cache` before it is returned,
and the PhysioNet guard of `data_use` runs before anything is sent.
"""

import asyncio
import email.utils
import json
import logging
import math
import os
import random
import re
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from tqdm.auto import tqdm

from ko_radiology.data_use import check_data_use, is_allowed_host
from ko_radiology.llm_cache import Completion, LedgerSummary, LLMResult, ResponseStore, cache_key, format_table

logger = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
"""Plus every 5xx. 409/425 are transient conflicts some gateways send under load."""
FATAL_STATUS = frozenset({401, 403, 404})
"""Wrong key, no access or wrong URL/model: every later call would fail the same way, so none is sent."""
MAX_RETRY_AFTER_S = 600.0
"""A longer Retry-After is almost always a misconfigured gateway; wait ten minutes and let the retry decide."""
BATCH_ENDPOINT = "/v1/chat/completions"


class LLMClientError(Exception):
    """Base class of the errors this module raises on purpose."""


class NonRetryableError(LLMClientError):
    """The endpoint refused the call in a way a retry cannot fix (400, 401, 403, 404, 422)."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code


class RetriesExhaustedError(LLMClientError):
    """Every attempt failed with a transient cause; the message names the endpoint and the last cause."""


class _TransientError(Exception):
    """One failed attempt worth retrying; `billed` carries usage when the endpoint did the work (invalid JSON)."""

    def __init__(self, cause: str, retry_after: float | None = None, billed: "Completion | None" = None):
        super().__init__(cause)
        self.retry_after = retry_after
        self.billed = billed


@dataclass
class LLMClientConfig:
    """Where calls go, how fast, how they are retried, cached and priced; every default lives here."""

    model: str = field(metadata={"help": "Model name sent in each request; part of the cache key."})
    base_url: str = field(
        default="http://127.0.0.1:8000/v1",
        metadata={"help": "OpenAI-compatible base URL; calls go to {base_url}/chat/completions."},
    )
    api_key_env: str | None = field(
        default="OPENAI_API_KEY",
        metadata={
            "help": "Environment variable holding the API key (never a key itself); unset means no auth header."
        },
    )
    api_key_header: str = field(
        default="Authorization",
        metadata={"help": "`Authorization` sends `Bearer <key>`; Azure's `api-key` sends the key."},
    )
    query_params: dict[str, str] = field(
        default_factory=dict, metadata={"help": "Extra URL query parameters, e.g. Azure's api-version."}
    )
    max_concurrency: int = field(default=8, metadata={"help": "Most calls in flight at once."})
    requests_per_minute: float | None = field(default=None, metadata={"help": "Request rate limit; None for none."})
    tokens_per_minute: float | None = field(
        default=None, metadata={"help": "Token rate limit (input estimate + max_tokens, reconciled with usage)."}
    )
    max_retries: int = field(default=6, metadata={"help": "Retries after the first attempt for transient errors."})
    backoff_base_s: float = field(default=1.0, metadata={"help": "First backoff; doubles per retry, with jitter."})
    backoff_max_s: float = field(default=60.0, metadata={"help": "Longest backoff between two attempts."})
    timeout_s: float = field(default=120.0, metadata={"help": "Total time one attempt may take."})
    cache_path: str = field(
        default="runs/llm_cache.sqlite", metadata={"help": "SQLite file of cached responses and the cost ledger."}
    )
    input_price_per_1m: float = field(default=0.0, metadata={"help": "USD per million input tokens."})
    output_price_per_1m: float = field(default=0.0, metadata={"help": "USD per million output tokens."})
    batch_price_factor: float = field(
        default=0.5, metadata={"help": "Share of the normal price the Batch API charges (OpenAI: half)."}
    )
    assumed_output_tokens: int = field(
        default=512, metadata={"help": "Output tokens assumed for estimates when a request sets no max_tokens."}
    )
    credentialed_input: bool = field(
        default=True, metadata={"help": "The input is credentialed PhysioNet data; set False only for public text."}
    )
    allowed_hosts: list[str] = field(
        default_factory=list, metadata={"help": "Hosts beyond loopback that you run yourself (names, IPs or CIDRs)."}
    )
    allow_remote_endpoint: bool = field(
        default=False, metadata={"help": "Send credentialed data to a host outside the allowlist (see PhysioNet)."}
    )
    no_retention_confirmed: bool = field(
        default=False, metadata={"help": "You verified the endpoint retains no data, trains on none, has no review."}
    )
    show_progress: bool = field(default=True, metadata={"help": "Show a tqdm bar in run_many."})

    def __post_init__(self) -> None:
        if not self.model:
            raise ValueError("model is empty; set it to the name the endpoint serves (e.g. gpt-4o-mini).")
        if urlsplit(self.base_url).scheme not in ("http", "https") or not urlsplit(self.base_url).hostname:
            raise ValueError(f"base_url {self.base_url!r} is not an http(s) URL; use e.g. http://127.0.0.1:8000/v1.")
        self.base_url = self.base_url.rstrip("/")
        for name in ("max_concurrency", "assumed_output_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}.")
        for name in ("requests_per_minute", "tokens_per_minute"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0 or None (no limit), got {getattr(self, name)}.")
        for name in ("timeout_s", "backoff_base_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}.")
        if self.backoff_max_s < self.backoff_base_s:
            raise ValueError(
                f"backoff_max_s ({self.backoff_max_s}) must be >= backoff_base_s ({self.backoff_base_s})."
            )
        for name in ("input_price_per_1m", "output_price_per_1m"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0 USD, got {getattr(self, name)}.")
        if not 0 < self.batch_price_factor <= 1:
            raise ValueError(f"batch_price_factor must be in (0, 1], got {self.batch_price_factor}.")
        for host in self.allowed_hosts:
            if not re.fullmatch(r"[A-Za-z0-9.:_/-]+", host):
                raise ValueError(f"allowed_hosts entry {host!r} is not a host name, IP or CIDR; use e.g. 10.0.0.5.")

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/chat/completions"

    def cost_usd(self, input_tokens: int, output_tokens: int, factor: float = 1.0) -> float:
        return factor * (input_tokens * self.input_price_per_1m + output_tokens * self.output_price_per_1m) / 1e6


@dataclass(frozen=True)
class LLMRequest:
    """One chat completion; `extra` holds any other body field (top_p, stop, ...). All of it is in the cache key.

    A request without `seed` and with `temperature > 0` is still cached: to draw a second sample, change the seed.
    """

    messages: Sequence[dict[str, Any]]
    temperature: float | None = 0.0
    max_tokens: int | None = None
    seed: int | None = None
    response_format: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def body(self, model: str) -> dict[str, Any]:
        """The JSON body sent to `/chat/completions`, without unset fields (servers differ in defaults for null)."""
        params = {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "response_format": self.response_format,
            **self.extra,
        }
        return {"model": model, "messages": list(self.messages), **{k: v for k, v in params.items() if v is not None}}

    @property
    def wants_json(self) -> bool:
        return (self.response_format or {}).get("type") in ("json_object", "json_schema")


def estimate_tokens(messages: Iterable[dict[str, Any]]) -> int:
    """A tokenizer-free upper-ish estimate for rate limits and dry runs.

    About four ASCII characters per token, one token per other character (Hangul syllables often cost one or more),
    and four tokens of role markup per message. Pass `token_counter` to `LLMClient` for exact counts.
    """
    total = 0
    for message in messages:
        content = message.get("content") or ""
        if isinstance(content, list):
            content = " ".join(part.get("text", "") for part in content if isinstance(part, dict))
        ascii_chars = sum(char.isascii() for char in content)
        total += 4 + math.ceil(ascii_chars / 4) + (len(content) - ascii_chars)
    return total


@dataclass(frozen=True)
class RequestFailure:
    index: int
    key: str
    error: str


@dataclass
class RunManyOutcome:
    """`results[i]` answers `requests[i]`, or is None when `failures` holds an entry with `index == i`."""

    results: list[LLMResult | None]
    failures: list[RequestFailure]

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        done = [r for r in self.results if r is not None]
        cached = sum(r.cached for r in done)
        lines = [f"{len(done)} answered ({cached} from cache, {len(done) - cached} sent), {len(self.failures)} failed"]
        lines += [f"  request {f.index} ({f.key[:12]}): {f.error}" for f in self.failures[:10]]
        if len(self.failures) > 10:
            lines.append(f"  ... and {len(self.failures) - 10} more")
        return "\n".join(lines)


@dataclass(frozen=True)
class DryRunReport:
    """What `run_many(requests)` would do now. Output tokens are an upper bound (max_tokens per request)."""

    model: str
    total: int
    cached: int
    duplicates: int
    to_send: int
    est_input_tokens: int
    est_output_tokens: int
    est_cost_usd: float

    def table(self) -> str:
        rows = [
            ("requests", self.total),
            ("already cached", self.cached),
            ("duplicates in batch", self.duplicates),
            ("to send", self.to_send),
            ("est. input tokens", self.est_input_tokens),
            ("est. output tokens (max)", self.est_output_tokens),
            ("est. cost USD (max)", self.est_cost_usd),
        ]
        return format_table((f"dry run: {self.model}", ""), rows)


@dataclass(frozen=True)
class BatchFiles:
    paths: list[Path]
    written: int
    skipped_cached: int
    skipped_duplicates: int


@dataclass(frozen=True)
class BatchIngestReport:
    stored: int
    already_cached: int
    failures: list[str]


def parse_retry_after(headers: httpx.Headers | dict[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (seconds or an HTTP date) or OpenAI's `retry-after-ms`; None if absent."""
    headers = httpx.Headers(headers)
    if (millis := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, retry_after: float | None, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter, or the server's Retry-After when it gave one (at least that long)."""
    if retry_after is not None:
        return min(retry_after, MAX_RETRY_AFTER_S) + random.uniform(0, 0.1)
    return min(max_s, base_s * 2**attempt) * random.uniform(0.5, 1.0)


class TokenBucket:
    """Refills at `per_minute / 60` per second and holds one second's worth, so calls are spread over the minute
    (providers enforce limits on sub-minute windows) rather than sent in a burst. A take larger than the bucket
    waits for a full bucket and leaves it in debt, so long-run rate stays right for any request size."""

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate)
        self.level = self.capacity
        self.updated = time.monotonic()

    def wait_s(self, amount: float, now: float) -> float:
        self.level = min(self.capacity, self.level + (now - self.updated) * self.rate)
        self.updated = now
        need = min(amount, self.capacity)
        return 0.0 if self.level >= need else (need - self.level) / self.rate

    def take(self, amount: float) -> None:
        self.level -= amount

    def give_back(self, amount: float) -> None:
        self.level = min(self.capacity, self.level + amount)


class RateLimiter:
    """Request and token buckets plus a shared pause, so one 429 with Retry-After holds back every worker."""

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None):
        self.requests = TokenBucket(requests_per_minute) if requests_per_minute else None
        self.tokens = TokenBucket(tokens_per_minute) if tokens_per_minute else None
        self.paused_until = 0.0

    def pause(self, seconds: float) -> None:
        self.paused_until = max(self.paused_until, time.monotonic() + seconds)

    def wait_s(self, tokens: int) -> float:
        now = time.monotonic()
        waits = [self.paused_until - now]
        waits += [self.requests.wait_s(1, now)] if self.requests else []
        waits += [self.tokens.wait_s(tokens, now)] if self.tokens else []
        return max(waits)

    async def acquire(self, tokens: int, lock: asyncio.Lock) -> None:
        """Wait in FIFO order (the lock) until both buckets allow the call, then take from both."""
        async with lock:
            while (wait := self.wait_s(tokens)) > 0:
                await asyncio.sleep(wait)
            if self.requests:
                self.requests.take(1)
            if self.tokens:
                self.tokens.take(tokens)

    def reconcile(self, estimated: int, actual: int) -> None:
        """Give back what the estimate over-charged, or charge what it missed."""
        if self.tokens:
            self.tokens.give_back(estimated - actual)


def parse_completion(payload: str, wants_json: bool) -> Completion:
    """Read a chat completion body; a malformed one (or non-JSON content when JSON was asked for) is transient."""
    try:
        data = json.loads(payload)
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        usage = data.get("usage") or {}
    except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
        raise _TransientError(f"malformed response ({type(exc).__name__}): {payload[:200]!r}") from None
    completion = Completion(
        text=text,
        finish_reason=choice.get("finish_reason"),
        input_tokens=int(usage.get("prompt_tokens") or 0),
        output_tokens=int(usage.get("completion_tokens") or 0),
    )
    if wants_json:
        try:
            json.loads(text)
        except ValueError:
            cause = f"content is not valid JSON (finish_reason={completion.finish_reason}): {text[:120]!r}"
            raise _TransientError(cause, billed=completion) from None
    return completion


def _http_error(response: httpx.Response, endpoint: str) -> Exception:
    """Map an HTTP error to a transient cause or a non-retryable error with a hint at the fix."""
    status = response.status_code
    snippet = response.text[:300]
    if status in RETRYABLE_STATUS or status >= 500:
        return _TransientError(f"HTTP {status}: {snippet}", retry_after=parse_retry_after(response.headers))
    hints = {
        401: "check the API key in the environment variable named by api_key_env",
        403: "the key has no access to this model or endpoint",
        404: "check base_url (it should end in /v1 or the deployment path) and model",
    }
    hint = hints.get(status, "the request itself is invalid; fix it rather than retrying")
    return NonRetryableError(f"{endpoint} answered HTTP {status} ({hint}): {snippet}", status_code=status)


@dataclass
class _LoopState:
    """asyncio and httpx objects bind to one event loop; the sync wrappers run a new loop per call."""

    loop: asyncio.AbstractEventLoop
    http: httpx.AsyncClient
    semaphore: asyncio.Semaphore
    limiter_lock: asyncio.Lock
    inflight: dict[str, asyncio.Future] = field(default_factory=dict)


class LLMClient:
    """Async core with sync wrappers around one OpenAI-compatible endpoint, one cache file and one ledger.

    Args:
        config: Endpoint, limits, retries, cache and prices.
        token_counter: Optional exact counter `messages -> tokens` (e.g. a tokenizer); defaults to `estimate_tokens`.

    Raises:
        DataUseError: If `config` would send credentialed data to an endpoint that is not allowed.
        ValueError: If the endpoint is remote and the API key variable is not set.
    """

    def __init__(self, config: LLMClientConfig, token_counter: Callable[[Sequence[dict]], int] | None = None):
        check_data_use(
            config.base_url,
            credentialed=config.credentialed_input,
            allowed_hosts=config.allowed_hosts,
            allow_remote_endpoint=config.allow_remote_endpoint,
            no_retention_confirmed=config.no_retention_confirmed,
        )
        self.config = config
        self.count_tokens = token_counter or estimate_tokens
        self.run_id = uuid.uuid4().hex
        self._api_key()  # fail before the first call, and before creating the cache file
        self.limiter = RateLimiter(config.requests_per_minute, config.tokens_per_minute)
        self.store = ResponseStore(config.cache_path, self.run_id)
        self._state: _LoopState | None = None
        self._fatal: NonRetryableError | None = None

    def _api_key(self) -> str | None:
        env = self.config.api_key_env
        key = os.environ.get(env) if env else None
        host = urlsplit(self.config.base_url).hostname or ""
        if env and not key and not is_allowed_host(host, self.config.allowed_hosts):
            raise ValueError(f"api_key_env names ${env}, which is not set; export it (the key is never logged).")
        return key

    def _headers(self) -> dict[str, str]:
        key = self._api_key()
        if not key:
            return {}
        bearer = self.config.api_key_header.lower() == "authorization"
        return {self.config.api_key_header: f"Bearer {key}" if bearer else key}

    def _loop_state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            http = httpx.AsyncClient(
                headers=self._headers(),
                params=self.config.query_params,
                timeout=httpx.Timeout(self.config.timeout_s),
                limits=httpx.Limits(max_connections=self.config.max_concurrency),
            )
            self._state = _LoopState(loop, http, asyncio.Semaphore(self.config.max_concurrency), asyncio.Lock())
        return self._state

    async def aclose(self) -> None:
        if self._state is not None:
            await self._state.http.aclose()
            self._state = None

    def close(self) -> None:
        """Close the cache file; call `aclose` first when using the async API."""
        self.store.close()

    def __enter__(self) -> "LLMClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def request_body(self, request: LLMRequest) -> dict[str, Any]:
        return request.body(self.config.model)

    def request_key(self, request: LLMRequest) -> str:
        return cache_key(self.request_body(request))

    def _estimated_tokens(self, request: LLMRequest) -> tuple[int, int]:
        return self.count_tokens(request.messages), request.max_tokens or self.config.assumed_output_tokens

    # -- one call --

    async def acomplete(self, request: LLMRequest) -> LLMResult:
        """Answer one request from the cache, from an identical call in flight, or by calling the endpoint."""
        body = self.request_body(request)
        key = cache_key(body)
        if (hit := self.store.get(key)) is not None:
            self.store.record(key, self.config.model, "cached")
            return hit
        state = self._loop_state()
        if key in state.inflight:
            result = await asyncio.shield(state.inflight[key])
            self.store.record(key, self.config.model, "cached")
            return replace(result, cached=True)
        shared = state.loop.create_future()
        state.inflight[key] = shared
        try:
            result = await self._send(key, body, request, state)
            shared.set_result(result)
            return result
        except asyncio.CancelledError:
            shared.cancel()
            raise
        except Exception as exc:
            shared.set_exception(exc)
            shared.exception()  # retrieved: waiting duplicates re-raise it, nobody else has to
            raise
        finally:
            del state.inflight[key]

    async def _send(self, key: str, body: dict, request: LLMRequest, state: _LoopState) -> LLMResult:
        """Attempt until success, a non-retryable error, or `max_retries` retries; back off outside the semaphore."""
        estimate = sum(self._estimated_tokens(request))
        cause = "no attempt made"
        for attempt in range(self.config.max_retries + 1):
            async with state.semaphore:
                if self._fatal is not None:
                    raise NonRetryableError(f"not sent, an earlier call failed for good: {self._fatal}", 0)
                await self.limiter.acquire(estimate, state.limiter_lock)
                try:
                    completion = await self._post(state.http, body, request.wants_json)
                except _TransientError as exc:
                    cause = str(exc)
                    self._record_discarded(key, exc.billed)
                    delay = backoff_delay(
                        attempt, exc.retry_after, self.config.backoff_base_s, self.config.backoff_max_s
                    )
                    if exc.retry_after is not None:
                        self.limiter.pause(delay)
                else:
                    self.limiter.reconcile(estimate, completion.input_tokens + completion.output_tokens)
                    cost = self.config.cost_usd(completion.input_tokens, completion.output_tokens)
                    self.store.save(key, body, completion, "sent", cost)
                    return LLMResult(
                        key,
                        completion.text,
                        completion.finish_reason,
                        completion.input_tokens,
                        completion.output_tokens,
                        cached=False,
                    )
            if attempt < self.config.max_retries:
                logger.warning(
                    "%s attempt %d failed (%s); retrying in %.2fs", self.config.chat_url, attempt + 1, cause, delay
                )
                await asyncio.sleep(delay)
        raise RetriesExhaustedError(
            f"{self.config.chat_url} failed {self.config.max_retries + 1} attempts for request {key[:12]}; "
            f"last cause: {cause}. Check that the endpoint is up, or raise max_retries/timeout_s."
        )

    def _record_discarded(self, key: str, billed: Completion | None) -> None:
        if billed is not None:
            tokens = (billed.input_tokens, billed.output_tokens)
            self.store.record(key, self.config.model, "discarded", tokens, self.config.cost_usd(*tokens))

    async def _post(self, http: httpx.AsyncClient, body: dict, wants_json: bool) -> Completion:
        """One attempt, bounded in total by `timeout_s` (httpx's timeout bounds each read, not the whole call)."""
        try:
            async with asyncio.timeout(self.config.timeout_s):
                response = await http.post(self.config.chat_url, json=body)
        except (TimeoutError, httpx.TimeoutException) as exc:
            raise _TransientError(f"timed out after {self.config.timeout_s}s ({type(exc).__name__})") from None
        except httpx.TransportError as exc:
            raise _TransientError(f"connection failed ({type(exc).__name__}: {exc})") from None
        if response.status_code >= 400:
            error = _http_error(response, self.config.chat_url)
            if isinstance(error, NonRetryableError) and error.status_code in FATAL_STATUS:
                self._fatal = error
            raise error
        return parse_completion(response.text, wants_json)

    # -- many calls --

    async def arun_many(self, requests: Sequence[LLMRequest], desc: str = "LLM calls") -> RunManyOutcome:
        """Answer every request with bounded concurrency; one failure is recorded, not fatal to the batch."""
        results: list[LLMResult | None] = [None] * len(requests)
        failures: list[RequestFailure] = []
        pending = iter(range(len(requests)))
        bar = tqdm(total=len(requests), desc=desc, unit="call", disable=not self.config.show_progress)
        counts = {"cached": 0, "sent": 0, "failed": 0}

        async def worker() -> None:
            for index in pending:  # one shared iterator: each index is taken by exactly one worker
                try:
                    results[index] = result = await self.acomplete(requests[index])
                    counts["cached" if result.cached else "sent"] += 1
                except LLMClientError as exc:
                    failures.append(RequestFailure(index, self.request_key(requests[index]), str(exc)))
                    counts["failed"] += 1
                bar.set_postfix(counts, refresh=False)
                bar.update(1)

        # Twice the concurrency in workers, so a worker sleeping in backoff does not leave a network slot idle.
        workers = min(len(requests), 2 * self.config.max_concurrency)
        try:
            await asyncio.gather(*(worker() for _ in range(workers)))
        finally:
            bar.close()
        return RunManyOutcome(results, sorted(failures, key=lambda failure: failure.index))

    def dry_run(self, requests: Sequence[LLMRequest]) -> DryRunReport:
        """Count what is cached, duplicated and to be sent, and estimate tokens and cost, without sending anything."""
        keys = [self.request_key(request) for request in requests]
        in_cache = self.store.cached_keys(keys)
        seen: set[str] = set()
        cached = duplicates = est_in = est_out = 0
        for key, request in zip(keys, requests, strict=True):
            if key in in_cache:
                cached += 1
            elif key in seen:
                duplicates += 1
            else:
                tokens_in, tokens_out = self._estimated_tokens(request)
                est_in, est_out = est_in + tokens_in, est_out + tokens_out
            seen.add(key)
        to_send = len(requests) - cached - duplicates
        cost = self.config.cost_usd(est_in, est_out)
        return DryRunReport(self.config.model, len(requests), cached, duplicates, to_send, est_in, est_out, cost)

    def ledger(self, run_only: bool = False) -> LedgerSummary:
        """Calls, tokens and cost per model, for this client's run or (default) everything in the cache file."""
        return self.store.ledger(run_only)

    # -- sync wrappers --

    def _run_sync(self, coro: Coroutine) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError("An event loop is running; use `await client.acomplete(...)`/`arun_many(...)`.")

        async def run_and_close() -> Any:
            try:
                return await coro
            finally:
                await self.aclose()

        return asyncio.run(run_and_close())

    def complete(self, request: LLMRequest) -> LLMResult:
        return self._run_sync(self.acomplete(request))

    def run_many(self, requests: Sequence[LLMRequest], desc: str = "LLM calls") -> RunManyOutcome:
        return self._run_sync(self.arun_many(requests, desc))

    # -- OpenAI Batch API --

    def write_batch_jsonl(
        self, requests: Sequence[LLMRequest], out_dir: str | Path, max_requests_per_file: int = 50_000
    ) -> BatchFiles:
        """Write Batch API input files (custom_id = cache key), skipping cached and duplicate requests.

        OpenAI takes at most 50,000 requests per file, hence the split. Each file is written to a temporary name
        and renamed, so a crash never leaves a half file that looks complete.
        """
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        bodies = {}
        for request in requests:
            body = self.request_body(request)
            bodies.setdefault(cache_key(body), body)
        in_cache = self.store.cached_keys(bodies)
        lines = [
            json.dumps({"custom_id": key, "method": "POST", "url": BATCH_ENDPOINT, "body": body}, ensure_ascii=False)
            for key, body in bodies.items()
            if key not in in_cache
        ]
        paths = []
        for number, start in enumerate(range(0, len(lines), max_requests_per_file)):
            path = out_dir / f"batch-{number:04d}.jsonl"
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(line + "\n" for line in lines[start : start + max_requests_per_file]), "utf-8")
            tmp.replace(path)
            paths.append(path)
        self.store.remember_batch_requests({key: bodies[key] for key in bodies if key not in in_cache})
        return BatchFiles(
            paths, len(lines), skipped_cached=len(in_cache), skipped_duplicates=len(requests) - len(bodies)
        )

    def ingest_batch_output(self, path: str | Path) -> BatchIngestReport:
        """Load a Batch API output file into the cache, so a normal run afterwards finds every answered request.

        Rows already cached are skipped (and not billed again in the ledger); errors are reported, not stored.
        """
        stored = already = 0
        failures = []
        for number, line in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            key, response = row.get("custom_id", ""), row.get("response") or {}
            if row.get("error") or response.get("status_code") != 200:
                failures.append(f"line {number} ({key[:12]}): {row.get('error') or response.get('status_code')}")
                continue
            if self.store.get(key) is not None:
                already += 1
                continue
            try:
                completion = parse_completion(json.dumps(response["body"]), wants_json=False)
            except _TransientError as exc:
                failures.append(f"line {number} ({key[:12]}): {exc}")
                continue
            cost = self.config.cost_usd(
                completion.input_tokens, completion.output_tokens, self.config.batch_price_factor
            )
            body = self.store.batch_request(key) or {"model": self.config.model, "custom_id": key}
            stored += self.store.save(key, body, completion, "batch", cost)
        return BatchIngestReport(stored, already, failures)

    def _openai(self):
        import openai

        return openai.OpenAI(
            base_url=self.config.base_url, api_key=self._api_key() or "none", timeout=self.config.timeout_s
        )

    def submit_batch(self, path: str | Path, completion_window: str = "24h") -> str:
        """Upload one input file and start a batch; returns the batch id to pass to `fetch_batch`."""
        client = self._openai()
        with Path(path).open("rb") as handle:
            uploaded = client.files.create(file=handle, purpose="batch")
        batch = client.batches.create(
            input_file_id=uploaded.id, endpoint=BATCH_ENDPOINT, completion_window=completion_window
        )
        return batch.id

    def fetch_batch(self, batch_id: str, out_dir: str | Path) -> Path | None:
        """Download a finished batch's output (and error file) into `out_dir`; None while it is still running."""
        client = self._openai()
        batch = client.batches.retrieve(batch_id)
        if batch.status in ("failed", "expired", "cancelled"):
            raise LLMClientError(f"batch {batch_id} ended with status {batch.status}: {batch.errors}")
        if batch.status != "completed":
            return None
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        if batch.error_file_id:
            client.files.content(batch.error_file_id).write_to_file(out_dir / f"{batch_id}-errors.jsonl")
        if not batch.output_file_id:
            raise LLMClientError(f"batch {batch_id} completed without output; see {out_dir}/{batch_id}-errors.jsonl.")
        output = out_dir / f"{batch_id}-output.jsonl"
        client.files.content(batch.output_file_id).write_to_file(output)
        return output
