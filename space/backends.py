"""Where answers come from: an OpenAI-compatible endpoint, or the model in this process. Both stream text pieces.

A backend is `stream(messages, settings) -> Iterator[str]` plus `count_tokens` and `context_tokens`, so the app and
the terminal chat never know which one they talk to. Closing the iterator (the stop button, a visitor who leaves)
ends the generation: the endpoint's HTTP stream is closed, the local `generate` stops at its next token.
"""

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from huggingface_hub import InferenceClient

from ko_radiology.llm import estimate_tokens
from ko_radiology.models import load_model_and_tokenizer, local_base_for, resolve_model
from space.config import DEFAULT_ENDPOINT_CONTEXT_TOKENS, GenerationSettings, SpaceConfig


class BackendError(RuntimeError):
    """A generation that failed for a reason the visitor cannot fix (server down, slow, refusing)."""


class EndpointBackend:
    """`huggingface_hub.InferenceClient` against a Messages API; the token comes from `HF_TOKEN` only."""

    def __init__(self, config: SpaceConfig):
        let_endpoint_through_offline_mode(config.endpoint)
        self.model = config.model
        self.context_tokens = config.context_tokens or DEFAULT_ENDPOINT_CONTEXT_TOKENS
        token = os.environ.get("HF_TOKEN")  # a Space secret; never stored on the config, never logged
        self.client = InferenceClient(base_url=config.endpoint, token=token, timeout=config.timeout_s)

    def count_tokens(self, messages: list[dict]) -> int:
        return estimate_tokens(messages)

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        """Yield each content delta as the server sends it; role-only and empty chunks carry no text.

        The repetition penalty travels as `frequency_penalty = penalty - 1`: `transformers serve` turns that back into
        exactly `repetition_penalty`; TGI and vLLM read it as OpenAI's (additive) frequency penalty.
        """
        try:
            chunks = self.client.chat_completion(
                messages,
                model=self.model,
                stream=True,
                max_tokens=settings.max_new_tokens,
                temperature=settings.temperature,
                top_p=settings.top_p,
                frequency_penalty=round(settings.repetition_penalty - 1.0, 4) or None,
            )
            for chunk in chunks:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        except Exception as error:  # connection refused, timeout, HTTP 4xx/5xx, a broken stream
            raise BackendError(f"{type(error).__name__}: {error}") from error


def let_endpoint_through_offline_mode(endpoint: str) -> None:
    """`HF_HUB_OFFLINE=1` makes huggingface_hub refuse every request, the operator's own model server's too. Let that
    one host:port through and keep refusing the rest, so an offline Space still never reaches the Hub."""
    from huggingface_hub import constants, set_client_factory
    from huggingface_hub.utils import _http

    if not constants.is_offline_mode():
        return
    allowed = urlsplit(endpoint).netloc

    def block_all_but_endpoint(request) -> None:
        if f"{request.url.host}:{request.url.port}" != allowed and request.url.netloc.decode() != allowed:
            _http.hf_request_event_hook(request)

    set_client_factory(
        lambda: _http.httpx2.Client(event_hooks={"request": [block_all_but_endpoint]}, follow_redirects=True)
    )


class LocalBackend:
    """The model in this process, streamed with `TextIteratorStreamer`; one generation at a time (one CPU budget)."""

    def __init__(self, config: SpaceConfig):
        self.model, self.tokenizer = load_local_model(config.model, config.adapter)
        self.context_tokens = config.context_tokens or self.model.config.max_position_embeddings
        self.lock = threading.Lock()

    def count_tokens(self, messages: list[dict]) -> int:
        return len(self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True))

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop = threading.Event()

        class StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs) -> bool:
                return stop.is_set()

        inputs = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=300)
        sampling = {"do_sample": True, "temperature": settings.temperature, "top_p": settings.top_p}
        kwargs = {
            **inputs,
            "streamer": streamer,
            "max_new_tokens": settings.max_new_tokens,
            "repetition_penalty": settings.repetition_penalty,
            "stopping_criteria": StoppingCriteriaList([StopWhenAsked()]),
            **(sampling if settings.temperature > 0 else {"do_sample": False}),
        }
        failures: list[Exception] = []
        with self.lock:
            worker = threading.Thread(target=self._generate, args=(kwargs, streamer, failures), daemon=True)
            worker.start()
            try:
                yield from (piece for piece in streamer if piece)
            finally:  # GeneratorExit from the stop button lands here too
                stop.set()
                worker.join()
        if failures:
            raise BackendError(f"{type(failures[0]).__name__}: {failures[0]}") from failures[0]

    def _generate(self, kwargs: dict, streamer, failures: list[Exception]) -> None:
        try:
            self.model.generate(**kwargs)
        except Exception as error:  # surfaced in the chat by `stream`, not lost in a thread
            failures.append(error)
            streamer.end()


def load_local_model(model: str, adapter: str | None = None):
    """A merged or base folder, an adapter folder (its base read from `adapter_config.json`), or base + `adapter`."""
    if adapter is None and (Path(model) / "adapter_config.json").is_file():
        adapter_config = json.loads((Path(model) / "adapter_config.json").read_text())
        model, adapter = local_base_for(adapter_config["base_model_name_or_path"]), model
    base, tokenizer = load_model_and_tokenizer(resolve_model(model), dtype="float32")
    if adapter is None:
        return base.eval(), tokenizer
    from peft import PeftModel
    from transformers import AutoTokenizer

    # The adapter folder's tokenizer carries the chat template training used.
    return PeftModel.from_pretrained(base, adapter).eval(), AutoTokenizer.from_pretrained(adapter)


def build_backend(config: SpaceConfig) -> EndpointBackend | LocalBackend:
    return LocalBackend(config) if config.backend == "local" else EndpointBackend(config)
