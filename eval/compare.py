"""Ask every model the same questions, in the one prompt format, and collect a `NAME_answer` column per model.

    python -m eval.compare --input questions.csv --out answers.csv \\
        --model base=embedded:base \\
        --model tuned=out/gemma3-270m-ko-radiology-lora \\
        --model served=http://127.0.0.1:8000/v1#ko-radiology

`--input` is a CSV with `report` and `question` columns (and `reference`, `id` if you have them), or a dataset folder
(`load_dataset(DIR, "qa")`, the builder's Hub folder; `--split test` by default). A target is an OpenAI-compatible
base URL (the model name it serves after `#`, default NAME), an adapter folder, a merged model folder or
`embedded:base`. Resumable: rows that already have an answer are kept; a local model's answers are cached per
question as each batch is generated (`ko_radiology.answer_cache`), an endpoint's in the LLM client's cache.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path

from ko_radiology.cpu_blas import load_mkl_vendor_shim

load_mkl_vendor_shim()  # before torch is imported: local models answer faster on AMD CPUs

import pandas as pd
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id

from eval.local_answers import BACKENDS, DEFAULT_GGUF_TYPE, GGUF_TYPES, local_generator
from eval.tables import ANSWER_SUFFIX, ID, QUESTION, REFERENCE, REPORT, read_table, require_columns, write_table
from ko_radiology.answer_cache import BATCH_SIZE
from ko_radiology.arguments import ConfigArgumentParser
from ko_radiology.cli import run_cli
from ko_radiology.embedded_models import EMBEDDED_PREFIX
from ko_radiology.llama_cpp_answers import SLOTS
from ko_radiology.llm import EndpointOptions, LLMClient, LLMRequest
from ko_radiology.llm.config import check_base_url
from ko_radiology.llm.data_use import redact_url
from ko_radiology.model_loading import looks_like_local_path
from ko_radiology.prompts import build_messages

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass
class CompareOptions:
    input: str = field(metadata={"help": "questions.csv (report, question[, reference, id]) or a dataset folder."})
    out: str = field(metadata={"help": "answers.csv to write (and resume from)."})
    model: list[str] = field(
        default_factory=list,
        metadata={
            "help": "NAME=URL[#served-model], NAME=ADAPTER_OR_MERGED_DIR or NAME=embedded:base; repeat per model.",
            "action": "extend",
        },
    )
    split: str = field(default="test", metadata={"help": "Split of a dataset folder to ask."})
    limit: int | None = field(default=None, metadata={"help": "Ask only the first N questions."})
    max_new_tokens: int = field(default=256, metadata={"help": "Most tokens per answer."})
    backend: str = field(
        default="auto", metadata={"help": f"How local models answer: {', '.join(BACKENDS)} (eval/local_answers.py)."}
    )
    gguf_type: str = field(
        default=DEFAULT_GGUF_TYPE, metadata={"help": f"llama.cpp: the GGUF's type ({', '.join(GGUF_TYPES)})."}
    )
    slots: int = field(default=SLOTS, metadata={"help": "llama.cpp: answers decoded at once."})
    batch_size: int = field(default=BATCH_SIZE, metadata={"help": "transformers: questions per generate() call."})


@dataclass(frozen=True)
class ModelSpec:
    name: str
    target: str
    served_model: str | None = None

    @property
    def is_endpoint(self) -> bool:
        return self.target.startswith(("http://", "https://"))


def parse_model_spec(spec: str) -> ModelSpec:
    name, sep, target = spec.partition("=")
    if not sep or not target or not _NAME.fullmatch(name):
        shown = redact_url(spec)  # it may hold a URL with a key
        raise ValueError(f"--model {shown!r} is not NAME=TARGET (NAME of letters, digits, _.-), e.g. tuned=out/lora.")
    if "://" in target:  # a URL, never a folder: only http(s) with a host and a valid port
        url, _, served = target.partition("#")
        check_base_url(url)
        return ModelSpec(name, url, served or name)
    if not (target.startswith(EMBEDDED_PREFIX) or looks_like_local_path(target) or is_hub_id(target)):
        raise ValueError(
            f"--model {name}={redact_url(target)!r} is neither an http(s) URL, a folder, embedded:base nor a Hub id "
            "(org/name); a URL needs its scheme, e.g. http://127.0.0.1:8000/v1."
        )
    return ModelSpec(name, target)


def is_hub_id(name: str) -> bool:
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def read_questions(path: str, split: str) -> pd.DataFrame:
    """Questions from a CSV, or from a dataset folder's `qa` config (report_ko, instruction, answer)."""
    if Path(path).is_dir():
        from ko_radiology.dataset_folders import load_dataset_config

        rows = load_dataset_config(str(path), "qa", split=split).to_pandas()
        rename = {"id": ID, "report_ko": REPORT, "instruction": QUESTION, "answer": REFERENCE}
        return rows[list(rename)].rename(columns=rename)
    table = read_table(path)
    require_columns(table, path, [REPORT, QUESTION], "Name the report text `report` and the question `question`.")
    return table


def resume_table(questions: pd.DataFrame, out: str) -> pd.DataFrame:
    """The questions with the answers `out` already holds; refuses an `out` written for other questions."""
    if not Path(out).is_file():
        return questions
    done = read_table(out)
    same = len(done) == len(questions) and all(
        column in done and done[column].tolist() == questions[column].tolist() for column in (REPORT, QUESTION)
    )
    if not same:
        raise ValueError(f"{out} holds answers to other questions; pass a new --out or delete {out}.")
    return done


def ask_endpoint(
    spec: ModelSpec, table: pd.DataFrame, todo: list[int], options: CompareOptions, endpoint: EndpointOptions
) -> None:
    """Answers from an OpenAI-compatible endpoint through the project's client (cache, limits, data-use guard)."""
    config = endpoint.client_config(model=spec.served_model, base_url=spec.target)
    requests = [
        LLMRequest(build_messages(table.at[i, REPORT], table.at[i, QUESTION]), max_tokens=options.max_new_tokens)
        for i in todo
    ]
    with LLMClient(config) as client:
        outcome = client.run_many(requests, desc=f"{spec.name} answers")
    for i, result in zip(todo, outcome.results, strict=True):
        if result is not None:
            table.at[i, spec.name + ANSWER_SUFFIX] = result.text.strip()
    if outcome.failures:
        print(f"{spec.name}: {len(outcome.failures)} questions failed and stay empty; run again to retry them.")
        print(outcome.summary())


def ask_local(spec: ModelSpec, table: pd.DataFrame, todo: list[int], options: CompareOptions) -> None:
    """Greedy answers from an adapter or merged folder. They are cached per question as each batch is generated
    (`ko_radiology.answer_cache`): an interrupted run resumes there, and answers `eval.check` already generated
    cost nothing (both generate in the check's dtype)."""
    from ko_radiology.answer_cache import cached_answers
    from ko_radiology.generation import is_adapter
    from ko_radiology.model_loading import resolve_model

    path = spec.target if is_adapter(spec.target) else resolve_model(spec.target)
    questions = [(table.at[i, REPORT], table.at[i, QUESTION]) for i in todo]
    generator = local_generator(path, options.backend, options.gguf_type, options.slots, batch_size=options.batch_size)
    answers = cached_answers(path, questions, options.max_new_tokens, generator)
    for i, answer in zip(todo, answers, strict=True):
        table.at[i, spec.name + ANSWER_SUFFIX] = answer.text


def run(options: CompareOptions, endpoint: EndpointOptions) -> int:
    specs = [parse_model_spec(spec) for spec in options.model]
    if not specs:
        raise ValueError("Pass at least one --model NAME=TARGET.")
    if len({spec.name for spec in specs}) != len(specs):
        raise ValueError("Two --model options share a NAME; each model needs its own column name.")
    if options.slots < 1 or options.batch_size < 1:
        raise ValueError(f"--slots {options.slots} --batch_size {options.batch_size}: pass 1 or more.")
    questions = read_questions(options.input, options.split)
    questions = questions.head(options.limit) if options.limit else questions
    table = resume_table(questions.reset_index(drop=True), options.out)
    for spec in specs:
        column = spec.name + ANSWER_SUFFIX
        if column not in table:
            table[column] = ""
        todo = [i for i, answer in enumerate(table[column]) if not str(answer).strip()]
        print(f"{spec.name}: {len(table) - len(todo)} answered before, {len(todo)} to ask")
        if todo and spec.is_endpoint:
            ask_endpoint(spec, table, todo, options, endpoint)
        elif todo:
            ask_local(spec, table, todo, options)
        write_table(table, options.out)
    print(f"→ {options.out}")
    return 0


def compare_command(argv: list[str]) -> int:
    parser = ConfigArgumentParser((CompareOptions, EndpointOptions), prog="python -m eval.compare")
    return run(*parser.parse_args_and_config(argv))


def main(argv: list[str] | None = None) -> int:
    return run_cli(compare_command, argv)


if __name__ == "__main__":
    raise SystemExit(main())
