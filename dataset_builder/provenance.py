"""Where a build's reports come from and where they were sent, decided once at build time.

Provenance sets the data-use guard, the license, the Hub gating and the card's sentences: the shipped sample is
synthetic (CC BY 4.0), a MIMIC-CXR tree is credentialed, and anything else the user brings counts as credentialed
too, since the builder cannot know it is not.
"""

from urllib.parse import urlsplit

from dataset_builder.gold import SAMPLE_DIR
from dataset_builder.sources import ReportSource
from ko_radiology.llm import LLMClientConfig, is_allowed_host
from ko_radiology.llm.data_use import PROVENANCES

SYNTHETIC, MIMIC_CXR, USER = PROVENANCES
STRICTNESS = {SYNTHETIC: 0, USER: 1, MIMIC_CXR: 2}
"""A declared provenance may only be stricter than the detected one: `user` data may be declared `mimic-cxr`."""


def detect_provenance(source: ReportSource) -> str:
    """`synthetic` only for the shipped sample itself: a copy of it with reports added is no longer known to be."""
    if source.path.resolve() == SAMPLE_DIR.resolve():
        return SYNTHETIC
    return MIMIC_CXR if source.resolved_format() == "mimic" else USER


def build_provenance(source: ReportSource, declared: str | None) -> str:
    """The detected provenance, or the user's declaration where it is stricter (a CSV declared `mimic-cxr`); a
    declaration that would weaken what was detected (credentialed data called synthetic) is refused."""
    detected = detect_provenance(source)
    if declared is None:
        return detected
    if declared not in PROVENANCES:
        raise ValueError(f"--data-provenance {declared!r} is not one of {', '.join(PROVENANCES)}.")
    if STRICTNESS[declared] < STRICTNESS[detected]:
        raise ValueError(
            f"{source.path} is detected as {detected} data; --data-provenance {declared} cannot declare it otherwise "
            "(only the shipped sample is synthetic). Drop the flag."
        )
    return declared


def endpoint_class(config: LLMClientConfig) -> str:
    """Where an llm stage's calls go: `loopback` (this machine), `allowed-host` (a host the user runs and listed),
    `remote-no-retention` (a service confirmed to retain nothing) or `remote` (any service; synthetic input only)."""
    host = urlsplit(config.base_url).hostname or ""
    if is_allowed_host(host):
        return "loopback"
    if is_allowed_host(host, config.allowed_hosts):
        return "allowed-host"
    if config.allow_remote_endpoint and config.no_retention_confirmed:
        return "remote-no-retention"
    return "remote"
