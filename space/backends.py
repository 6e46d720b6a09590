"""Where answers come from: an OpenAI-compatible endpoint, or the model in this process. Both stream text pieces.

A backend is `stream(messages, settings) -> Iterator[str]` plus `count_tokens` and `context_tokens`, so the app and
the terminal chat never know which one they talk to. Closing the iterator (the stop button, a visitor who leaves)
ends the generation: the endpoint's HTTP stream is closed, the local `generate` stops at its next token.
"""

import json
import threading
from collections.abc import Iterator
from pathlib import Path

from ko_radiology.hardware import default_dtype
from ko_radiology.llm import DataUseError, LLMClientConfig, LLMRequest, StreamError, StreamingClient, estimate_tokens
from ko_radiology.model_loading import load_model_and_tokenizer, local_base_for, resolve_model
from space.config import DEFAULT_ENDPOINT_CONTEXT_TOKENS, ENV_PREFIX, GenerationSettings, SpaceConfig


class BackendError(RuntimeError):
    """A generation that failed for a reason the visitor cannot fix (server down, slow, refusing)."""


class EndpointBackend:
    """An OpenAI-compatible endpoint, streamed through `ko_radiology.llm` like every other call to a model server:
    the builder's PhysioNet guard (a visitor's report may be MIMIC-CXR text), no environment proxies, no redirects.

    The bearer key is the `HF_TOKEN` secret, read from the environment by the client, never stored or logged. A remote
    endpoint needs it (the Space refuses to start without it); loopback and allowed hosts get it only when it is set.

    Raises:
        DataUseError: If the endpoint is neither loopback nor an allowed host, and not both acknowledgements are set.
        ValueError: If no model name is set, or the endpoint is remote and `HF_TOKEN` is not set.
    """

    def __init__(self, config: SpaceConfig):
        if not config.model:
            raise ValueError(
                f"The endpoint backend needs {ENV_PREFIX}MODEL (--model): the name the server serves, e.g. the TGI "
                "LoRA adapter name or the folder `transformers serve` was given."
            )
        self.context_tokens = config.context_tokens or DEFAULT_ENDPOINT_CONTEXT_TOKENS
        settings = client_config(config)
        try:
            self.client = StreamingClient(settings)
        except DataUseError as error:
            raise DataUseError(f"{error} {SPACE_DATA_USE_SETTINGS}") from None
        except ValueError as error:  # a remote endpoint without its key
            raise ValueError(f"{error} {SPACE_KEY_SETTINGS}") from None

    def count_tokens(self, messages: list[dict]) -> int:
        return estimate_tokens(messages)

    def stream(self, messages: list[dict], settings: GenerationSettings) -> Iterator[str]:
        """Yield each piece of the answer as the server sends it.

        The repetition penalty travels as `frequency_penalty = penalty - 1`: `transformers serve` turns that back into
        exactly `repetition_penalty`; TGI and vLLM read it as OpenAI's (additive) frequency penalty.

        Raises:
            BackendError: If the call failed, or the server's 200 carried no streamed text.
        """
        penalty = round(settings.repetition_penalty - 1.0, 4) or None
        sampling = {"top_p": settings.top_p, "frequency_penalty": penalty}
        request = LLMRequest(messages, settings.temperature, settings.max_new_tokens, extra=sampling)
        try:
            yield from self.client.stream(request)
        except StreamError as error:
            raise BackendError(str(error)) from error


SPACE_DATA_USE_SETTINGS = (
    f"In the Space these are the variables {ENV_PREFIX}ALLOWED_HOSTS, {ENV_PREFIX}ALLOW_REMOTE_ENDPOINT=true and "
    f"{ENV_PREFIX}NO_RETENTION_CONFIRMED=true."
)


SPACE_KEY_SETTINGS = (
    f"In the Space, add HF_TOKEN as a secret; a server you run yourself can instead be listed in "
    f"{ENV_PREFIX}ALLOWED_HOSTS, and gets no key."
)


def client_config(config: SpaceConfig) -> LLMClientConfig:
    """The endpoint as `ko_radiology.llm` sees it: reports typed by visitors, of unknown origin (`user`)."""
    return config.endpoint_options().client_config(
        model=config.model, base_url=config.endpoint, data_provenance="user"
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
    base, tokenizer = load_model_and_tokenizer(resolve_model(model), dtype=default_dtype("serve"))
    if adapter is None:
        return base.eval(), tokenizer
    from peft import PeftModel
    from transformers import AutoTokenizer

    # The adapter folder's tokenizer carries the chat template training used.
    return PeftModel.from_pretrained(base, adapter).eval(), AutoTokenizer.from_pretrained(adapter)


def build_backend(config: SpaceConfig) -> EndpointBackend | LocalBackend:
    return LocalBackend(config) if config.backend == "local" else EndpointBackend(config)
