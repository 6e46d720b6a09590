"""`evaluate_with_judge`: what the `evaluate` module's `compute` does, as a plain function with a flat dict result.

The module folder (`eval/radiology_judge/`) stays a thin wrapper around this, the way `evaluate`'s bertscore wraps
`bert_score`; scripts and tests call it directly.
"""

from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from ko_radiology.judge.runner import Judge, JudgeConfig, JudgeItem, JudgeOutcome, longer_answer_wins
from ko_radiology.llm import LLMClient, LLMClientConfig

_JUDGE_FIELDS = {item.name for item in fields(JudgeConfig)}
_CLIENT_FIELDS = {item.name for item in fields(LLMClientConfig)}


def split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword options into `JudgeConfig` and `LLMClientConfig` fields; `judge_`-prefixed endpoint names allowed."""
    judge, client = {}, {}
    for name, value in options.items():
        bare = name.removeprefix("judge_")
        if name in _JUDGE_FIELDS:
            judge[name] = value
        elif bare in _CLIENT_FIELDS:
            client[bare] = value
        else:
            known = sorted(_JUDGE_FIELDS | {f"judge_{n}" if n in ("model", "base_url") else n for n in _CLIENT_FIELDS})
            raise TypeError(f"Unknown judge option {name!r}; known: {', '.join(known)}.")
    return judge, client


def _check_text(values: Sequence[Any], name: str, count: int) -> None:
    if len(values) != count:
        raise ValueError(f"{count} predictions but {len(values)} {name}; pass one per sample.")
    for index, value in enumerate(values):
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{name}[{index}] is empty or not text ({value!r}); every sample needs one.")


def build_items(
    predictions: Sequence[Any], reports: Sequence[str], questions: Sequence[str], references: Sequence[str] | None
) -> list[JudgeItem]:
    """One item per sample; a sample's predictions are one answer or a list (one per model, all the same length)."""
    _check_text(reports, "reports", len(predictions))
    _check_text(questions, "questions", len(predictions))
    if references is not None:
        _check_text(references, "references", len(predictions))
    answers = [tuple(p) if isinstance(p, list | tuple) else (p,) for p in predictions]
    if len({len(a) for a in answers}) > 1:
        raise ValueError("Every sample needs the same number of answers (one per model); use None for a missing one.")
    refs = references if references is not None else [None] * len(predictions)
    return [JudgeItem(*sample) for sample in zip(reports, questions, answers, refs, strict=True)]


def _per_answer(outcome: JudgeOutcome, answer_index: int) -> dict[str, Any]:
    judged = [item[answer_index] for item in outcome.judgements]
    return {
        **outcome.summary(answer_index).as_dict(),
        "scores": [j.score for j in judged],
        "rationales": [j.rationale for j in judged],
        "errors": [j.error for j in judged],
    }


def results_dict(items: Sequence[JudgeItem], outcome: JudgeOutcome, multi: bool, judge_model: str) -> dict[str, Any]:
    """The flat result: per-answer fields as plain values, or as lists (one per answer position) when `multi`."""
    per_answer = [_per_answer(outcome, index) for index in range(len(items[0].answers))]
    merged = {key: [part[key] for part in per_answer] for key in per_answer[0]} if multi else per_answer[0]
    if multi:
        merged["scores"] = [list(row) for row in zip(*merged["scores"], strict=True)]
        merged["rationales"] = [list(row) for row in zip(*merged["rationales"], strict=True)]
        merged["errors"] = [list(row) for row in zip(*merged["errors"], strict=True)]
    rate, pairs = longer_answer_wins(items, outcome)
    config = outcome.config
    return {
        **merged,
        "swap_flip_rate": outcome.swap_flip_rate(),
        "longer_wins_rate": rate,
        "longer_wins_pairs": pairs,
        "criterion": config.criterion,
        "judge_model": judge_model,
        "seed": config.seed,
        "confidence": config.confidence,
    }


def evaluate_with_judge(
    criterion: str,
    predictions: Sequence[Any],
    reports: Sequence[str],
    questions: Sequence[str],
    references: Sequence[str] | None = None,
    *,
    judge_model: str | None,
    **options: Any,
) -> dict[str, Any]:
    """Judge `predictions` on `criterion` and return the flat result dict (see the module card for the keys).

    Args:
        criterion: A criterion name or code (`accuracy`, `sim`, ...).
        predictions: One answer per sample, or a list of answers per sample (judged together, order shuffled).
        reports, questions: Context of each sample; references too for `similarity`.
        judge_model: Model name the judge endpoint serves.
        **options: `JudgeConfig` fields and `LLMClientConfig` fields (`judge_base_url`, `cache_path`, ...).
    """
    if not judge_model:
        raise ValueError("judge_model is required: the model name your judge endpoint serves (e.g. gpt-4o).")
    if not predictions:
        raise ValueError("predictions is empty; pass at least one answer to judge.")
    judge_options, client_options = split_options(options)
    config = JudgeConfig(criterion=criterion, **judge_options)
    items = build_items(predictions, reports, questions, references)
    with LLMClient(LLMClientConfig(model=judge_model, **client_options)) as client:
        outcome = Judge(client, config).run(items)
    multi = isinstance(predictions[0], list | tuple)
    return results_dict(items, outcome, multi, judge_model)
