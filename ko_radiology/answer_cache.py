"""Greedy answers of a local model, cached per question: a quality check, a comparison run and a rerun of either
never generate the same answer twice.

    answers = cached_answers("out/adapters/KEY/adapter", [(report_ko, question), ...])
    answers = cached_answers(path, questions, generator=LlamaCppGenerator(make_gguf))  # llama_cpp_answers.py

Greedy decoding makes an answer a function of the model's files, the prompt and the decoding settings, so those are
the key; the generator adds what else fixes its answers (`settings()`: the dtype for transformers; the backend, GGUF
type and llama.cpp version for llama.cpp), so an answer of one backend is never served as another's. The untuned
base never stops by itself and answers every question with all 256 tokens: it is the slow half of every check and
comparison, and after the first run it costs nothing. Only when some answer is missing is the model loaded. The
answers live in the LLM client's SQLite store (`ko_radiology.llm.cache.ResponseStore`), keyed like an endpoint's: the
request body a chat endpoint would be sent, with the model folder as `model` and its files' fingerprint and the
generator's settings as extra fields; the file is `$KO_RADIOLOGY_CACHE/answers.sqlite`, shared by every run.
"""

import gc
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol

from tqdm.auto import tqdm

from ko_radiology.cache import cache_dir
from ko_radiology.generation import Answer, generate_answers, load_for_generation
from ko_radiology.hardware import default_dtype
from ko_radiology.llm.cache import Completion, LLMResult, ResponseStore, cache_key
from ko_radiology.llm.config import LLMRequest
from ko_radiology.prompts import build_messages

MODEL_FILES = ("*.safetensors", "*.bin", "adapter_config.json", "config.json", "tokenizer.json", "chat_template.jinja")
LENGTH = "length"
"""`finish_reason` of an answer cut at `max_new_tokens`; a stopped one records the stop token it ended with."""
BATCH_SIZE = 8
"""Questions per `generate()` call. 16 was 1.1-1.2x as fast on 2 CPU cores (bench/bench_check_generation.py) but gave
other bf16 answers to 9 of 40 questions (the sums' order follows the batch's shape); 8 keeps the published checks
reproducible."""

SaveAnswer = Callable[[int, Answer], None]
"""Stores the answer to the question at an index of the list a generator was given, as soon as it is generated."""


class AnswerGenerator(Protocol):
    """What answers the questions the cache is missing: transformers here, llama.cpp in
    `ko_radiology.llama_cpp_answers`."""

    backend: ClassVar[str]

    def settings(self) -> dict:
        """What, besides the model's files, the prompt and `max_new_tokens`, fixes an answer: part of its key."""

    def generate(self, path: str, questions: list[tuple[str, str]], max_new_tokens: int, save: SaveAnswer) -> None:
        """Answer every `(report, instruction)` greedily, calling `save(index, answer)` as each is generated."""


@dataclass(frozen=True)
class TransformersGenerator:
    """The model loaded by transformers (an adapter merged in memory), batched with left padding."""

    backend: ClassVar[str] = "transformers"
    dtype: str = default_dtype("check")
    """The quality check's (bf16 where the CPU computes it natively), so `eval.check` and `eval.compare` ask for the
    same answers: the judge scores the answers whose reference metrics the check reports, and the base's
    never-stopping answers are generated once per machine, not once per dtype."""
    batch_size: int = BATCH_SIZE

    def settings(self) -> dict:
        return {"dtype": self.dtype}

    def generate(self, path: str, questions: list[tuple[str, str]], max_new_tokens: int, save: SaveAnswer) -> None:
        model, tokenizer = load_for_generation(path, dtype=self.dtype)
        for start in tqdm(range(0, len(questions), self.batch_size), desc="Generating"):
            batch = questions[start : start + self.batch_size]
            for offset, answer in enumerate(
                generate_answers(model, tokenizer, batch, max_new_tokens, self.batch_size)
            ):
                save(start + offset, answer)
        del model
        gc.collect()  # two 270M models in float32 are 2 GB; a check loads one after the other


def answers_store_path() -> Path:
    return cache_dir() / "answers.sqlite"


def model_fingerprint(path: str) -> tuple[str, list]:
    """The model's folder and the name, size and modification time of its weight, config and template files: a model
    retrained or re-exported into the same folder gets a new key."""
    folder = Path(path)
    if not folder.is_dir():
        return path, []
    files = sorted({file for pattern in MODEL_FILES for file in folder.glob(pattern)})
    return str(folder.resolve()), [[file.name, file.stat().st_size, file.stat().st_mtime_ns] for file in files]


def request_body(model: str, files: list, question: tuple[str, str], max_new_tokens: int, settings: dict) -> dict:
    """The body a chat endpoint serving this model would be sent (greedy: temperature 0), plus what else fixes a
    local answer."""
    request = LLMRequest(
        build_messages(*question), max_tokens=max_new_tokens, extra={"model_files": files, **settings}
    )
    return request.body(model)


def to_completion(answer: Answer) -> Completion:
    finish_reason = answer.stop_token if answer.stopped else LENGTH
    return Completion(answer.text, finish_reason, input_tokens=0, output_tokens=answer.num_tokens)


def to_answer(result: LLMResult) -> Answer:
    stopped = result.finish_reason != LENGTH
    return Answer(result.text, stopped, result.output_tokens, result.finish_reason if stopped else None)


def cached_answers(
    path: str,
    questions: list[tuple[str, str]],
    max_new_tokens: int = 256,
    generator: AnswerGenerator | None = None,
) -> list[Answer]:
    """Answers of the adapter or merged model in `path` to `(report, instruction)` pairs, generating only the missing
    with `generator` (default: `TransformersGenerator()`).

    Each answer is stored as soon as it is generated, so an interrupted run resumes where it stopped. The missing
    questions go to the generator grouped by length; an answer batched differently could differ in the last
    floating-point bits, which greedy decoding turns into a different token only on a near-tie, and the first answer
    stored is kept.
    """
    generator = generator or TransformersGenerator()
    model, files = model_fingerprint(path)
    settings = generator.settings()
    bodies = [request_body(model, files, question, max_new_tokens, settings) for question in questions]
    keys = [cache_key(body) for body in bodies]
    store = ResponseStore(answers_store_path(), run_id=uuid.uuid4().hex)
    try:
        cached = store.cached_keys(keys)
        for key in cached:
            store.record(key, model, "cached")
        asked = {key: (body, question) for key, body, question in zip(keys, bodies, questions, strict=True)}
        missing = sorted((key for key in asked if key not in cached), key=lambda key: len("".join(asked[key][1])))
        if not missing:
            print(f"All {len(questions)} answers of {path} from the cache ({store.path}).", flush=True)
        else:
            print(f"Answering {len(missing)} of {len(questions)} questions with {path} ...", flush=True)

            def save(index: int, answer: Answer) -> None:
                body = asked[missing[index]][0]
                store.save(missing[index], body, to_completion(answer), "sent", cost=0.0)

            generator.generate(path, [asked[key][1] for key in missing], max_new_tokens, save)
        return [to_answer(store.get(key)) for key in keys]
    finally:
        store.close()
