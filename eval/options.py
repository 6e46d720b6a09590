"""The judge's endpoint flags: `--judge-model`/`--judge-base-url` (the models under test are the CSV's answer columns,
not the judge), then every `EndpointOptions` flag (`--cache-path`, `--allowed-hosts`, ...). `eval.compare` takes its
endpoints from `--model NAME=URL` and uses `EndpointOptions` as it is.
"""

from dataclasses import dataclass, field
from typing import Any

from ko_radiology.llm import EndpointOptions, LLMClientConfig
from ko_radiology.llm.options import client_field


@dataclass(frozen=True)
class JudgeEndpoint(EndpointOptions):
    """`eval.judge`'s and `eval.calibrate`'s judge: its model and URL, then how calls to it go."""

    judge_model: str = field(kw_only=True, metadata={"help": "Model name the judge endpoint serves (e.g. gpt-4o)."})
    judge_base_url: str = client_field("base_url")

    def client_config(self, **fixed: Any) -> LLMClientConfig:
        return super().client_config(model=self.judge_model, base_url=self.judge_base_url, **fixed)
