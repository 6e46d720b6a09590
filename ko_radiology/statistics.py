"""Uncertainty for metric means: bootstrap confidence intervals, a paired bootstrap of a difference, a sign test, and
a Wilson score interval for a share.

One place for the judge, the reference metrics and the behaviour shares, so every "± CI" in a report means the same
thing: a percentile bootstrap over samples with a recorded seed (the same seed gives the same interval on any
machine), except for a share of yes/no outcomes, whose bootstrap collapses to a point at 0 or 1 (every resample of
40 correct answers is 40 correct answers); the Wilson interval does not, and needs no seed.
"""

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

DEFAULT_RESAMPLES = 10_000
DEFAULT_CONFIDENCE = 0.95


class Interval(NamedTuple):
    """A point estimate with its confidence interval; unpacks as `(estimate, low, high)`."""

    estimate: float
    low: float
    high: float


def _as_scores(scores: Sequence[float], name: str) -> np.ndarray:
    array = np.asarray(scores, dtype=float)
    if array.ndim != 1 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty list of numbers, got {array.size} values.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} holds NaN or infinite values; drop failed samples before computing a CI.")
    return array


def _percentiles(resampled_means: np.ndarray, confidence: float) -> tuple[float, float]:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(resampled_means, [tail, 100 - tail])
    return float(low), float(high)


def _resampled_means(values: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, values.size, size=(resamples, values.size))
    return values[indices].mean(axis=1)


def bootstrap_ci(
    scores: Sequence[float],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Mean of `scores` with a percentile-bootstrap confidence interval.

    Args:
        scores: One score per sample (failed samples already dropped).
        resamples: Bootstrap resamples.
        seed: Seed of the resampling, so the interval can be reproduced.
        confidence: Coverage of the interval (0.95 for a 95% CI).
    """
    values = _as_scores(scores, "scores")
    return Interval(float(values.mean()), *_percentiles(_resampled_means(values, resamples, seed), confidence))


def paired_bootstrap(
    a_scores: Sequence[float],
    b_scores: Sequence[float],
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Interval:
    """Mean of `a - b` over paired samples (same question, two systems) with a bootstrap CI of that difference.

    Resampling the pairs, not each system on its own, keeps the per-question difficulty that both systems share
    out of the interval; an interval that excludes 0 is a significant difference at `1 - confidence`.
    """
    a, b = _as_scores(a_scores, "a_scores"), _as_scores(b_scores, "b_scores")
    if a.size != b.size:
        raise ValueError(f"paired scores differ in length: {a.size} vs {b.size}; pair them by question first.")
    diffs = a - b
    return Interval(float(diffs.mean()), *_percentiles(_resampled_means(diffs, resamples, seed), confidence))


def wilson_interval(successes: int, total: int, confidence: float = DEFAULT_CONFIDENCE) -> Interval:
    """Share `successes / total` with its Wilson score interval (Wilson, 1927).

    Unlike the normal approximation or a bootstrap, it stays inside [0, 1] and is not a single point at 0 or 1
    successes, where targets such as "at most 5% false refusals" sit.

    Args:
        successes: Samples with the outcome.
        total: All samples (> 0).
        confidence: Coverage of the interval (0.95 for a 95% CI).
    """
    if total <= 0 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total and total > 0, got {successes} of {total}.")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}.")
    z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
    share = successes / total
    centre = (share + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total))
    # At 0 or `total` successes a bound is exactly 0 or 1; computed, it is off by float error (2.8e-17).
    low = 0.0 if successes == 0 else centre - half
    high = 1.0 if successes == total else centre + half
    return Interval(share, low, high)


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test p-value for `wins` vs `losses` (ties dropped): is either side winning by chance?"""
    if wins < 0 or losses < 0:
        raise ValueError(f"wins and losses must be >= 0, got {wins} and {losses}.")
    total = wins + losses
    if total == 0:
        return 1.0
    tail = sum(math.comb(total, k) for k in range(min(wins, losses) + 1)) / 2**total
    return min(1.0, 2 * tail)
