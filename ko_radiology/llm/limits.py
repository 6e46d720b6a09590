"""Rate limits: token buckets for requests and tokens, the shared 429 pause, backoff, and token estimates."""

import asyncio
import math
import random
import time
from collections.abc import Iterable
from typing import Any


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


def backoff_delay(attempt: int, retry_after: float | None, base_s: float, max_s: float) -> float:
    """Exponential backoff with jitter, or the server's Retry-After when it gave one (at least that long;
    `transport.should_retry` gives up on more than two minutes, and a date already past means now)."""
    if retry_after is not None:
        return max(0.0, retry_after) + random.uniform(0, 0.1)
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
