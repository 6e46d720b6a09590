"""The endpoint flags of the eval runners: every `LLMClientConfig` field, declared once there, renamed here.

`eval.judge` and `eval.calibrate` spell the judge's endpoint `--judge-model`/`--judge-base-url` (the models under
test are the CSV's answer columns, not the judge); `eval.compare` takes its endpoints from `--model NAME=URL` and
keeps the rest (cache, limits, data-use flags).
"""

import dataclasses
from typing import Any

from ko_radiology.llm import LLMClientConfig

JUDGE_RENAMES = {"model": "judge_model", "base_url": "judge_base_url"}


def endpoint_options(name: str, renames: dict[str, str] | None = None, drop: tuple[str, ...] = ()) -> type:
    """A dataclass with `LLMClientConfig`'s fields (same types, defaults and help), some renamed, some dropped."""
    renames = renames or {}
    specs = []
    for item in dataclasses.fields(LLMClientConfig):
        if item.name in drop:
            continue
        kwargs: dict[str, Any] = {"metadata": item.metadata}
        if item.default is not dataclasses.MISSING:
            kwargs["default"] = item.default
        if item.default_factory is not dataclasses.MISSING:
            kwargs["default_factory"] = item.default_factory
        specs.append((renames.get(item.name, item.name), item.type, dataclasses.field(**kwargs)))
    return dataclasses.make_dataclass(name, specs)


JudgeEndpoint = endpoint_options("JudgeEndpoint", JUDGE_RENAMES)
"""`--judge-model`, `--judge-base-url` and every other client flag (`--cache-path`, `--allowed-hosts`, ...)."""


def client_config(options: Any, renames: dict[str, str] | None = None, **overrides: Any) -> LLMClientConfig:
    """The `LLMClientConfig` an `endpoint_options` instance stands for; `overrides` fill dropped fields."""
    back = {new: old for old, new in (renames or {}).items()}
    values = {back.get(item.name, item.name): getattr(options, item.name) for item in dataclasses.fields(options)}
    return LLMClientConfig(**{**values, **overrides})
