"""What the Space is told, by environment variables (Space variables and secrets on the Hub): one field each.

`KO_RADIOLOGY_<FIELD>` sets a field (`KO_RADIOLOGY_BACKEND=local`, `KO_RADIOLOGY_ALLOW_REMOTE_ENDPOINT=true`).
`HF_TOKEN` (a Space secret) is read by the endpoint's client (`ko_radiology.llm`) and never stored here, so printing a
config never shows it. Gradio itself reads `GRADIO_SERVER_PORT`.

A visitor may paste MIMIC-CXR text, so the endpoints are checked by the builder's PhysioNet guard: loopback, hosts you
run (`ALLOWED_HOSTS`), or a remote endpoint only with both acknowledgements.
"""

import argparse
import os
from dataclasses import dataclass, field, fields

ENV_PREFIX = "KO_RADIOLOGY_"
BACKENDS = ("endpoint", "local")
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


@dataclass
class SpaceConfig:
    """Where answers come from, how long they may take, and what the Space keeps (nothing, unless told)."""

    backend: str = field(default="endpoint", metadata=_help("endpoint (OpenAI-compatible server) or local."))
    endpoint: str = field(
        default="http://127.0.0.1:8000/v1",
        metadata=_help("Messages API base URL of TGI, vLLM, SGLang, `transformers serve` or an Inference Endpoint."),
    )
    model: str | None = field(
        default=None,
        metadata=_help(
            "endpoint (required): the model or LoRA adapter name sent with each request (TGI `LORA_ADAPTERS` name; "
            "`transformers serve` wants its folder path). local: a merged folder, a base model, an adapter folder "
            "or embedded:base."
        ),
    )
    adapter: str | None = field(default=None, metadata=_help("local: a PEFT adapter folder loaded onto `model`."))
    allowed_hosts: str | None = field(
        default=None,
        metadata=_help("Comma-separated hosts you run, beyond loopback, serving the endpoint (names, IPs, CIDRs)."),
    )
    allow_remote_endpoint: bool = field(
        default=False,
        metadata=_help("Send visitors' reports to a remote endpoint; only with no_retention_confirmed (PhysioNet)."),
    )
    no_retention_confirmed: bool = field(
        default=False,
        metadata=_help("You verified the endpoint retains no data, trains on none and allows no human review."),
    )
    timeout_s: float = field(
        default=60.0, metadata=_help("Longest wait for the endpoint's next piece before a friendly error.")
    )
    context_tokens: int | None = field(
        default=None,
        metadata=_help(
            f"Context length; default: the local model's, {DEFAULT_ENDPOINT_CONTEXT_TOKENS} for endpoints."
        ),
    )
    concurrency_limit: int = field(default=2, metadata=_help("Generations running at once; others wait in line."))
    queue_size: int = field(default=16, metadata=_help("Visitors who may wait; one more is told the queue is full."))
    translate_endpoint: str | None = field(
        default=None, metadata=_help("OpenAI-compatible URL that translates English reports; unset: no translation.")
    )
    translate_model: str | None = field(default=None, metadata=_help("Model name for the translation endpoint."))
    translate_allowed_hosts: str | None = field(
        default=None,
        metadata=_help("Comma-separated hosts you run, beyond loopback, that may receive reports for translation."),
    )
    feedback_dir: str | None = field(
        default=None,
        metadata=_help("Folder for 좋아요/싫어요/의학적 오류 feedback (JSONL); unset: nothing is stored."),
    )

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"{ENV_PREFIX}BACKEND={self.backend!r} is not one of {', '.join(BACKENDS)}.")
        if self.backend == "local" and not self.model:
            raise ValueError(f"The local backend needs {ENV_PREFIX}MODEL (a model folder, adapter or embedded:base).")
        if bool(self.translate_endpoint) != bool(self.translate_model):
            raise ValueError(
                f"Set both {ENV_PREFIX}TRANSLATE_ENDPOINT and {ENV_PREFIX}TRANSLATE_MODEL, or neither "
                "(English reports are then answered untranslated)."
            )
        for name in ("concurrency_limit", "queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{ENV_PREFIX}{name.upper()} must be >= 1, got {getattr(self, name)}.")

    @property
    def endpoint_hosts(self) -> list[str]:
        return _host_list(self.allowed_hosts)

    @property
    def translate_hosts(self) -> list[str]:
        return _host_list(self.translate_allowed_hosts)

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None, **overrides) -> "SpaceConfig":
        """Read `KO_RADIOLOGY_<FIELD>` for every field; `overrides` (the terminal chat's flags) win."""
        environ = os.environ if environ is None else environ
        values = {}
        for spec in fields(cls):
            raw = environ.get(ENV_PREFIX + spec.name.upper())
            if raw not in (None, ""):
                values[spec.name] = _parse(raw, spec.type, spec.name)
        values.update({name: value for name, value in overrides.items() if value is not None})
        return cls(**values)


DATA_USE_FIELDS = ("allowed_hosts", "allow_remote_endpoint", "no_retention_confirmed")


def add_data_use_arguments(parser: argparse.ArgumentParser) -> None:
    """The endpoint's data-use fields as flags (`--allow-remote-endpoint`), for the terminal chat and the deploy."""
    for spec in fields(SpaceConfig):
        if spec.name in DATA_USE_FIELDS:
            kind = {"action": "store_true"} if spec.type is bool else {}
            parser.add_argument("--" + spec.name.replace("_", "-"), help=spec.metadata["help"], **kind)


def data_use_values(args: argparse.Namespace) -> dict:
    """The data-use flags given; one not given leaves its `KO_RADIOLOGY_*` variable in charge."""
    return {name: getattr(args, name) for name in DATA_USE_FIELDS if getattr(args, name)}


def _host_list(hosts: str | None) -> list[str]:
    return [host.strip() for host in (hosts or "").split(",") if host.strip()]


def _parse(raw: str, annotation, name: str):
    if annotation is bool:
        if raw.lower() in ("1", "true", "yes"):
            return True
        if raw.lower() in ("0", "false", "no"):
            return False
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not true or false.")
    kind = next((kind for kind in (int, float) if kind.__name__ in str(annotation)), str)
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a {kind.__name__}.") from None
