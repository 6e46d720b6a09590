"""`Judge`: turn samples into judge calls, send them through the project's LLM client, read and map back the replies.

Every call goes through `LLMClient`, so the data-use guard (a judge prompt contains the report), rate limits,
retries, the response cache (re-scoring is free), the cost ledger, dry runs and the Batch API all apply as they do to
the dataset builder.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ko_radiology.judge.ordering import map_back, shown_orders
from ko_radiology.judge.parsing import ParsedJudgement, parse_judgements
from ko_radiology.judge.prompt import build_judge_messages, judgement_schema
from ko_radiology.judge.rubrics import get_criterion
from ko_radiology.judge.summary import ScoreSummary, longer_wins_rate, summarize_scores, swap_flip_rate
from ko_radiology.llm import BatchFiles, DryRunReport, LLMClient, LLMRequest
from ko_radiology.statistics import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES

NO_ANSWER = "no answer to judge (missing or empty)"


def _help(text: str) -> dict:
    return {"help": text}


@dataclass
class JudgeConfig:
    """How answers are judged; the endpoint itself is the client's `LLMClientConfig`."""

    criterion: str = field(
        default="accuracy",
        metadata={
            "help": "accuracy, conciseness, consistency, understandability, similarity (or acc, coc, cos, und, sim).",
            "aliases": ["--type"],  # the original evaluate.py's flag
        },
    )
    answers_per_call: str = field(
        default="all", metadata=_help("`all`: every model's answer to a question in one call; `one`: one per call.")
    )
    all_positions: bool = field(
        default=False, metadata=_help("Judge every rotation of the answers (both orders for two) and report flips.")
    )
    seed: int = field(default=0, metadata=_help("Seed of the shown order and of the bootstrap; recorded in results."))
    structured_output: bool = field(
        default=True,
        metadata=_help(
            "Send a JSON-schema response_format; turn off for servers that ignore it (transformers serve)."
        ),
    )
    max_tokens: int = field(default=512, metadata=_help("Most tokens of one judge reply."))
    resamples: int = field(default=DEFAULT_RESAMPLES, metadata=_help("Bootstrap resamples of the CI."))
    confidence: float = field(default=DEFAULT_CONFIDENCE, metadata=_help("Coverage of the CI."))

    def __post_init__(self) -> None:
        self.criterion = get_criterion(self.criterion).name
        if self.answers_per_call not in ("all", "one"):
            raise ValueError(f"answers_per_call must be `all` or `one`, got {self.answers_per_call!r}.")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}.")


@dataclass(frozen=True)
class JudgeItem:
    """One question with the answers to judge (one per model; None or blank for a missing answer)."""

    report: str
    question: str
    answers: tuple[str | None, ...]
    reference: str | None = None


@dataclass(frozen=True)
class AnswerJudgement:
    """`score` is the mean over the orders it was judged in, None on failure (then `error` says why)."""

    score: float | None
    rationale: str
    error: str | None
    position_scores: tuple[int | None, ...] = ()


@dataclass(frozen=True)
class PlannedCall:
    item_index: int
    order: list[int]
    request: LLMRequest


@dataclass
class JudgeOutcome:
    """`judgements[item][answer]`; `replies[item]` the raw replies of its calls (the error for a failed one) and
    `orders[item]` the answer indices each of those calls showed, in shown order (what "answer 1" meant)."""

    judgements: list[list[AnswerJudgement]]
    replies: list[list[str]]
    orders: list[list[list[int]]]
    config: JudgeConfig

    def scores(self, answer_index: int) -> list[float | None]:
        return [item[answer_index].score for item in self.judgements]

    def summary(self, answer_index: int = 0) -> ScoreSummary:
        c = self.config
        return summarize_scores(self.scores(answer_index), c.resamples, c.seed, c.confidence)

    def swap_flip_rate(self) -> float | None:
        return swap_flip_rate([[a.position_scores for a in item] for item in self.judgements])


def _present(answer: str | None) -> bool:
    return isinstance(answer, str) and bool(answer.strip())


class Judge:
    """Judge answers on one criterion through `client`.

    Args:
        client: The project's LLM client pointed at the judge model.
        config: Criterion, answers per call, order handling and output format.
    """

    def __init__(self, client: LLMClient, config: JudgeConfig):
        self.client = client
        self.config = config
        self.criterion = get_criterion(config.criterion)

    def _request(self, item: JudgeItem, order: list[int]) -> LLMRequest:
        shown = [item.answers[index] for index in order]
        messages = build_judge_messages(self.criterion, item.report, item.question, shown, item.reference)
        schema = judgement_schema(len(order)) if self.config.structured_output else None
        return LLMRequest(
            messages=messages, temperature=0.0, max_tokens=self.config.max_tokens, response_format=schema
        )

    def _orders(self, item_index: int, item: JudgeItem) -> list[list[int]]:
        present = [index for index, answer in enumerate(item.answers) if _present(answer)]
        if self.config.answers_per_call == "one":
            return [[index] for index in present]
        return shown_orders(present, self.config.seed, item_index, self.config.all_positions) if present else []

    def plan(self, items: Sequence[JudgeItem]) -> list[PlannedCall]:
        """Every call the items need, in a fixed order; the same items and config always plan the same requests."""
        return [
            PlannedCall(item_index, order, self._request(item, order))
            for item_index, item in enumerate(items)
            for order in self._orders(item_index, item)
        ]

    def dry_run(self, items: Sequence[JudgeItem]) -> DryRunReport:
        return self.client.dry_run([call.request for call in self.plan(items)])

    def write_batch(self, items: Sequence[JudgeItem], out_dir: str | Path) -> BatchFiles:
        """Batch API input files for the uncached calls; ingest the output and run again to score from the cache."""
        return self.client.write_batch_jsonl([call.request for call in self.plan(items)], out_dir)

    def run(self, items: Sequence[JudgeItem]) -> JudgeOutcome:
        """Judge every item; failed calls and unreadable replies become per-answer failures, never scores."""
        calls = self.plan(items)
        outcome = self.client.run_many([call.request for call in calls], desc=f"judge {self.criterion.name}")
        errors = {failure.index: failure.error for failure in outcome.failures}
        by_answer: list[dict[int, list[ParsedJudgement]]] = [{} for _ in items]
        replies: list[list[str]] = [[] for _ in items]
        orders: list[list[list[int]]] = [[] for _ in items]
        for index, (call, result) in enumerate(zip(calls, outcome.results, strict=True)):
            orders[call.item_index].append(call.order)
            if result is None:
                error = f"judge call failed: {errors[index]}"
                parsed = [ParsedJudgement(n, None, "", error) for n in range(1, len(call.order) + 1)]
                replies[call.item_index].append(error)
            else:
                parsed = parse_judgements(result.text, len(call.order))
                replies[call.item_index].append(result.text)
            for answer_index, judgement in map_back(call.order, parsed).items():
                by_answer[call.item_index].setdefault(answer_index, []).append(judgement)
        judgements = [
            [self._combine(per_answer.get(index, [])) for index in range(len(item.answers))]
            for item, per_answer in zip(items, by_answer, strict=True)
        ]
        return JudgeOutcome(judgements, replies, orders, self.config)

    @staticmethod
    def _combine(parsed: list[ParsedJudgement]) -> AnswerJudgement:
        """One answer's judgements across orders: mean of the scored ones; failure only if none was scored."""
        if not parsed:
            return AnswerJudgement(None, "", NO_ANSWER)
        scores = tuple(p.score for p in parsed)
        scored = [p for p in parsed if p.score is not None]
        if not scored:
            return AnswerJudgement(None, "", parsed[0].error, scores)
        return AnswerJudgement(sum(p.score for p in scored) / len(scored), scored[0].rationale, None, scores)


def longer_answer_wins(items: Sequence[JudgeItem], outcome: JudgeOutcome) -> tuple[float | None, int]:
    """`longer_wins_rate` over each item's answers and their final scores."""
    pairs = [
        [(answer, judgement.score) for answer, judgement in zip(item.answers, judged, strict=True)]
        for item, judged in zip(items, outcome.judgements, strict=True)
    ]
    return longer_wins_rate(pairs)
