"""Greedy answers of a local model, cached per question: a quality check, a comparison run and a rerun of either
never generate the same answer twice.

    answers = cached_answers("out/adapters/KEY/adapter", [(report_ko, question), ...])

Greedy decoding makes an answer a function of the model's files, the prompt and the decoding settings, so those are
the key. The untuned base never stops by itself and answers every question with all 256 tokens: it is the slow half
of every check and comparison, and after the first run it costs nothing. Only when some answer is missing is the
model loaded. The cache lives under `$KO_RADIOLOGY_CACHE/answers/`, one JSON file per model and settings.
"""

import dataclasses
import gc
import hashlib
import json
from pathlib import Path

from tqdm.auto import tqdm

from ko_radiology.atomic_io import write_text_atomically
from ko_radiology.cache import cache_dir
from ko_radiology.generation import Answer, generate_answers, load_for_generation
from ko_radiology.hardware import default_dtype
from ko_radiology.prompts import SYSTEM_PROMPT

MODEL_FILES = ("*.safetensors", "*.bin", "adapter_config.json", "config.json", "tokenizer.json", "chat_template.jinja")


def model_fingerprint(path: str) -> list:
    """The model's folder and the name, size and modification time of its weight, config and template files: a model
    retrained or re-exported into the same folder gets a new key."""
    folder = Path(path)
    if not folder.is_dir():
        return [path]
    files = sorted({file for pattern in MODEL_FILES for file in folder.glob(pattern)})
    return [str(folder.resolve()), [(file.name, file.stat().st_size, file.stat().st_mtime_ns) for file in files]]


def cache_file(path: str, max_new_tokens: int, dtype: str) -> Path:
    settings = [model_fingerprint(path), max_new_tokens, dtype, SYSTEM_PROMPT]
    key = hashlib.sha256(json.dumps(settings, ensure_ascii=False).encode()).hexdigest()[:16]
    return cache_dir() / "answers" / f"{key}.json"


def question_key(report: str, instruction: str) -> str:
    return hashlib.sha256(json.dumps([report, instruction], ensure_ascii=False).encode()).hexdigest()


def cached_answers(
    path: str,
    questions: list[tuple[str, str]],
    max_new_tokens: int = 256,
    batch_size: int = 8,
    dtype: str = default_dtype("serve"),
) -> list[Answer]:
    """Answers of the adapter or merged model in `path` to `(report, instruction)` pairs, generating only the missing.

    Each batch is stored as soon as it is generated, so an interrupted run resumes where it stopped. Batches group the
    missing questions by length; an answer batched differently could differ in the last floating-point bits, which
    greedy decoding turns into a different token only on a near-tie, and the first answer stored is kept.
    """
    file = cache_file(path, max_new_tokens, dtype)
    stored = json.loads(file.read_text(encoding="utf-8")) if file.is_file() else {}
    asked = dict(zip((question_key(*question) for question in questions), questions, strict=True))
    missing = sorted((key for key in asked if key not in stored), key=lambda key: len("".join(asked[key])))
    if not missing:
        print(f"All {len(questions)} answers of {path} from the cache ({file}).", flush=True)
    else:
        print(f"Answering {len(missing)} of {len(questions)} questions with {path} ...", flush=True)
        model, tokenizer = load_for_generation(path, dtype=dtype)
        for start in tqdm(range(0, len(missing), batch_size), desc="Generating"):
            batch = missing[start : start + batch_size]
            answers = generate_answers(model, tokenizer, [asked[key] for key in batch], max_new_tokens, batch_size)
            stored.update({key: dataclasses.asdict(answer) for key, answer in zip(batch, answers, strict=True)})
            write_text_atomically(file, json.dumps(stored, ensure_ascii=False))
        del model
        gc.collect()  # two 270M models in float32 are 2 GB; a check loads one after the other
    return [Answer(**stored[question_key(*question)]) for question in questions]
