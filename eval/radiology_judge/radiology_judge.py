"""Radiology judge: an LLM judge of Korean answers about Korean chest X-ray reports, as an `evaluate` module."""

import datasets
import evaluate

from ko_radiology.judge import (  # From: git+https://github.com/ko-radiology-gpt/ko-radiology-gpt@v0.1.0
    CRITERIA,
    evaluate_with_judge,
)

_CITATION = """\
@misc{ko-radiology-gpt,
  title  = {Ko-Radiology-GPT: Korean question answering on chest X-ray reports},
  author = {Ko-Radiology-GPT contributors},
  year   = {2026},
  url    = {https://github.com/ko-radiology-gpt/ko-radiology-gpt}
}
@inproceedings{zheng2023judging,
  title     = {Judging {LLM}-as-a-Judge with {MT}-Bench and Chatbot Arena},
  author    = {Zheng, Lianmin and Chiang, Wei-Lin and Sheng, Ying and others},
  booktitle = {NeurIPS Datasets and Benchmarks},
  year      = {2023}
}
"""

_DESCRIPTION = """\
An LLM judge scores Korean answers to questions about a Korean chest X-ray report on a 1-4 rubric. Configs:
`accuracy`, `conciseness`, `consistency`, `understandability` (the original Ko-Radiology-GPT rubrics, rewritten for
Korean) and `similarity` (an answer against a reference answer). A failed or unreadable judgement is counted in
`num_failures` and left out of the mean, never scored 0. Calls go through the project's LLM client: cached (re-scoring
is free), rate limited, retried, and refused for remote endpoints unless the data may go there (PhysioNet rules).
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list[str]` or `list[list[str]]`): The answers to judge; a list of answers per sample (one per model)
        judges them together in one call, in a shuffled order.
    reports (`list[str]`): The Korean report each answer is about.
    questions (`list[str]`): The question each answer answers.
    references (`list[str]`, only for `similarity`): The reference answer of each sample.
    judge_model (`str`): Model name the judge endpoint serves.
    judge_base_url (`str`): OpenAI-compatible base URL of the judge, e.g. `http://127.0.0.1:8000/v1`. The API key is
        read from the environment variable named by `api_key_env` (default `OPENAI_API_KEY`), never passed here.
    answers_per_call (`str`): `all` (default) or `one`.
    all_positions (`bool`): Judge every rotation of each sample's answers and report `swap_flip_rate`.
    seed (`int`): Seed of the shown order and the bootstrap (default 0).
    structured_output (`bool`): Send a JSON-schema `response_format` (default True); False for servers that ignore it.
    **endpoint_options: Any other `LLMClientConfig` field (`cache_path`, `api_key_env`, `max_concurrency`,
        `requests_per_minute`, `allowed_hosts`, `allow_remote_endpoint`, `no_retention_confirmed`, prices, ...).
Returns:
    mean, ci_low, ci_high (`float` or None; a list per answer position for list predictions): mean 1-4 score of the
        judged samples with its bootstrap confidence interval.
    num_samples, num_failures (`int`), failure_rate (`float`).
    scores (`list`; None marks a failure), rationales, errors (`list[str | None]`).
    swap_flip_rate (`float` or None), longer_wins_rate (`float` or None), longer_wins_pairs (`int`).
    criterion, judge_model, seed, confidence.
Examples:
    >>> judge = evaluate.load("eval/radiology_judge", "accuracy")  # doctest: +SKIP
    >>> results = judge.compute(
    ...     predictions=["우측 폐하엽에 폐렴이 있습니다."],
    ...     reports=["우측 폐하엽 경화, 폐렴에 합당함."],
    ...     questions=["폐렴이 있나요?"],
    ...     judge_model="gpt-4o",
    ...     judge_base_url="http://127.0.0.1:8000/v1",
    ... )  # doctest: +SKIP
    >>> results["mean"], results["num_failures"]  # doctest: +SKIP
    (4.0, 0)
"""


def _features(config_name: str) -> list[datasets.Features]:
    """Plain strings, or a list of answers per sample; `similarity` also takes references."""
    context = {"reports": datasets.Value("string"), "questions": datasets.Value("string")}
    if CRITERIA[config_name].needs_reference:
        context["references"] = datasets.Value("string")
    return [
        datasets.Features({"predictions": datasets.Value("string"), **context}),
        datasets.Features({"predictions": datasets.Sequence(datasets.Value("string")), **context}),
    ]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class RadiologyJudge(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in CRITERIA:
            raise KeyError(
                f"Unknown config {self.config_name!r}; use evaluate.load(path, NAME) with NAME one of "
                f"{', '.join(CRITERIA)}."
            )
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=_features(self.config_name),
            codebase_urls=["https://github.com/ko-radiology-gpt/ko-radiology-gpt"],
        )

    def _compute(self, predictions, reports, questions, references=None, judge_model=None, **options) -> dict:
        return evaluate_with_judge(
            self.config_name, predictions, reports, questions, references, judge_model=judge_model, **options
        )
