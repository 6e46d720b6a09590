"""`LLMClient`: many chat completions within limits, with retries, answered from the cache when they can be.

It speaks the OpenAI `/chat/completions` protocol (OpenAI, Azure OpenAI v1, TGI Messages API, vLLM,
`transformers serve`) through `transport`. Every call is in the ledger of `cache` as in flight before it is sent, and
its answer is in the cache before it is returned; the guard of `data_use` runs before anything is sent.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import openai
from tqdm.auto import tqdm

from ko_radiology.llm.batch import BatchMixin
from ko_radiology.llm.cache import LedgerSummary, LLMResult, ResponseStore, cache_key, format_table
from ko_radiology.llm.config import LLMClientConfig, LLMRequest
from ko_radiology.llm.errors import LLMClientError, NonRetryableError, RetriesExhaustedError, TransientError
from ko_radiology.llm.limits import RateLimiter, backoff_delay, estimate_tokens
from ko_radiology.llm.transport import SDKSettings, async_sdk, post_chat

logger = logging.getLogger(__name__)


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


@dataclass
class _LoopState:
    """asyncio and SDK objects bind to one event loop; the sync wrappers run a new loop per call. `endpoint` is the
    (redacted) URL `sdk` was built for, as messages name it."""

    loop: asyncio.AbstractEventLoop
    sdk: openai.AsyncOpenAI
    headers: dict[str, Any]
    endpoint: str
    semaphore: asyncio.Semaphore
    limiter_lock: asyncio.Lock
    inflight: dict[str, asyncio.Future] = field(default_factory=dict)


class LLMClient(BatchMixin):
    """Async core with sync wrappers around one OpenAI-compatible endpoint, one cache file and one ledger.

    Args:
        config: Endpoint, limits, retries, cache and prices.
        token_counter: Optional exact counter `messages -> tokens` (e.g. a tokenizer); defaults to `estimate_tokens`.

    Raises:
        DataUseError: If `config` would send credentialed data to an endpoint that is not allowed.
        ValueError: If the endpoint is remote and the API key variable is not set.
        CacheError: If the cache file is not a valid SQLite cache or cannot be written.
    """

    def __init__(self, config: LLMClientConfig, token_counter: Callable[[Sequence[dict]], int] | None = None):
        SDKSettings(config)  # the guard and the API key, before the cache file is created
        self._config = config
        self.count_tokens = token_counter or estimate_tokens
        self.run_id = uuid.uuid4().hex
        self.limiter = RateLimiter(config.requests_per_minute, config.tokens_per_minute)
        self.store = ResponseStore(config.cache_path, self.run_id)
        self._state: _LoopState | None = None
        self._fatal: NonRetryableError | None = None

    @property
    def config(self) -> LLMClientConfig:
        """Read-only, like the frozen config itself: calls go to the URL the guard checked, in every event loop."""
        return self._config

    def _loop_state(self) -> _LoopState:
        """This loop's SDK client, built (and so guarded) from the frozen config."""
        loop = asyncio.get_running_loop()
        if self._state is None or self._state.loop is not loop:
            sdk, headers = async_sdk(self.config)
            semaphore = asyncio.Semaphore(self.config.max_concurrency)
            self._state = _LoopState(loop, sdk, headers, self.config.endpoint, semaphore, asyncio.Lock())
        return self._state

    async def aclose(self) -> None:
        if self._state is not None:
            await self._state.sdk.close()
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
                    return await self._attempt(key, body, request, state, estimate)
                except TransientError as exc:
                    cause = str(exc)
                    delay = backoff_delay(
                        attempt, exc.retry_after, self.config.backoff_base_s, self.config.backoff_max_s
                    )
                    if exc.retry_after is not None:
                        self.limiter.pause(delay)
            if attempt < self.config.max_retries:
                logger.warning(
                    "%s attempt %d failed (%s); retrying in %.2fs", state.endpoint, attempt + 1, cause, delay
                )
                await asyncio.sleep(delay)
        raise RetriesExhaustedError(
            f"{state.endpoint} failed {self.config.max_retries + 1} attempts for request {key[:12]}; "
            f"last cause: {cause}. Check that the endpoint is up, or raise max_retries/timeout_s."
        )

    async def _attempt(self, key: str, body: dict, request: LLMRequest, state: _LoopState, estimate: int) -> LLMResult:
        """One call, in the ledger as in flight before it is sent and replaced by its outcome after."""
        row = self.store.begin(key, self.config.model)
        try:
            completion = await post_chat(
                state.sdk, state.headers, body, request.wants_json, self.config.timeout_s, state.endpoint
            )
        except TransientError as exc:
            if exc.billed is None:
                self.store.finish(row, "failed")
            else:
                tokens = (exc.billed.input_tokens, exc.billed.output_tokens)
                self.store.finish(row, "discarded", tokens, self.config.cost_usd(*tokens))
            raise
        except NonRetryableError as exc:
            self.store.finish(row, "failed")
            if exc.fatal:
                self._fatal = exc
            raise
        self.limiter.reconcile(estimate, completion.input_tokens + completion.output_tokens)
        cost = self.config.cost_usd(completion.input_tokens, completion.output_tokens)
        self.store.save(key, body, completion, "sent", cost, row_id=row)
        usage = (completion.input_tokens, completion.output_tokens)
        return LLMResult(key, completion.text, completion.finish_reason, *usage, cached=False)

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
