"""The endpoint options every command exposes (the builder, the eval runners) and the Space sets: one dataclass.

The model and its URL are not here: each command names them its own way (`build --model/--base-url`, `eval.judge
--judge-model/--judge-base-url`, `eval.compare --model NAME=URL`, the Space's `KO_RADIOLOGY_MODEL`/`_ENDPOINT`) and
passes them to `client_config`, with anything else the command decides itself (the build's data provenance).
"""

from dataclasses import dataclass, field, fields
from typing import Any

from ko_radiology.llm.config import LLMClientConfig
from ko_radiology.llm.data_use import PROVENANCES


def client_field(name: str) -> Any:
    """`LLMClientConfig`'s field `name` with its default and help, which are declared there once."""
    spec = LLMClientConfig.__dataclass_fields__[name]
    return field(default=spec.default, default_factory=spec.default_factory, metadata=spec.metadata)


@dataclass(frozen=True)
class EndpointOptions:
    """How a command's model calls go: the `LLMClientConfig` fields a user sets, with the client's defaults and
    help. Checked when `client_config` builds the client's config; three fields take a command line's shape."""

    api_key_env: str | None = client_field("api_key_env")
    api_key_header: str = client_field("api_key_header")
    query_params: str | None = field(  # or a mapping, from --config
        default=None,
        metadata={
            "help": "Extra URL query parameters as comma-separated name=value pairs, e.g. api-version=2024-10-21 "
            "(Azure); a mapping in --config."
        },
    )
    max_concurrency: int = client_field("max_concurrency")
    requests_per_minute: float | None = client_field("requests_per_minute")
    tokens_per_minute: float | None = client_field("tokens_per_minute")
    max_retries: int = client_field("max_retries")
    backoff_base_s: float = client_field("backoff_base_s")
    backoff_max_s: float = client_field("backoff_max_s")
    timeout_s: float = client_field("timeout_s")
    cache_path: str | None = field(
        default=None,
        metadata={
            "help": "SQLite file of cached responses and the cost ledger (default: the command's, e.g. "
            "OUT/llm_cache.sqlite for `build`)."
        },
    )
    input_price_per_1m: float = client_field("input_price_per_1m")
    output_price_per_1m: float = client_field("output_price_per_1m")
    batch_price_factor: float = client_field("batch_price_factor")
    assumed_output_tokens: int = client_field("assumed_output_tokens")
    data_provenance: str | None = field(
        default=None,
        metadata={
            "help": f"Where the input comes from ({', '.join(PROVENANCES)}); all but synthetic count as credentialed. "
            "`build` detects it (the shipped sample is synthetic, a MIMIC-CXR tree mimic-cxr, anything else user) and "
            "takes a declaration only where it is stricter (a CSV of MIMIC-CXR reports: mimic-cxr); elsewhere unset "
            "is user."
        },
    )
    allowed_hosts: list[str] = client_field("allowed_hosts")
    allow_remote_endpoint: bool = client_field("allow_remote_endpoint")
    no_retention_confirmed: bool = client_field("no_retention_confirmed")
    show_progress: bool = client_field("show_progress")

    def client_config(self, **fixed: Any) -> LLMClientConfig:
        """The client's config: these options, then `fixed` over them (at least `model` and `base_url`). An unset
        `cache_path` or `data_provenance` takes the client's default.

        Raises:
            ValueError: If a value is out of range (the client's checks name the field), or `query_params` is no
                list of name=value pairs.
        """
        values = {item.name: getattr(self, item.name) for item in fields(EndpointOptions)}
        values["query_params"] = parse_query_params(self.query_params)
        values = {name: value for name, value in values.items() if name not in UNSET_MEANS_DEFAULT or value}
        return LLMClientConfig(**{**values, **fixed})


UNSET_MEANS_DEFAULT = ("cache_path", "data_provenance")


def parse_query_params(value: str | dict | None) -> dict[str, str]:
    """`name=value,name=value` from the command line (argparse cannot fill a dict), or the mapping a YAML gave."""
    if not isinstance(value, str):
        return dict(value or {})
    pairs = [item.split("=", 1) for item in value.split(",") if item.strip()]
    if any(len(pair) != 2 or not pair[0].strip() for pair in pairs):
        raise ValueError(
            f"--query-params {value!r}: give name=value pairs separated by commas, e.g. api-version=2024-10-21."
        )
    return {name.strip(): text.strip() for name, text in pairs}
