"""The HTTP side, on the `openai` SDK: the SDK clients for chat, streams and the Batch API, and one chat attempt.

The SDK's own retries are off (`max_retries=0`): the client's loop retries instead, because its backoff, shared 429
pause and fatal-status breaker span every worker. Environment proxies are ignored (`trust_env=False`) and redirects
are not followed, so calls go exactly to the host the data-use guard checked; the guard runs here, every time a URL
becomes an SDK client.
"""

import asyncio
import email.utils
import json
import math
import os
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx2
import openai
from openai.types.chat import ChatCompletion

from ko_radiology.llm.cache import Completion
from ko_radiology.llm.config import LLMClientConfig
from ko_radiology.llm.data_use import check_data_use, is_allowed_host
from ko_radiology.llm.errors import NonRetryableError, TransientError

FATAL_ERRORS = (openai.AuthenticationError, openai.PermissionDeniedError, openai.NotFoundError)
"""Wrong key, no access or wrong URL/model: every later call would fail the same way, so none is sent."""
HINTS = {
    401: "check the API key in the environment variable named by api_key_env",
    403: "the key has no access to this model or endpoint",
    404: "check base_url (it should end in /v1 or the deployment path) and model",
}
MAX_RETRY_AFTER_S = 120.0
"""A Retry-After longer than this means not now: the call fails with `NOT_RETRIED` instead of holding a worker."""
NOT_RETRIED = "the endpoint said not to retry (Retry-After over two minutes, or x-should-retry: false)"


def api_key(config: LLMClientConfig) -> str | None:
    """The key from `config.api_key_env`; a missing one is an error unless the host is ours (then no auth is sent)."""
    env = config.api_key_env
    key = os.environ.get(env) if env else None
    host = urlsplit(config.base_url).hostname or ""
    if env and not key and not is_allowed_host(host, config.allowed_hosts):
        raise ValueError(f"api_key_env names ${env}, which is not set; export it (the key is never logged).")
    return key


def guard(config: LLMClientConfig) -> None:
    """The data-use guard on the URL `config` sends to."""
    check_data_use(
        config.base_url,
        provenance=config.data_provenance,
        allowed_hosts=config.allowed_hosts,
        allow_remote_endpoint=config.allow_remote_endpoint,
        no_retention_confirmed=config.no_retention_confirmed,
    )


class SDKSettings:
    """What both SDK clients are built from, after the guard has passed `config`'s URL.

    A Bearer key goes through the SDK's `api_key`; another header (Azure's `api-key`) through `default_headers`.
    Without a Bearer key the SDK's `Authorization` header is omitted per request (`request_headers`), since the SDK
    accepts no client without one.
    """

    def __init__(self, config: LLMClientConfig):
        guard(config)
        key = api_key(config)
        bearer = config.api_key_header.lower() == "authorization"
        self.client_args: dict[str, Any] = {
            "base_url": config.base_url,
            "api_key": key if key and bearer else "unused",
            "default_headers": {config.api_key_header: key} if key and not bearer else {},
            "default_query": dict(config.query_params),
            "timeout": config.timeout_s,
            "max_retries": 0,
        }
        self.request_headers: dict[str, Any] = {} if key and bearer else {"Authorization": openai.omit}
        self.http_args: dict[str, Any] = {"trust_env": False, "follow_redirects": False, "timeout": config.timeout_s}


def async_sdk(config: LLMClientConfig) -> tuple[openai.AsyncOpenAI, dict[str, Any]]:
    """The chat path's SDK client (one connection per allowed call in flight) and its per-request headers."""
    settings = SDKSettings(config)
    limits = httpx2.Limits(max_connections=config.max_concurrency)
    http = httpx2.AsyncClient(**settings.http_args, limits=limits)
    return openai.AsyncOpenAI(**settings.client_args, http_client=http), settings.request_headers


def sync_sdk(config: LLMClientConfig) -> tuple[openai.OpenAI, dict[str, Any]]:
    """The SDK client of the Batch path and of streams, and its per-request headers."""
    settings = SDKSettings(config)
    http = httpx2.Client(**settings.http_args)
    return openai.OpenAI(**settings.client_args, http_client=http), settings.request_headers


async def post_chat(
    sdk: openai.AsyncOpenAI, headers: dict[str, Any], body: dict, wants_json: bool, timeout_s: float, endpoint: str
) -> Completion:
    """One attempt, bounded in total by `timeout_s` (httpx's timeout bounds each read, not the whole call).

    Raises:
        TransientError: The attempt may succeed if repeated (a status `should_retry` accepts, or no answer).
        NonRetryableError: The endpoint refused the call in a way a retry cannot fix.
    """
    try:
        async with asyncio.timeout(timeout_s):
            options = {"headers": headers}
            answer = await sdk.post("/chat/completions", body=body, cast_to=ChatCompletion, options=options)
    except (TimeoutError, openai.APITimeoutError):
        raise TransientError(f"timed out after {timeout_s}s") from None
    except openai.APIConnectionError as exc:
        raise TransientError(connection_failure(exc)) from None
    except openai.APIStatusError as exc:
        raise status_error(exc, endpoint) from None
    except ValueError as exc:  # a 200 whose body is not JSON
        raise TransientError(f"malformed response ({type(exc).__name__}: {exc})") from None
    return completion_of(answer, wants_json)


def connection_failure(exc: openai.APIConnectionError) -> str:
    """The SDK says only "Connection error."; the cause says which (refused, reset, name not found)."""
    return f"connection failed ({type(exc.__cause__).__name__}: {exc.__cause__})"


def status_error(exc: openai.APIStatusError, endpoint: str) -> Exception:
    """A transient error where a retry may help (`should_retry`, waiting the Retry-After the endpoint gave), otherwise
    a non-retryable one with the hint at the fix."""
    cause = f"HTTP {exc.status_code}: {exc.response.text[:300]}"
    if should_retry(exc.status_code, exc.response.headers):
        return TransientError(cause, retry_after=retry_after_s(exc.response.headers))
    transient_status = exc.status_code == 429 or exc.status_code >= 500
    invalid = NOT_RETRIED if transient_status else "the request itself is invalid; fix it rather than retrying"
    hint = HINTS.get(exc.status_code, invalid)
    message = f"{endpoint} answered {cause} ({hint})"
    return NonRetryableError(message, status_code=exc.status_code, fatal=isinstance(exc, FATAL_ERRORS))


def should_retry(status_code: int, headers: Mapping[str, str]) -> bool:
    """Retry a request timeout (408), a lock conflict (409), a rate limit (429) or a server error (>= 500), unless the
    endpoint says otherwise: `x-should-retry: true/false` wins, and a Retry-After over `MAX_RETRY_AFTER_S` (or one
    that overflows) means not at all. The rules the OpenAI SDK's own retry loop follows."""
    wait = retry_after_s(headers)
    if wait is not None and wait > MAX_RETRY_AFTER_S:
        return False
    verdict = headers.get("x-should-retry")
    if verdict in ("true", "false"):
        return verdict == "true"
    return status_code in (408, 409, 429) or status_code >= 500


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds to wait before retrying, from `retry-after-ms`, else `Retry-After` in seconds (floats allowed) or as
    an HTTP date (negative once past); None when neither header is there or parses."""
    for name, divisor in (("retry-after-ms", 1000), ("retry-after", 1)):
        try:
            seconds = float(headers[name]) / divisor
        except (KeyError, ValueError):
            continue
        if not math.isnan(seconds):
            return seconds
    try:
        return email.utils.parsedate_to_datetime(headers["retry-after"]).timestamp() - time.time()
    except (KeyError, TypeError, ValueError, OverflowError):
        return None


def completion_of(answer: ChatCompletion, wants_json: bool) -> Completion:
    """The text and usage of an answer; invalid JSON content, when JSON was asked for, is billed and transient."""
    try:
        choice = answer.choices[0]
    except (AttributeError, IndexError, TypeError):
        raise TransientError(f"malformed response (no choices): {str(answer)[:200]!r}") from None
    usage = answer.usage
    completion = Completion(
        text=choice.message.content or "",
        finish_reason=choice.finish_reason,
        input_tokens=(usage and usage.prompt_tokens) or 0,
        output_tokens=(usage and usage.completion_tokens) or 0,
    )
    if wants_json:
        try:
            json.loads(completion.text)
        except ValueError:
            cause = f"content is not valid JSON (finish_reason={completion.finish_reason}): {completion.text[:120]!r}"
            raise TransientError(cause, billed=completion) from None
    return completion
