"""Streamed chat completions, for a person waiting on the answer (the Space, the terminal chat).

    with StreamingClient(LLMClientConfig(base_url="http://127.0.0.1:8000/v1", model="my-model")) as client:
        for piece in client.stream(LLMRequest(messages=[{"role": "user", "content": "안녕하세요"}], max_tokens=64)):
            print(piece, end="", flush=True)

The SDK client is `transport`'s, so a stream has the same data-use guard, proxy policy (none from the environment),
redirect policy and API key policy as every other call. Unlike `LLMClient`, nothing is cached and nothing retried: a
conversation is interactive, and a retry after part of an answer was shown would show it twice.
"""

from collections.abc import Iterator

import openai
from openai.types.chat import ChatCompletionChunk

from ko_radiology.llm.config import LLMClientConfig, LLMRequest
from ko_radiology.llm.errors import StreamError
from ko_radiology.llm.transport import HINTS, connection_failure, sync_sdk


class StreamingClient:
    """One OpenAI-compatible endpoint, answered as server-sent events; safe to share between threads.

    Args:
        config: Endpoint, key and `timeout_s` (the longest wait for the connection and for each next piece).

    Raises:
        DataUseError: If `config` would send credentialed data to an endpoint that is not allowed.
        ValueError: If the endpoint is remote and the API key variable is not set.
    """

    def __init__(self, config: LLMClientConfig):
        self.sdk, self.headers = sync_sdk(config)
        self.model = config.model
        self.endpoint = config.endpoint

    def stream(self, request: LLMRequest) -> Iterator[str]:
        """Yield each piece of the answer's text as the server sends it; role-only and empty chunks carry none.

        Closing the iterator (or leaving a `for` loop over it) closes the HTTP stream, which tells the server to stop.

        Raises:
            StreamError: If no stream could be opened, it broke off, or it ended without any text: a 200 that is not
                a stream (plain JSON, an HTML page) is a failure, not an empty answer.
        """
        body = {**request.body(self.model), "stream": True}
        options = {"headers": self.headers}
        try:
            events = self.sdk.post(
                "/chat/completions",
                body=body,
                cast_to=ChatCompletionChunk,
                options=options,
                stream=True,
                stream_cls=openai.Stream[ChatCompletionChunk],
            )
        except openai.APIError as exc:
            raise StreamError(failure_message(exc, self.endpoint)) from exc
        with events:
            texts = 0
            try:
                for chunk in events:
                    if chunk.choices and chunk.choices[0].delta.content:
                        texts += 1
                        yield chunk.choices[0].delta.content
            except (openai.APIError, ValueError) as exc:  # ValueError: an event whose data is not JSON
                raise StreamError(failure_message(exc, self.endpoint)) from exc
            if not texts:
                content_type = events.response.headers.get("content-type", "none")
                raise StreamError(
                    f"{self.endpoint} answered HTTP {events.response.status_code} with no streamed text "
                    f"(Content-Type {content_type}); check that base_url is an OpenAI-compatible server that streams."
                )

    def close(self) -> None:
        self.sdk.close()

    def __enter__(self) -> "StreamingClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def failure_message(exc: Exception, endpoint: str) -> str:
    """What went wrong, naming the (redacted) endpoint; a status error carries the start of the server's answer."""
    if isinstance(exc, openai.APITimeoutError):
        return f"{endpoint} sent nothing within timeout_s; raise it or check that the server is not overloaded."
    if isinstance(exc, openai.APIConnectionError):
        return f"{endpoint}: {connection_failure(exc)}; check that the server is up."
    if isinstance(exc, openai.APIStatusError):
        hint = HINTS.get(exc.status_code, "the server refused or failed the call")
        return f"{endpoint} answered HTTP {exc.status_code}: {exc.response.text[:300]} ({hint})"
    return f"{endpoint} sent a broken stream ({type(exc).__name__}: {str(exc)[:300]})"
