"""Greedy answers from llama.cpp's `llama-server` on a GGUF of the model, several decoded at once: the fast path of
`eval.check` and `eval.compare` through the answer cache (`ko_radiology.answer_cache`).

    generator = LlamaCppGenerator(make_gguf, gguf_type="f32", slots=4)
    answers = cached_answers("out/adapters/KEY/adapter", questions, generator=generator)

`make_gguf(path, gguf_type)` returns the model's GGUF file; the caller supplies it (eval runs training's export
command: the library imports no part). The server runs on a free loopback port with `slots` sequences decoded in
parallel, each with room for the longest prompt and `max_new_tokens`, and is stopped however the run ends (Ctrl-C
too). The requests are the project's prompt format at temperature 0, one in flight per slot, each slot answering the
questions about its reports one after the other (`slot_queues`: the report's prompt prefix is then prefilled once per
report, not once per question), through the openai SDK built as the LLM client builds it (no environment proxy on
loopback).
"""

import queue
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from tqdm.auto import tqdm

from ko_radiology import llama_cpp
from ko_radiology.answer_cache import SaveAnswer
from ko_radiology.generation import Answer
from ko_radiology.llm.config import LLMClientConfig
from ko_radiology.llm.transport import sync_sdk
from ko_radiology.processes import SERVER_START_TIMEOUT_S, ServiceError, free_port, openai_url, start, stop, wait_ready
from ko_radiology.prompts import build_messages

SLOTS = 4
"""Sequences llama-server decodes at once. On 2 CPU cores 4 and 8 slots were as fast (a check's answers, Q8_0: 90.6
and 93.0 s, bench/bench_check_generation.py), and one sequence already decodes 54-67 tokens/s (llama-bench tg32)
against 66 for all slots together: decoding is compute-bound there, and the slots' gain is the prompt each reuses
(`slot_queues`)."""
SERVER_STOP = "stop"
"""llama-server's `finish_reason` for an answer that ended with an end-of-generation token. It does not say which
(`<end_of_turn>` or `<eos>`), so this is the answer's `stop_token`."""
TEMPLATE_TOKENS = 64
"""Room for the chat template's own tokens (turn markers, `<bos>`) on top of the messages' text."""
REQUEST_TIMEOUT_S = 1800.0
"""One answer on a busy 2-core CPU: up to `max_new_tokens` at a few tokens/s, after the slots ahead of it."""


@dataclass(frozen=True)
class LlamaCppGenerator:
    """Answers through llama-server on `make_gguf(path, gguf_type)`; an `AnswerGenerator` of the answer cache."""

    backend: ClassVar[str] = "llama.cpp"
    make_gguf: Callable[[str, str], Path]
    gguf_type: str = "f32"
    slots: int = SLOTS

    def settings(self) -> dict:
        """The backend, the GGUF type and the llama.cpp release: each can change a greedy answer."""
        return {"backend": self.backend, "gguf_type": self.gguf_type, "llama_cpp": llama_cpp.LLAMA_CPP_PYTHON_VERSION}

    def generate(self, path: str, questions: list[tuple[str, str]], max_new_tokens: int, save: SaveAnswer) -> None:
        server = llama_cpp.binary("llama-server")
        if server.path is None:
            raise ValueError(f"The llama.cpp backend needs llama-server: {server.reason}")
        gguf = self.make_gguf(path, self.gguf_type)
        context = self.slots * context_per_slot(questions, max_new_tokens)
        # --swa-full: with Gemma 3 270M's 512-token sliding window llama-server otherwise kept too little of a slot's
        # KV cache to reuse it and prefilled every question's whole prompt again (348 tokens instead of 14 here).
        flags = ["--ctx-size", str(context), "--swa-full"]
        service = llama_cpp.server_service(gguf, free_port(), gguf.parent, self.slots, *flags)
        start(service)
        try:
            wait_ready(service, SERVER_START_TIMEOUT_S)
            answer_all(openai_url(service), questions, max_new_tokens, self.slots, save)
        except ServiceError:
            raise
        except Exception as error:  # a refused or failed request: what the server said about it
            raise ServiceError(
                f"llama-server failed to answer ({error}). End of {service.log_path}:\n{service.log_tail()}"
            ) from error
        finally:
            stop(service)


def context_per_slot(questions: list[tuple[str, str]], max_new_tokens: int) -> int:
    """Context one slot needs for the longest prompt and its answer: a token holds at least one byte of text, so the
    UTF-8 length of the messages bounds their tokens."""
    longest = max(
        sum(len(message["content"].encode("utf-8")) for message in build_messages(*question)) for question in questions
    )
    return longest + TEMPLATE_TOKENS + max_new_tokens


def slot_queues(questions: list[tuple[str, str]], slots: int) -> list[list[int]]:
    """Question indices per slot, as many on each: the questions grouped by report, then cut into `slots` consecutive
    runs, so a slot asks about one report several times in a row and each question after its first finds the system
    prompt and the report already in the slot's KV cache (a check asks about 10 questions per report, and the prompt,
    not the short answer, is most of a fine-tuned model's work). Every slot is used even with fewer reports than
    slots; a report cut between two slots is prefilled once on each."""
    by_report: dict[str, list[int]] = defaultdict(list)
    for index, (report, _) in enumerate(questions):
        by_report[report].append(index)
    ordered = [index for indices in by_report.values() for index in indices]
    count = min(slots, len(ordered))
    return [ordered[len(ordered) * slot // count : len(ordered) * (slot + 1) // count] for slot in range(count)]


def answer_all(
    base_url: str, questions: list[tuple[str, str]], max_new_tokens: int, slots: int, save: SaveAnswer
) -> None:
    """Send every question, one request in flight per slot, pinned to it (`id_slot`), and save each answer as it
    arrives (in this thread: the store is not shared between threads). A failed request stops the run; the caller
    stops the server, which ends the requests still in flight."""
    config = LLMClientConfig(model="gguf", base_url=base_url, api_key_env=None, timeout_s=REQUEST_TIMEOUT_S)
    client, headers = sync_sdk(config)
    arrived: queue.Queue[tuple[int, Answer | Exception]] = queue.Queue()
    stopping = threading.Event()

    def ask(question: tuple[str, str], slot: int) -> Answer:
        completion = client.chat.completions.create(
            model=config.model,
            messages=build_messages(*question),
            max_tokens=max_new_tokens,
            temperature=0.0,
            extra_headers=headers,
            extra_body={"id_slot": slot, "cache_prompt": True},
        )
        return to_answer(completion.choices[0].finish_reason, completion.choices[0].message.content, completion.usage)

    def work(slot: int, indices: list[int]) -> None:
        for index in indices:
            if stopping.is_set():
                return
            try:
                arrived.put((index, ask(questions[index], slot)))
            except Exception as error:  # handed to the main thread, which raises it
                arrived.put((index, error))
                return

    for slot, indices in enumerate(slot_queues(questions, slots)):
        threading.Thread(target=work, args=(slot, indices), name=f"llama-server-slot-{slot}", daemon=True).start()
    try:
        with tqdm(total=len(questions), desc="Generating (llama.cpp)") as progress:
            for _ in questions:
                index, answer = arrived.get()
                if isinstance(answer, Exception):
                    raise answer
                save(index, answer)
                progress.update()
    finally:
        stopping.set()
        client.close()


def to_answer(finish_reason: str, content: str | None, usage) -> Answer:
    """An answer as `ko_radiology.generation` makes one: a stopped answer's tokens without the end-of-generation token
    (llama-server counts it in `completion_tokens`), a cut one's all `max_tokens`."""
    if finish_reason not in (SERVER_STOP, "length"):
        raise ValueError(f"llama-server ended an answer with finish_reason {finish_reason!r}, not stop or length.")
    stopped = finish_reason == SERVER_STOP
    tokens = usage.completion_tokens - 1 if stopped else usage.completion_tokens
    return Answer((content or "").strip(), stopped, tokens, SERVER_STOP if stopped else None)
