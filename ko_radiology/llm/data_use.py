"""The PhysioNet data-use guard: credentialed reports (MIMIC-CXR) go only to endpoints known to keep nothing.

Kept apart from the client so the rule that decides where data may go can be read, tested and cited on its own;
`LLMClient` runs `check_data_use` before it opens a cache file, and again wherever a URL becomes a connection.
The rule depends on the data's provenance: only the shipped synthetic sample (invented reports, CC BY 4.0) may go
anywhere; MIMIC-CXR and anything the user brings (which the builder cannot vouch for) count as credentialed.
"""

import ipaddress
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

DEFAULT_ALLOWED_HOSTS = ("localhost", "127.0.0.0/8", "::1")
"""Loopback only: a model served on this machine keeps the data on this machine."""

PHYSIONET_LLM_GUIDANCE = "https://physionet.org/news/post/llm-responsible-use"

PROVENANCES = ("synthetic", "mimic-cxr", "user")
"""Where input text comes from: the shipped synthetic sample, a MIMIC-CXR reports tree, or anything else the user
brings. Every one but `synthetic` counts as credentialed."""

PROVENANCE_NAMES = {
    "mimic-cxr": "MIMIC-CXR reports, credentialed PhysioNet data",
    "user": "reports you brought (of unknown origin, so treated as credentialed PhysioNet data such as MIMIC-CXR)",
}


def is_credentialed(provenance: str) -> bool:
    """Whether data of this provenance falls under PhysioNet's credentialed data use agreement (unknown: yes)."""
    return provenance != "synthetic"


class DataUseError(Exception):
    """Credentialed data would go to an endpoint that is not known to keep it."""


_USERINFO = re.compile(r"^((?:[A-Za-z][A-Za-z0-9+.-]*:[/\\]{2})?)(.*)@", re.DOTALL)
"""A scheme, then everything up to the last `@`: a `user:password@` however the rest of the URL is malformed."""
_QUERY_ITEM = re.compile(r"([?&;#])([^?&;#=]*=)?[^?&;#]*")
_NON_NUMERIC_PORT = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*:[/\\]{2}[^/?#\[\]]*?:)(?![0-9]*(?:[/?#]|$))[^/?#]*")


def redact_url(url: str) -> str:
    """`url` as logs and errors may show it: a `user:password@` becomes `***@`, every query or fragment value `***`,
    and a port that is not a number `***` (`http://user:key/v1` lost its host, and its key sits in the port).

    Written for any text given as a URL, malformed ones included, since rejected URLs are the ones echoed in errors;
    it hides too much rather than too little (a path holding `@` loses what precedes it).
    """
    url = _USERINFO.sub(r"\1***@", url)
    url = _QUERY_ITEM.sub(lambda item: f"{item.group(1)}{item.group(2) or ''}***", url)
    return _NON_NUMERIC_PORT.sub(r"\1***", url)


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
    provenance: str,
    allowed_hosts: Iterable[str] = (),
    allow_remote_endpoint: bool = False,
    no_retention_confirmed: bool = False,
) -> None:
    """Refuse to send credentialed data (MIMIC-CXR) to an endpoint that may retain it.

    PhysioNet's data use agreement forbids sharing credentialed data with third parties; its LLM guidance asks for
    locally deployed models, or a service verified to retain nothing, train on nothing and allow no human review.

    Args:
        endpoint_url: The base URL calls would go to.
        provenance: One of `PROVENANCES`. Synthetic text passes unchecked; anything else is credentialed.
        allowed_hosts: Hosts beyond loopback that the user runs themselves (names, IPs or CIDRs, e.g. `10.0.0.0/8`).
        allow_remote_endpoint: The user's explicit wish to use an endpoint outside the allowlist.
        no_retention_confirmed: The user's statement that the endpoint retains no data (zero data retention).

    Raises:
        DataUseError: If the endpoint is neither allowed nor both flags are given.
    """
    if not is_credentialed(provenance):
        return
    parts = urlsplit(endpoint_url)
    host = parts.hostname or ""
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
        f"The input is {PROVENANCE_NAMES.get(provenance, PROVENANCE_NAMES['user'])}, and endpoint host {host!r} "
        f"({redact_url(endpoint_url)}) is not on the allowlist ({', '.join(allowed)}). PhysioNet's data use "
        "agreement forbids sending it to a service that may retain it, train on it or let people review it "
        f"({PHYSIONET_LLM_GUIDANCE}). To proceed, serve the model yourself and add its host with --allowed-hosts "
        f"{host}, or, only after verifying that the endpoint retains no data (zero data retention, no training, no "
        "human review), pass --allow-remote-endpoint together with --no-retention-confirmed "
        f"(missing: {' '.join(missing)})."
    )
