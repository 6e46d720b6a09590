"""What the client is told: where calls go, how fast, how they are retried, cached and priced, and what one call asks.

The config is frozen: the URL the data-use guard checked is the URL every call, sync or async, goes to.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from ko_radiology.llm.data_use import PROVENANCES, redact_url


@dataclass(frozen=True)
class LLMClientConfig:
    """Where calls go, how fast, how they are retried, cached and priced; every default lives here. Frozen, so no
    URL can replace the one the guard checked (`dataclasses.replace` makes a new config, for a new client)."""

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
        default="out/llm_cache.sqlite", metadata={"help": "SQLite file of cached responses and the cost ledger."}
    )
    input_price_per_1m: float = field(default=0.0, metadata={"help": "USD per million input tokens."})
    output_price_per_1m: float = field(default=0.0, metadata={"help": "USD per million output tokens."})
    batch_price_factor: float = field(
        default=0.5, metadata={"help": "Share of the normal price the Batch API charges (OpenAI: half)."}
    )
    assumed_output_tokens: int = field(
        default=512, metadata={"help": "Output tokens assumed for estimates when a request sets no max_tokens."}
    )
    data_provenance: str = field(
        default="user",
        metadata={
            "help": f"Where the input comes from ({', '.join(PROVENANCES)}); all but synthetic count as credentialed."
        },
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
        check_base_url(self.base_url)
        object.__setattr__(self, "base_url", self.base_url.rstrip("/"))  # frozen: set once, here
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
        if self.data_provenance not in PROVENANCES:
            raise ValueError(f"data_provenance {self.data_provenance!r} is not one of {', '.join(PROVENANCES)}.")
        for host in self.allowed_hosts:
            if not re.fullmatch(r"[A-Za-z0-9.:_/-]+", host):
                raise ValueError(f"allowed_hosts entry {host!r} is not a host name, IP or CIDR; use e.g. 10.0.0.5.")

    @property
    def endpoint(self) -> str:
        """The chat URL as logs and errors show it: without the user:password a base URL may carry."""
        return redact_url(f"{self.base_url}/chat/completions")

    def cost_usd(self, input_tokens: int, output_tokens: int, factor: float = 1.0) -> float:
        return factor * (input_tokens * self.input_price_per_1m + output_tokens * self.output_price_per_1m) / 1e6


def check_base_url(url: str) -> None:
    """Refuse a URL that is not `http(s)://host[:port]/...`, showing it redacted: a rejected URL may carry a key.

    Raises:
        ValueError: If the scheme is not http(s), the host is missing, or the port is not a number in 1-65535.
    """
    parts = urlsplit(url)
    example = "use e.g. http://127.0.0.1:8000/v1"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url {redact_url(url)!r} is not an http(s) URL with a host; {example}.")
    try:
        port_ok = parts.port != 0  # None without a port; ValueError when not a number or out of 0-65535
    except ValueError:
        port_ok = False
    if not port_ok:
        raise ValueError(f"base_url {redact_url(url)!r} has an invalid port (a number from 1 to 65535); {example}.")


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
