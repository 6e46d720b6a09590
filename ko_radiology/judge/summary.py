"""What a set of judgements adds up to: a mean with its bootstrap CI over the judged samples, failures counted
beside it (never folded in as 0), and the two bias measures: swap-flip rate and how often the longer answer wins."""

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from itertools import combinations

from ko_radiology.statistics import DEFAULT_CONFIDENCE, DEFAULT_RESAMPLES, bootstrap_ci


@dataclass(frozen=True)
class ScoreSummary:
    """`mean`/`ci_low`/`ci_high` are None when no sample was judged; failures are excluded from them."""

    mean: float | None
    ci_low: float | None
    ci_high: float | None
    num_samples: int
    num_failures: int
    failure_rate: float

    def as_dict(self) -> dict:
        return asdict(self)


def summarize_scores(
    scores: Sequence[float | None],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> ScoreSummary:
    """Mean and CI of the judged scores; `None` entries are failures."""
    judged = [score for score in scores if score is not None]
    failures = len(scores) - len(judged)
    rate = failures / len(scores) if scores else 0.0
    if not judged:
        return ScoreSummary(None, None, None, len(scores), failures, rate)
    mean, low, high = bootstrap_ci(judged, resamples, seed, confidence)
    return ScoreSummary(mean, low, high, len(scores), failures, rate)


def _sign(value: float) -> int:
    return (value > 0) - (value < 0)


def swap_flip_rate(position_scores: Sequence[Sequence[Sequence[int | None]]]) -> float | None:
    """Share of answer pairs whose preference (better, worse, tie) changes between the orders they were shown in.

    `position_scores[item][answer][order]` is the score an answer got in each order its item was shown in. A pair
    counts when both answers were scored in at least two common orders; None when no pair counts.
    """
    flips = pairs = 0
    for answers in position_scores:
        for a, b in combinations(answers, 2):
            if len(a) != len(b):  # a missing answer was shown in no order
                continue
            signs = {_sign(x - y) for x, y in zip(a, b, strict=True) if x is not None and y is not None}
            both_scored = sum(x is not None and y is not None for x, y in zip(a, b, strict=True))
            if both_scored >= 2:
                pairs += 1
                flips += len(signs) > 1
    return flips / pairs if pairs else None


def longer_wins_rate(items: Sequence[Sequence[tuple[str | None, float | None]]]) -> tuple[float | None, int]:
    """How often the longer of two answers to one question scored higher, among pairs that differ in both score
    and length; 0.5 is no preference. Returns the rate (None without such pairs) and the number of pairs."""
    longer_won = decided = 0
    for answers in items:
        scored = [(len(text), score) for text, score in answers if text and score is not None]
        for (len_a, score_a), (len_b, score_b) in combinations(scored, 2):
            if len_a != len_b and score_a != score_b:
                decided += 1
                longer_won += (len_a > len_b) == (score_a > score_b)
    return (longer_won / decided if decided else None), decided
