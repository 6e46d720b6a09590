"""What the Space is told, by environment variables (Space variables and secrets on the Hub): one field each.

`KO_RADIOLOGY_<FIELD>` sets a field (`KO_RADIOLOGY_BACKEND=local`). `HF_TOKEN` (a Space secret) is read where a request
is made and never stored here, so printing a config never shows it. Gradio itself reads `GRADIO_SERVER_PORT`.
"""

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
            "endpoint: the model or LoRA adapter name sent with each request (TGI `LORA_ADAPTERS` name; "
            "`transformers serve` wants its folder path). local: a merged folder, a base model, an adapter folder "
            "or embedded:base."
        ),
    )
    adapter: str | None = field(default=None, metadata=_help("local: a PEFT adapter folder loaded onto `model`."))
    timeout_s: float = field(default=60.0, metadata=_help("Longest wait for the endpoint before a friendly error."))
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
    def translate_hosts(self) -> list[str]:
        return [host.strip() for host in (self.translate_allowed_hosts or "").split(",") if host.strip()]

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


def _parse(raw: str, annotation, name: str):
    kind = next((kind for kind in (int, float) if kind.__name__ in str(annotation)), str)
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a {kind.__name__}.") from None
