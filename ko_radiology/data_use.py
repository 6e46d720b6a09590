"""The PhysioNet data-use guard: credentialed reports (MIMIC-CXR) go only to endpoints known to keep nothing.

Kept apart from the client so the rule that decides where data may go can be read, tested and cited on its own;
`LLMClient` runs `check_data_use` before it opens a cache file or sends a single call.
"""

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.0/8", "::1")
"""Loopback only: a model served on this machine keeps the data on this machine."""

PHYSIONET_LLM_GUIDANCE = "https://physionet.org/news/post/llm-responsible-use"


class DataUseError(Exception):
    """Credentialed data would go to an endpoint that is not known to keep it."""


def _host_matches(host: str, allowed: str) -> bool:
    """Compare as IP networks when both sides parse as such, else as case-insensitive host names."""
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(allowed, strict=False)
    except ValueError:
        return host.lower().rstrip(".") == allowed.lower().rstrip(".")


def is_allowed_host(host: str, extra_allowed_hosts: Iterable[str] = ()) -> bool:
    """Whether `host` is loopback (the default allowlist) or one of `extra_allowed_hosts` (names, IPs or CIDRs)."""
    return any(_host_matches(host, allowed) for allowed in (*DEFAULT_ALLOWED_HOSTS, *extra_allowed_hosts))


def check_data_use(
    endpoint_url: str,
    *,
    credentialed: bool,
    allowed_hosts: Iterable[str] = (),
    allow_remote_endpoint: bool = False,
    no_retention_confirmed: bool = False,
) -> None:
    """Refuse to send credentialed data (MIMIC-CXR) to an endpoint that may retain it.

    PhysioNet's data use agreement forbids sharing credentialed data with third parties; its LLM guidance asks for
    locally deployed models, or a service verified to retain nothing, train on nothing and allow no human review.

    Args:
        endpoint_url: The base URL calls would go to.
        credentialed: Whether the input is credentialed data. Public or synthetic text passes unchecked.
        allowed_hosts: Hosts beyond loopback that the user runs themselves (names, IPs or CIDRs, e.g. `10.0.0.0/8`).
        allow_remote_endpoint: The user's explicit wish to use an endpoint outside the allowlist.
        no_retention_confirmed: The user's statement that the endpoint retains no data (zero data retention).

    Raises:
        DataUseError: If the endpoint is neither allowed nor both flags are given.
    """
    if not credentialed:
        return
    host = urlsplit(endpoint_url).hostname or ""
    allowed = [*DEFAULT_ALLOWED_HOSTS, *allowed_hosts]
    if is_allowed_host(host, allowed_hosts) or (allow_remote_endpoint and no_retention_confirmed):
        return
    missing = [
        flag
        for flag, given in (
            ("--allow-remote-endpoint", allow_remote_endpoint),
            ("--no-retention-confirmed", no_retention_confirmed),
        )
        if not given
    ]
    raise DataUseError(
        f"The input is credentialed PhysioNet data (e.g. MIMIC-CXR) and endpoint host {host!r} ({endpoint_url}) "
        f"is not on the allowlist ({', '.join(allowed)}). PhysioNet's data use agreement forbids sending it to a "
        f"service that may retain it, train on it or let people review it ({PHYSIONET_LLM_GUIDANCE}). To proceed, "
        f"serve the model yourself and add its host with --allowed-hosts {host}, or, only after verifying that the "
        "endpoint retains no data (zero data retention, no training, no human review), pass --allow-remote-endpoint "
        f"together with --no-retention-confirmed (missing: {' '.join(missing)})."
    )
