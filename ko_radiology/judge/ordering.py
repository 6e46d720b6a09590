"""Position bias: the order answers are shown in is shuffled with a recorded seed, and scores are mapped back.

Judges prefer the first (or last) of several answers. Shuffling per question spreads that preference over all
models instead of handing it to one; judging every rotation shows each answer once in each position, which both
cancels the preference in the mean and measures it (the swap-flip rate). Orders depend only on the seed and the
item's index, so a re-run asks the same calls and is answered from the cache.
"""

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def shown_orders(answer_indices: Sequence[int], seed: int, item_index: int, all_positions: bool) -> list[list[int]]:
    """The orders to show `answer_indices` in: one shuffle, or (with `all_positions`) each of its rotations.

    `order[k]` is the caller's index of the answer shown as number `k + 1`. Rotations put every answer in every
    position once with n calls, where all permutations would take n!; for a pair they are both orders.
    """
    shuffled = list(answer_indices)
    random.Random(f"{seed}:{item_index}").shuffle(shuffled)
    if not all_positions:
        return [shuffled]
    return [shuffled[r:] + shuffled[:r] for r in range(len(shuffled))]


def map_back(order: Sequence[int], shown: Sequence[T]) -> dict[int, T]:
    """`shown[k]` belongs to the answer shown as number `k + 1`; return them keyed by the caller's index."""
    if len(order) != len(shown):
        raise ValueError(f"{len(shown)} judgements for {len(order)} shown answers.")
    return dict(zip(order, shown, strict=True))
