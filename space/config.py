"""What the Space is told, by environment variables (Space variables and secrets on the Hub): one field each.

`KO_RADIOLOGY_<FIELD>` sets a field (`KO_RADIOLOGY_BACKEND=local`, `KO_RADIOLOGY_ALLOW_REMOTE_ENDPOINT=true`).
`HF_TOKEN` (a Space secret) is read by the endpoint's client (`ko_radiology.llm`) and never stored here, so printing a
config never shows it. Gradio itself reads `GRADIO_SERVER_PORT`.

A visitor may paste MIMIC-CXR text, so the endpoints are checked by the builder's PhysioNet guard: loopback, hosts you
run (`ALLOWED_HOSTS`), or a remote endpoint only with both acknowledgements.
"""

import argparse
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ko_radiology.llm import EndpointOptions

ENV_PREFIX = "KO_RADIOLOGY_"
DEFAULT_ENDPOINT_CONTEXT_TOKENS = 4096
"""An endpoint does not say how long its context is; 4096 is TGI's default `--max-total-tokens`."""


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class GenerationSettings:
    """The knobs of the settings accordion; the defaults favour short, faithful answers."""

    max_new_tokens: int = field(default=256, metadata=_help("Most tokens per answer."))
    temperature: float = field(default=0.2, metadata=_help("0 is greedy; higher is more varied."))
    top_p: float = field(default=0.9, metadata=_help("Nucleus sampling mass."))
    repetition_penalty: float = field(default=1.1, metadata=_help("1.0 is off; above 1 discourages repeats."))

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}.")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}.")


class SpaceConfig(BaseSettings):
    """Where answers come from, how long they may take, and what the Space keeps (nothing, unless told).

    pydantic-settings reads `KO_RADIOLOGY_<FIELD>` (case-insensitive; an empty variable is unset) when the config is
    built; keyword arguments win over the environment (the terminal chat's flags, the tests' servers).
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="forbid")

    backend: Literal["endpoint", "local"] = Field(
        default="endpoint", description="endpoint (OpenAI-compatible server) or local."
    )
    endpoint: str = Field(
        default="http://127.0.0.1:8000/v1",
        description="Messages API base URL of TGI, vLLM, SGLang, `transformers serve` or an Inference Endpoint.",
    )
    model: str | None = Field(
        default=None,
        description=(
            "endpoint (required): the model or LoRA adapter name sent with each request (TGI `LORA_ADAPTERS` name; "
            "`transformers serve` wants its folder path). local: a merged folder, a base model, an adapter folder "
            "or embedded:base."
        ),
    )
    adapter: str | None = Field(default=None, description="local: a PEFT adapter folder loaded onto `model`.")
    allowed_hosts: str | None = Field(
        default=None,
        description="Comma-separated hosts you run, beyond loopback, serving the endpoint (names, IPs, CIDRs).",
    )
    allow_remote_endpoint: bool = Field(
        default=False,
        description="Send visitors' reports to a remote endpoint; only with no_retention_confirmed (PhysioNet).",
    )
    no_retention_confirmed: bool = Field(
        default=False,
        description="You verified the endpoint retains no data, trains on none and allows no human review.",
    )
    timeout_s: float = Field(
        default=60.0, gt=0, description="Longest wait for the endpoint's next piece before a friendly error."
    )
    context_tokens: int | None = Field(
        default=None,
        ge=1,
        description=f"Context length; default: the local model's, {DEFAULT_ENDPOINT_CONTEXT_TOKENS} for endpoints.",
    )
    concurrency_limit: int = Field(default=2, ge=1, description="Generations running at once; others wait in line.")
    queue_size: int = Field(default=16, ge=1, description="Visitors who may wait; one more is told the queue is full.")
    translate_endpoint: str | None = Field(
        default=None, description="OpenAI-compatible URL that translates English reports; unset: no translation."
    )
    translate_model: str | None = Field(default=None, description="Model name for the translation endpoint.")
    translate_allowed_hosts: str | None = Field(
        default=None,
        description="Comma-separated hosts you run, beyond loopback, that may receive reports for translation.",
    )
    feedback_dir: str | None = Field(
        default=None, description="Folder for 좋아요/싫어요/의학적 오류 feedback (JSONL); unset: nothing is stored."
    )

    @model_validator(mode="after")
    def check_together(self) -> "SpaceConfig":
        if self.backend == "local" and not self.model:
            raise ValueError(f"The local backend needs {ENV_PREFIX}MODEL (a model folder, adapter or embedded:base).")
        if bool(self.translate_endpoint) != bool(self.translate_model):
            raise ValueError(
                f"Set both {ENV_PREFIX}TRANSLATE_ENDPOINT and {ENV_PREFIX}TRANSLATE_MODEL, or neither "
                "(English reports are then answered untranslated)."
            )
        return self

    @property
    def endpoint_hosts(self) -> list[str]:
        return _host_list(self.allowed_hosts)

    @property
    def translate_hosts(self) -> list[str]:
        return _host_list(self.translate_allowed_hosts)

    def endpoint_options(self) -> EndpointOptions:
        """How calls to the endpoint go: the key is the `HF_TOKEN` secret, the data-use fields are the Space's."""
        return EndpointOptions(
            api_key_env="HF_TOKEN",
            timeout_s=self.timeout_s,
            allowed_hosts=self.endpoint_hosts,
            allow_remote_endpoint=self.allow_remote_endpoint,
            no_retention_confirmed=self.no_retention_confirmed,
            show_progress=False,
        )

    @classmethod
    def from_env(cls, **overrides) -> "SpaceConfig":
        """The environment's settings with `overrides` (a flag left unset is `None` and leaves its variable in
        charge).

        Raises:
            ValueError: One line naming each variable that is not valid, its value and why.
        """
        with settings_errors():
            return cls(**{name: value for name, value in overrides.items() if value is not None})

    @classmethod
    def from_values(cls, values: Mapping[str, object]) -> "SpaceConfig":
        """`values` alone, as a Space given only these variables reads them: `space.deploy` checks a Space's
        variables this way, without the deploying machine's environment."""
        with settings_errors():
            return GivenValuesOnly(**values)


class GivenValuesOnly(SpaceConfig):
    """A `SpaceConfig` built from its keyword arguments alone: no environment variable is read."""

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, **other_sources):
        return (init_settings,)


@contextmanager
def settings_errors() -> Iterator[None]:
    """pydantic's `ValidationError` as a `ValueError` of one line (`settings_problems`)."""
    try:
        yield
    except ValidationError as error:
        raise ValueError(settings_problems(error)) from None


def settings_problems(error: ValidationError) -> str:
    """pydantic's errors as one line: `KO_RADIOLOGY_QUEUE_SIZE='many': Input should be a valid integer, ...`."""
    problems = []
    for item in error.errors():
        if item["type"] == "value_error":  # a check of ours: its message names the variables
            problems.append(str(item["ctx"]["error"]))
        else:
            name = ENV_PREFIX + str(item["loc"][0]).upper()
            problems.append(f"{name}={item['input']!r}: {item['msg']}")
    return "; ".join(problem.rstrip(".") for problem in problems) + "."


DATA_USE_FIELDS = ("allowed_hosts", "allow_remote_endpoint", "no_retention_confirmed")


def add_data_use_arguments(parser: argparse.ArgumentParser) -> None:
    """The endpoint's data-use fields as flags (`--allow-remote-endpoint`), for the terminal chat and the deploy."""
    for name in DATA_USE_FIELDS:
        spec = SpaceConfig.model_fields[name]
        kind = {"action": "store_true"} if spec.annotation is bool else {}
        parser.add_argument("--" + name.replace("_", "-"), help=spec.description, **kind)


def data_use_values(args: argparse.Namespace) -> dict:
    """The data-use flags given; one not given leaves its `KO_RADIOLOGY_*` variable in charge."""
    return {name: getattr(args, name) for name in DATA_USE_FIELDS if getattr(args, name)}


def _host_list(hosts: str | None) -> list[str]:
    return [host.strip() for host in (hosts or "").split(",") if host.strip()]
