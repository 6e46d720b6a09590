"""The one client for every call to a model server (an OpenAI-compatible endpoint): the builder's translation and QA
generation, the judge (`eval.judge`, `eval.calibrate`, the `evaluate` metric), endpoint models in `eval.compare`, and
the Space's and the terminal chat's answers and report translation. A model loaded in the process itself is no call:
`eval.compare`'s and `eval.check`'s local models answer through `ko_radiology.generation` (their answers kept in
this package's `ResponseStore`, keyed as an endpoint's: `ko_radiology.answer_cache`), and the Space's local backend
streams from its model with transformers.

    from ko_radiology.llm import LLMClient, LLMClientConfig, LLMRequest, StreamingClient

    client = LLMClient(LLMClientConfig(base_url="http://127.0.0.1:8000/v1", model="my-model"))
    requests = [LLMRequest(messages=[{"role": "user", "content": "안녕하세요"}], max_tokens=64)]
    print(client.dry_run(requests).table())       # what is cached, what would be sent, what it would cost
    outcome = client.run_many(requests)           # progress bar, results in input order, failures recorded
    print(client.ledger().table())                # calls, tokens and cost per model

    for piece in StreamingClient(client.config).stream(requests[0]):   # text as it is generated; not cached
        print(piece, end="")

One concern per module: `config` (what the client is told), `options` (the part of it a command's user sets),
`data_use` (where data may go), `limits` (rate limits and backoff), `transport` (the SDK clients and one HTTP
attempt), `cache` (responses and the cost ledger), `client` (retries, de-dup and many calls), `batch` (the OpenAI
Batch API), `stream` (one answer streamed as it is generated), `completer` (a pipeline stage's conversations in,
replies out).
Every call, streamed or not, passes the same data-use guard and goes straight to the checked host (no environment
proxies, no redirects).
"""

from ko_radiology.llm.batch import BatchFiles, BatchIngestReport
from ko_radiology.llm.cache import (
    CacheError,
    Completion,
    LedgerRow,
    LedgerSummary,
    LLMResult,
    ResponseStore,
    cache_key,
)
from ko_radiology.llm.client import DryRunReport, LLMClient, RequestFailure, RunManyOutcome
from ko_radiology.llm.config import LLMClientConfig, LLMRequest
from ko_radiology.llm.data_use import PROVENANCES, DataUseError, check_data_use, is_allowed_host, is_credentialed
from ko_radiology.llm.errors import LLMClientError, NonRetryableError, RetriesExhaustedError, StreamError
from ko_radiology.llm.limits import RateLimiter, estimate_tokens
from ko_radiology.llm.options import EndpointOptions
from ko_radiology.llm.stream import StreamingClient

__all__ = [
    "BatchFiles",
    "BatchIngestReport",
    "CacheError",
    "Completion",
    "DataUseError",
    "DryRunReport",
    "EndpointOptions",
    "LLMClient",
    "LLMClientConfig",
    "LLMClientError",
    "LLMRequest",
    "LLMResult",
    "LedgerRow",
    "LedgerSummary",
    "NonRetryableError",
    "PROVENANCES",
    "RateLimiter",
    "RequestFailure",
    "ResponseStore",
    "RetriesExhaustedError",
    "RunManyOutcome",
    "StreamError",
    "StreamingClient",
    "cache_key",
    "check_data_use",
    "estimate_tokens",
    "is_allowed_host",
    "is_credentialed",
]
