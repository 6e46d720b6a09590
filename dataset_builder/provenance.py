"""Where a build's reports come from and where they were sent, decided once at build time.

Provenance sets the data-use guard, the license, the Hub gating and the card's sentences: the shipped sample is
synthetic (CC BY 4.0), a MIMIC-CXR tree is credentialed, and anything else the user brings counts as credentialed
too, since the builder cannot know it is not.
"""

import hashlib
from pathlib import Path
from urllib.parse import urlsplit

from dataset_builder.sources import ReportSource
from ko_radiology.llm import LLMClientConfig, is_allowed_host
from ko_radiology.llm.data_use import PROVENANCES
from ko_radiology.sample_corpus import SAMPLE_DIR

SYNTHETIC, MIMIC_CXR, USER = PROVENANCES
STRICTNESS = {SYNTHETIC: 0, USER: 1, MIMIC_CXR: 2}
"""A declared provenance may only be stricter than the detected one: `user` data may be declared `mimic-cxr`."""


SAMPLE_MANIFEST = "files.sha256"
"""`sha256sum` of every report (`.txt`) in the sample (`sha256sum -c files.sha256` checks it; regenerate it with
`find files -type f | LC_ALL=C sort | xargs sha256sum > files.sha256` in the sample folder after editing a report)."""


def is_shipped_sample(path: Path) -> bool:
    """Whether `path` is the sample folder with exactly the reports it ships: one added or edited there (real
    reports dropped into the sample to try the builder) is no longer known to be invented."""
    sample_dir = SAMPLE_DIR
    if path.resolve() != sample_dir.resolve() or not (sample_dir / SAMPLE_MANIFEST).is_file():
        return False
    listed = {}
    for line in (sample_dir / SAMPLE_MANIFEST).read_text(encoding="utf-8").splitlines():
        digest, name = line.split(maxsplit=1)
        listed[name] = digest
    found = {
        file.relative_to(sample_dir).as_posix(): hashlib.sha256(file.read_bytes()).hexdigest()
        for file in sample_dir.rglob("*.txt")  # every report any input format reads from this folder
        if file.is_file()
    }
    return found == listed


def detect_provenance(source: ReportSource) -> str:
    """`synthetic` only for the shipped sample itself, unchanged: a copy, or the sample with reports added, is not."""
    if is_shipped_sample(source.path):
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
